// bench_charts_page.mjs: the Chromium half of bench_charts.py. Opens a run page of a daemon
// in Debian's chromium (playwright-core from tests/e2e/node_modules) and prints, as one JSON
// line, how long things took: the dashboard's first page (a fresh browser: scripts, uPlot),
// then the run page until its training chart has drawn (the daemon's first read of the
// run), the same after a reload (a fresh page; the daemon answers from its page cache),
// and a zoom into a 1,000-step window until it is drawn at full resolution.
// Usage: node bench/api/bench_charts_page.mjs BASE_URL RUN_ID ZOOM_FROM
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [base, runId, zoomFrom] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', '..', 'tests', 'e2e', 'package.json'));
const { chromium } = require('playwright-core');

const LOSS = '[aria-label^="Training loss per iteration"]';

async function drawn(page, pred, arg) {
  await page.waitForFunction(pred, arg, { timeout: 120000, polling: 'raf' });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const out = {};
  const hasPoints = (sel) => { const el = document.querySelector(sel); return Boolean(el && Number(el.dataset.points) > 0); };
  let t0 = Date.now();
  await page.goto(`${base}/#/runs`);
  await drawn(page, () => document.querySelector('main h1') !== null);
  out.dashboard_ms = Date.now() - t0;
  for (const what of ['run_page_ms', 'reload_ms']) {
    if (what === 'reload_ms') await page.goto('about:blank');
    t0 = Date.now();
    await page.goto(`${base}/#/runs/${runId}`);
    await drawn(page, hasPoints, LOSS);
    out[what] = Date.now() - t0;
  }
  out.overview_points = Number(await page.$eval(LOSS, (el) => el.dataset.points));
  const from = Number(zoomFrom);
  t0 = Date.now();
  await page.evaluate(([min, max]) => {
    const tc = window.sgdrd.charts.training;
    tc.zoomed = true;
    tc.loss.setScale('x', { min, max });
  }, [from, from + 1000]);
  await drawn(page, ([sel, n]) => { const el = document.querySelector(sel); return el && Number(el.dataset.points) === n; }, [LOSS, 1001]);
  out.zoom_ms = Date.now() - t0;
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
