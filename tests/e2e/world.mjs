// world.mjs: the browser test of the run page's world panel (meson suite e2e). Starts the
// real daemon with --max-workers 2 on a free loopback port and a small generated IDX
// dataset, queues a fit on 2 workers (an mpirun world of sgdrd-worker ranks), and checks in
// Debian's chromium that the run page shows the world GET /health reports: a row per rank
// with its host and pid, the hosts in the heading, and after the first epoch each rank's
// img/s and the time its gradient sums take per step. The fit is cancelled after; no
// console error. Screenshot in tests/e2e/artifacts/.
//
// Usage: node world.mjs <source root> <build root>. Exit 0 pass, 1 fail, 77 skip.
import fs from 'node:fs';
import path from 'node:path';
import { SKIP, TestWorld, checker, preconditions, testPaths, waitFor } from './harness.mjs';

const paths = testPaths(process.argv);
const { artifacts } = paths;
const SIZE = 16;
const workerBin = path.join(paths.buildRoot, 'worker', 'sgdrd-worker');

const ck = checker('[e2e world]');
const { check, must } = ck;
const chromium = preconditions(paths);
if (!fs.existsSync(workerBin)) {
  console.log(`SKIP: the worker ${workerBin} is not built`);
  process.exit(SKIP);
}

// An IDX pair of n noise images with two labels; seeded. What they hold does not matter:
// the test looks at the world, not at what it learns.
function writeIdx(dir, prefix, n, seed) {
  let s = seed;
  const rnd = () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648; };
  const img = Buffer.alloc(16 + n * SIZE * SIZE);
  const lab = Buffer.alloc(8 + n);
  img.writeUInt32BE(0x803, 0); img.writeUInt32BE(n, 4); img.writeUInt32BE(SIZE, 8); img.writeUInt32BE(SIZE, 12);
  lab.writeUInt32BE(0x801, 0); lab.writeUInt32BE(n, 4);
  for (let k = 0; k < n; k++) {
    for (let p = 0; p < SIZE * SIZE; p++) img[16 + k * SIZE * SIZE + p] = Math.floor(rnd() * 255);
    lab[8 + k] = k % 2;
  }
  fs.writeFileSync(path.join(dir, `${prefix}-images-idx3-ubyte`), img);
  fs.writeFileSync(path.join(dir, `${prefix}-labels-idx1-ubyte`), lab);
}

const w = new TestWorld(paths, ck, { prefix: 'sgdrd-e2e-world-', dsName: 'noise',
  daemonArgs: ['--threads', '2', '--max-workers', '2', '--worker', workerBin] });
const { dsPath, consoleErrors, api } = w;
let page = null;

async function main() {
  fs.mkdirSync(artifacts, { recursive: true });
  fs.mkdirSync(dsPath, { recursive: true });
  writeIdx(dsPath, 'train', 512, 7);
  writeIdx(dsPath, 't10k', 64, 99);

  await w.startDaemon();

  let r = await api('POST', '/datasets', { name: 'noise', path: dsPath, format: 'idx' });
  must(r.status === 201, 'the IDX dataset registers', r);
  r = await api('POST', '/runs', { dataset: 'noise', arch: 'resnet_small', sz: SIZE, bs: 32, tfms: 'none', workers: 2 });
  must(r.status === 201, 'a run with 2 workers is created', r);
  const runId = r.data.id;
  r = await api('POST', `/runs/${runId}/fit`, { lrs: 0.01, n_cycle: 1, cycle_len: 50 });
  must(r.status === 202 && r.data.params.workers === 2, 'a fit on 2 workers is queued', r);
  const jobId = r.data.id;

  await w.launchBrowser(chromium);
  const opened = await w.openPage({ viewport: { width: 1280, height: 900 } });
  const { ctx } = opened;
  page = opened.page;

  await page.goto(`${w.base}/#/runs/${runId}`);
  const rows = page.locator('#world table.world-ranks tbody tr');
  await waitFor(async () => (await rows.count()) === 2, 'a row per rank in the world panel', 120000, 250);
  // After an epoch every rank reports its rate; the page refreshes while the job runs.
  const cells = await waitFor(async () => {
    const c = await rows.evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    return c.length === 2 && c.every((x) => Number(x[3]) > 0) ? c : null;
  }, 'each rank\'s img/s after the first epoch', 180000, 500);
  const health = (await api('GET', '/health')).data.world.running;
  must(health && health.job === jobId && health.ranks.length === 2, '/health reports the running world', health);
  check(cells.map((c) => c[0]).join(',') === '0,1', 'the rows are ranks 0 and 1', cells);
  check(cells.every((c, i) => c[1] === health.ranks[i].host && c[1] !== '—'), 'each row names its rank\'s host', cells);
  check(cells.every((c, i) => Number(c[2]) === health.ranks[i].pid), 'each row shows its rank\'s pid', { cells, health });
  check(cells.every((c) => /^\d+(\.\d+)? ms$/.test(c[4]) && /^\d+%$/.test(c[5])),
    'each row shows the allreduce time per step and its share of a step', cells);
  const head = await page.locator('#world .world-head').textContent();
  check(head.startsWith('World of 2 ranks on 1 host') && head.includes(health.ranks[0].host), 'the heading counts ranks and hosts', head);

  await page.locator('#world').screenshot({ path: path.join(artifacts, 'world.png') });
  r = await api('POST', `/jobs/${jobId}/cancel`);
  check(r.status === 202, 'the fit is cancelled', r);
  await waitFor(async () => (await api('GET', `/jobs/${jobId}`)).data.state === 'cancelled', 'the job to end cancelled', 60000, 250);
  await waitFor(async () => page.locator('#world').evaluate((e) => e.hidden), 'the panel to go once the job has ended', 30000, 250);
  check(consoleErrors.length === 0, 'no console errors', consoleErrors);
  await ctx.close();
}

await w.run(main, 'world-failure.png');
