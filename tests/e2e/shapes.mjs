// shapes.mjs: the two-class image set the browser tests train on: a circle or a square of a
// random colour, size and place on a grey background, drawn and PNG-encoded by chromium's
// own canvas, so the tests need no image library. Seeded: every run of a test sees the
// same images.
import fs from 'node:fs';
import path from 'node:path';

// Writes dsPath/{train,valid}/{circle,square}/<i>.png, nTrain images per class in train and
// nValid in valid, size px square, from seed; noise: each image's grey also gets per-pixel
// noise. Returns how many images it wrote.
export async function writeShapes(browser, dsPath, { nTrain, nValid, size, seed, noise = false }) {
  const gen = await browser.newPage();
  const imgs = await gen.evaluate(({ nTrain, nValid, size, seed, noise }) => {
    const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
    const c = document.createElement('canvas');
    c.width = c.height = size;
    const ctx = c.getContext('2d');
    const out = [];
    for (const split of ['train', 'valid']) {
      for (const cls of ['circle', 'square']) {
        for (let i = 0; i < (split === 'train' ? nTrain : nValid); i++) {
          const g = 40 + Math.floor(rnd() * 80);
          ctx.fillStyle = `rgb(${g},${g},${g})`;
          ctx.fillRect(0, 0, size, size);
          if (noise) {
            const img = ctx.getImageData(0, 0, size, size);
            for (let p = 0; p < img.data.length; p += 4) {
              const v = (rnd() - 0.5) * 50;
              img.data[p] += v; img.data[p + 1] += v; img.data[p + 2] += v;
            }
            ctx.putImageData(img, 0, 0);
          }
          const r = size * (0.18 + rnd() * 0.14);
          const x = r + rnd() * (size - 2 * r);
          const y = r + rnd() * (size - 2 * r);
          ctx.fillStyle = `hsl(${Math.floor(rnd() * 360)},80%,65%)`;
          ctx.beginPath();
          if (cls === 'circle') ctx.arc(x, y, r, 0, 2 * Math.PI);
          else ctx.rect(x - r, y - r, 2 * r, 2 * r);
          ctx.fill();
          out.push({ split, cls, i, b64: c.toDataURL('image/png').split(',')[1] });
        }
      }
    }
    return out;
  }, { nTrain, nValid, size, seed, noise });
  for (const im of imgs) {
    const dir = path.join(dsPath, im.split, im.cls);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${im.i}.png`), Buffer.from(im.b64, 'base64'));
  }
  await gen.close();
  return imgs.length;
}
