// interp.mjs: the browser test of a run's interpretation card (meson suite e2e). Starts the
// real daemon on a free loopback port with a small generated IDX dataset (no image files:
// thumbnails are rendered from the decoded pixels), fits one epoch through the API, and
// checks in Debian's chromium that the confusion-matrix heat map shows the API's counts, a
// click on a cell shows that cell's validation images (every thumbnail loaded), and the
// augmentation preview renders; then that a TTA's row shows the centre crop's accuracy and
// each pass's, and that a TTA that did worse than the centre crop (a stored result: real
// training cannot be made to produce one on demand) gets a visible warning; no console
// error. Screenshots in tests/e2e/artifacts/.
//
// Usage: node interp.mjs <source root> <build root>. Exit 0 pass, 1 fail, 77 skip.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { TestWorld, awaitJob, checker, preconditions, testPaths, waitFor } from './harness.mjs';

const paths = testPaths(process.argv);
const { artifacts } = paths;
const SIZE = 16;
const CLASSES = ['hbar', 'vbar', 'blob'];

const ck = checker('[e2e interp]');
const { check, must } = ck;
const chromium = preconditions(paths);

// An IDX pair (images, labels) of n images per class: a horizontal bar, a vertical bar or a
// blob, at random places over noise; seeded, so every run of the test sees the same data.
function writeIdx(dir, prefix, perClass, seed) {
  let s = seed;
  const rnd = () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648; };
  const n = perClass * CLASSES.length;
  const img = Buffer.alloc(16 + n * SIZE * SIZE);
  const lab = Buffer.alloc(8 + n);
  img.writeUInt32BE(0x803, 0); img.writeUInt32BE(n, 4); img.writeUInt32BE(SIZE, 8); img.writeUInt32BE(SIZE, 12);
  lab.writeUInt32BE(0x801, 0); lab.writeUInt32BE(n, 4);
  for (let k = 0; k < n; k++) {
    const cls = k % CLASSES.length;
    const px = img.subarray(16 + k * SIZE * SIZE, 16 + (k + 1) * SIZE * SIZE);
    for (let p = 0; p < px.length; p++) px[p] = Math.floor(rnd() * 90);
    const a = 2 + Math.floor(rnd() * (SIZE - 6)), b = 2 + Math.floor(rnd() * (SIZE - 6));
    for (let i = 0; i < SIZE; i++) {
      for (let t = 0; t < 3; t++) {
        if (cls === 0) px[(a + t) * SIZE + i] = 230;
        else if (cls === 1) px[i * SIZE + a + t] = 230;
      }
    }
    if (cls === 2) for (let y = 0; y < 5; y++) for (let x = 0; x < 5; x++) px[(a + y) * SIZE + b + x] = 200;
    lab[8 + k] = cls;
  }
  fs.writeFileSync(path.join(dir, `${prefix}-images-idx3-ubyte`), img);
  fs.writeFileSync(path.join(dir, `${prefix}-labels-idx1-ubyte`), lab);
}

const w = new TestWorld(paths, ck, { prefix: 'sgdrd-e2e-interp-', dsName: 'bars', daemonArgs: ['--threads', '1'] });
const { dataDir, dsPath, consoleErrors, api } = w;
let page = null;

async function main() {
  fs.mkdirSync(artifacts, { recursive: true });
  fs.mkdirSync(dsPath, { recursive: true });
  writeIdx(dsPath, 'train', 40, 7);
  writeIdx(dsPath, 't10k', 8, 99);
  fs.writeFileSync(path.join(dsPath, 'classes.txt'), CLASSES.join('\n') + '\n');

  await w.startDaemon();

  let r = await api('POST', '/datasets', { name: 'bars', path: dsPath, format: 'idx' });
  must(r.status === 201, 'the IDX dataset registers', r);
  r = await api('POST', '/runs', { dataset: 'bars', arch: 'resnet_small', sz: SIZE, bs: 8, tfms: 'side_on', max_zoom: 1.2 });
  must(r.status === 201, 'a run is created', r);
  const runId = r.data.id;
  r = await api('POST', `/runs/${runId}/fit`, { lrs: 0.02, n_cycle: 1, cycle_len: 1 });
  must(r.status === 202, 'a fit is queued', r);
  const jobId = r.data.id;
  await awaitJob(api, jobId, 240000);
  const interp = (await api('GET', `/runs/${runId}/interpretation`)).data;
  must(interp && interp.summary && interp.summary.confusion, 'the API has the interpretation', interp);
  const cm = interp.summary.confusion;

  await w.launchBrowser(chromium);
  const opened = await w.openPage({ viewport: { width: 1280, height: 900 } });
  const { ctx } = opened;
  page = opened.page;

  await page.goto(`${w.base}/#/runs/${runId}`);
  const cells = page.locator('#interpretation table.heatmap button.heat');
  await waitFor(async () => (await cells.count()) === CLASSES.length ** 2, 'the heat map', 30000);
  const shown = await cells.evaluateAll((bs) => bs.map((b) => [Number(b.dataset.actual), Number(b.dataset.predicted), Number(b.textContent)]));
  check(shown.every(([a, p, n]) => cm[a][p] === n), 'the heat map shows the API\'s confusion counts', { shown, cm });
  const heads = await page.locator('#interpretation table.heatmap thead th').allTextContents();
  check(CLASSES.every((c) => heads.includes(c)), 'the heat map names the classes', heads);
  check(await page.locator('#interpretation table.per-class tbody tr').count() === CLASSES.length, 'the per-class table has a row per class');

  // The cell with the most errors (or the fullest one when there are none) is clicked.
  let pickCell = null;
  for (const [a, p, n] of shown) {
    if (n === 0) continue;
    const score = (a !== p ? 1e6 : 0) + n;
    if (!pickCell || score > pickCell.score) pickCell = { a, p, n, score };
  }
  must(pickCell, 'the matrix has a nonempty cell');
  await page.locator(`button.heat[data-actual="${pickCell.a}"][data-predicted="${pickCell.p}"]`).click();
  const want = (await api('GET', `/runs/${runId}/interpretation/top-losses?actual=${pickCell.a}&predicted=${pickCell.p}&limit=24`)).data;
  const figs = page.locator('#interpretation .thumbs figure.thumb');
  await waitFor(async () => {
    const items = await figs.evaluateAll((fs) => fs.map((f) => Number(f.dataset.item)));
    return items.length === want.items.length && items.every((x, i) => x === want.items[i].item);
  }, 'the cell\'s images in the grid', 15000);
  check(await page.locator('#toplosses-h').textContent() === `${CLASSES[pickCell.a]} predicted as ${CLASSES[pickCell.p]}`,
    'the grid is titled by the cell clicked');
  const loaded = await waitFor(async () => {
    const ws = await figs.locator('img').evaluateAll((is) => is.map((i) => i.complete && i.naturalWidth));
    return ws.length && ws.every((w) => w === SIZE) ? ws : null;
  }, 'every thumbnail to load', 15000);
  check(loaded.length === Math.min(pickCell.n, 24), 'a thumbnail per image of the cell', loaded.length);
  check(await page.locator('button.heat[aria-pressed="true"]').count() === 1, 'the clicked cell is marked pressed');

  await page.locator('#interpretation button:text("Preview augmentations")').click();
  const strip = await waitFor(async () => page.locator('#interpretation img.aug-strip').evaluate((i) => i.complete && i.naturalWidth), 'the augmentation strip', 15000);
  check(strip === 8 * SIZE, 'the augmentation preview shows 8 tiles', strip);

  await page.locator('#interpretation').screenshot({ path: path.join(artifacts, 'interpretation.png') });
  await checkTta(runId);
  check(consoleErrors.length === 0, 'no console errors', consoleErrors);
  await ctx.close();
}

const pct = (x) => `${(100 * x).toFixed(2)}%`;

// Stores a succeeded TTA job of the run whose mean did worse than its centre crop, as the
// daemon records one (the job result and the note), and returns its id.
function storeWorseTta(runId, result) {
  const py = [
    'import sqlite3, sys, time',
    'db = sqlite3.connect(sys.argv[1], timeout=30)',
    'with db:',
    '    c = db.execute("INSERT INTO jobs (run_id, kind, state, params, progress, result, created_at, "',
    '                   "started_at, finished_at) VALUES (?, \'tta\', \'succeeded\', \'{}\', 1, ?, ?, ?, ?)",',
    '                   (int(sys.argv[2]), sys.argv[3], time.time(), time.time(), time.time()))',
    'print(c.lastrowid)',
  ].join('\n');
  return execFileSync('/usr/bin/python3', ['-c', py, path.join(dataDir, 'sgdrd.db'), String(runId), JSON.stringify(result)])
    .toString().trim();
}

async function checkTta(runId) {
  let r = await api('POST', `/runs/${runId}/tta`, { n_aug: 2 });
  must(r.status === 202, 'a TTA is queued', r);
  const tta = await awaitJob(api, r.data.id, 240000);
  const row = page.locator(`table.tta-table tr[data-job="${tta.id}"]`);
  await row.waitFor({ timeout: 15000 });
  const res = tta.result;
  const cells = await row.locator('td').allInnerTexts();
  const heads = await page.locator('table.tta-table thead th').allTextContents();
  check(heads[4] === 'Centre crop' && cells[4] === pct(res.centre_accuracy) && cells[5] === pct(res.tta_accuracy),
    'the TTA row shows the centre crop\'s accuracy and the mean\'s', { heads, cells, res });
  const passes = res.pass_accuracy.slice(0, res.passes_run).map(pct);
  check(cells[7] === (passes.join(' · ') || '—'), 'the TTA row shows each pass\'s accuracy', { cell: cells[7], passes });
  check(await page.locator(`.tta-warning[data-job="${tta.id}"]`).count() === (res.tta_worse ? 1 : 0),
    'a warning exactly when the TTA did worse than the centre crop', res);

  const worse = { ...res, accuracy: 0.875, centre_accuracy: 0.875, tta_accuracy: 0.8125, pass_accuracy: [0.8125, 0.75],
    passes_run: 2, tta_worse: true };
  const id = storeWorseTta(runId, worse);
  // A commit, so that no page cached before the stored job is answered.
  r = await api('POST', '/runs', { dataset: 'bars', arch: 'resnet_small', sz: SIZE });
  must(r.status === 201, 'another run is created', r);
  await page.reload();
  const warn = page.locator(`.tta-warning[data-job="${id}"]`);
  await warn.waitFor({ timeout: 15000 });
  check(await warn.isVisible(), 'the warning of a TTA that did worse is visible');
  const text = await warn.innerText();
  check(text.includes(`#${id}`) && text.includes('81.25%') && text.includes('87.50%'),
    'the warning names the job, the mean\'s and the centre crop\'s accuracy', text);
  const wrow = page.locator(`table.tta-table tr[data-job="${id}"]`);
  check(await wrow.locator('.badge.warn').count() === 1 && (await wrow.locator('td').allInnerTexts())[7] === '81.25% · 75.00%',
    'its row is marked worse and lists its passes', await wrow.innerText());
  await page.locator('.tta').screenshot({ path: path.join(artifacts, 'tta-worse.png') });
}

await w.run(main, 'interp-failure.png');
