// compare.mjs: the browser test of the compare page (meson suite e2e). Starts the real
// daemon on a free loopback port with a fresh data folder and a small generated image set,
// trains three short runs with different settings through the API, then drives Debian's
// chromium through playwright-core: the comparison opened from a shared link draws every
// run in each chart, the x axis switches between iterations, epochs and wall time (and the
// link follows), the parameters that differ are highlighted and the equal ones are not, the
// runs list's checkboxes lead to the same page, a bad link gets a clear error, a run not
// trained yet sits beside a trained one, a run in progress is followed (its curves and its
// column grow without a reload until its fit ends), and screenshots land in
// tests/e2e/artifacts/.
//
// Usage: node compare.mjs <source root> <build root>. Exit 0 pass, 1 fail, 77 skip.
import fs from 'node:fs';
import path from 'node:path';
import { TestWorld, awaitJob, checker, preconditions, sleep, testPaths, waitFor } from './harness.mjs';
import { writeShapes } from './shapes.mjs';

const paths = testPaths(process.argv);
const { artifacts } = paths;
const N_TRAIN = 24;   // images per class: 6 batches of 8 per epoch keep three runs short
const N_VALID = 8;
const SIZE = 32;
const EPOCHS = 2;     // each run: SGDR, two cycles of one epoch
const LIVE_EPOCHS = 16; // the followed fit: long enough for the page to read it mid-way
const X_LABELS = { step: 'iteration', epoch: 'epoch', time: 'wall time' };

const ck = checker('[compare]', 800);
const { log, check, must } = ck;
const chromium = preconditions(paths, { needUplot: true });

const w = new TestWorld(paths, ck, { prefix: 'sgdrd-compare-', dsName: 'shapes' });
const { dsPath, consoleErrors, api } = w;
let page = null;

const idOf = (r) => String(r.data && r.data.id !== undefined ? r.data.id : /\/(\d+)$/.exec(r.location || '')[1]);

const waitJob = (id, timeoutMs) => awaitJob(api, id, timeoutMs);

// Three runs that differ in batch size, optimizer and the fit's LR; equal otherwise.
const RUNS = [
  { cfg: { bs: 8, opt: 'sgd' }, lrs: 0.01 },
  { cfg: { bs: 16, opt: 'sgd' }, lrs: 0.01 },
  { cfg: { bs: 8, opt: 'adamw' }, lrs: 0.003 },
];

async function trainRuns(dsId) {
  const ids = [];
  const jobs = [];
  for (const r of RUNS) {
    const made = await api('POST', '/runs', { dataset: Number(dsId), arch: 'resnet_small', sz: SIZE, xtra_fc: [], seed: 42, ...r.cfg });
    must(made.status === 201, 'a run is created', made);
    const id = idOf(made);
    const fit = await api('POST', `/runs/${id}/fit`, { lrs: r.lrs, n_cycle: EPOCHS, cycle_len: 1, schedule: 'sgdr' });
    must(fit.status === 202 || fit.status === 201, 'its fit is queued', fit);
    ids.push(id);
    jobs.push(idOf(fit));
  }
  for (const j of jobs) await waitJob(j, 300000);
  return ids;
}

// What the three charts hold: for each chart, each series' label and how many of its points
// are drawn, plus the x axis label and range.
function chartState() {
  return page.evaluate(() => {
    const out = {};
    for (const [name, c] of Object.entries(window.sgdrd.charts)) {
      const u = c.u;
      if (!u) { out[name] = null; continue; }
      const xs = u.data[0];
      out[name] = {
        axis: u.axes[0].label,
        series: u.series.slice(1).map((s, i) => ({ label: s.label, drawn: u.data[i + 1].filter((v) => v !== null && v !== undefined).length })),
        xmin: xs[0], xmax: xs[xs.length - 1],
      };
    }
    return out;
  });
}

async function openCompare(hash) {
  await page.goto(`${w.base}/${hash}`);
  await page.waitForSelector('main[data-ready="true"]', { timeout: 30000 });
}

async function checkCharts(ids, expectAxis) {
  const st = await chartState();
  for (const name of ['loss', 'accuracy', 'lr']) {
    const c = st[name];
    if (!check(c, `the ${name} chart is drawn`, st)) continue;
    check(c.axis === expectAxis, `the ${name} chart's x axis is ${expectAxis}`, c.axis);
    for (const id of ids) {
      const mine = c.series.filter((s) => s.label.startsWith(`#${id} `));
      check(mine.length >= 1 && mine.every((s) => s.drawn > 0), `run #${id} has a drawn series in the ${name} chart`, c.series);
    }
  }
  return st;
}

async function checkTable(ids) {
  const rowOf = (key) => page.locator(`table.compare-table tr[data-key="${key}"]`);
  for (const key of ['bs', 'opt', 'fit 1 · lrs']) {
    const diff = await rowOf(key).locator('td.differs').count();
    check(diff === ids.length, `the differing parameter "${key}" is highlighted in every run's column`, diff);
  }
  for (const key of ['arch', 'sz', 'seed', 'fit 1 · n_cycle', 'epochs']) {
    const row = rowOf(key);
    const n = await row.count();
    const diff = n ? await row.locator('td.differs').count() : -1;
    check(n === 1 && diff === 0, `the equal parameter "${key}" is not highlighted`, { rows: n, diff });
  }
  const bs = await rowOf('bs').locator('td').allInnerTexts();
  check(bs.join(',') === RUNS.map((r) => String(r.cfg.bs)).join(','), 'the bs row shows each run\'s batch size in column order', bs);
  const bg = await rowOf('bs').locator('td').first().evaluate((td) => getComputedStyle(td).backgroundColor);
  const plain = await rowOf('arch').locator('td').first().evaluate((td) => getComputedStyle(td).backgroundColor);
  check(bg !== plain, 'a highlighted cell looks different from an equal one', { bg, plain });
  await page.locator('label[for="only-diff"]').click();
  check(!(await rowOf('arch').isVisible()) && (await rowOf('bs').isVisible()), '"only differences" hides the equal rows');
  await page.locator('label[for="only-diff"]').click();
  check(await rowOf('arch').isVisible(), 'unticking it shows them again');
}

async function main() {
  fs.mkdirSync(artifacts, { recursive: true });
  await w.launchBrowser(chromium);
  await writeShapes(w.browser, dsPath, { nTrain: N_TRAIN, nValid: N_VALID, size: SIZE, seed: 777 });
  await w.startDaemon();

  const ds = await api('POST', '/datasets', { name: 'shapes', path: dsPath, format: 'folders' });
  must(ds.status === 201, 'the dataset is registered', ds);
  const t0 = Date.now();
  const ids = await trainRuns(idOf(ds));
  const trainedS = (Date.now() - t0) / 1000;
  log(`runs ${ids.join(', ')} trained`);

  let allowed404 = 0;   // the missing run of the bad-link step
  const opened = await w.openPage({ viewport: { width: 1280, height: 900 } }, (text) => {
    if (allowed404 > 0 && /status of 404/.test(text)) { allowed404--; return true; }
    return false;
  });
  const { ctx } = opened;
  page = opened.page;

  // 1. The shared link, opened directly.
  await openCompare(`#/compare?runs=${ids.join(',')}&x=step`);
  const byStep = await checkCharts(ids, 'iteration');
  const tl = (await api('GET', `/runs/${ids[0]}/metrics?key=train_loss&limit=10000`)).data.points;
  const first = byStep.loss && byStep.loss.series.find((s) => s.label === `#${ids[0]} train`);
  check(first && first.drawn === tl.length, 'the loss curve of a short run holds each of its iterations', { chart: first, api: tl.length });
  await checkTable(ids);
  await page.screenshot({ path: path.join(artifacts, 'compare.png'), fullPage: true });

  // 2. The x axis switch: by epoch the accuracy points sit at 1..EPOCHS; by wall time x
  //    starts near 0 and stays within the training time. The link follows each switch.
  await page.locator('label[for="x-epoch"]').click();
  await waitFor(() => page.evaluate(() => document.querySelector('main').dataset.x === 'epoch'), 'the x axis to switch to epochs');
  check(/[?&]x=epoch\b/.test(page.url()) && page.url().includes(`runs=${ids.join(',')}`), 'the link holds the x axis and the runs', page.url());
  const byEpoch = await checkCharts(ids, 'epoch');
  check(byEpoch.accuracy && byEpoch.accuracy.xmin === 1 && byEpoch.accuracy.xmax === EPOCHS, `by epoch, the accuracy points lie at epochs 1 to ${EPOCHS}`, byEpoch.accuracy);
  check(byEpoch.loss && byEpoch.loss.xmin > 0 && byEpoch.loss.xmax <= EPOCHS + 1e-9, 'by epoch, the loss curve spans the epochs', byEpoch.loss);
  await page.locator('label[for="x-time"]').click();
  await waitFor(() => page.evaluate(() => document.querySelector('main').dataset.x === 'time'), 'the x axis to switch to wall time');
  const byTime = await checkCharts(ids, 'wall time');
  check(byTime.loss && byTime.loss.xmin >= 0 && byTime.loss.xmin < 5 && byTime.loss.xmax <= trainedS + 5, 'by wall time, x counts seconds from each run\'s start', { chart: byTime.loss, trainedS });
  await page.reload();
  await page.waitForSelector('main[data-ready="true"]');
  check(await page.locator('#x-time').isChecked() && (await chartState()).loss.axis === 'wall time', 'reloading the link keeps the wall-time axis');
  await page.screenshot({ path: path.join(artifacts, 'compare-time.png'), fullPage: true });

  // 3. The runs list holds the comparison's runs ticked: untick one, Compare.
  await page.locator('a:text("Change runs")').click();
  await page.locator(`tr[data-run-id="${ids[0]}"]`).waitFor({ timeout: 15000 });
  const box = (id) => page.locator(`input.choose[data-run="${id}"]`);
  const ticked = [];
  for (const id of ids) ticked.push(await box(id).isChecked());
  check(ticked.every(Boolean), 'the runs list arrives with the compared runs ticked', ticked);
  const button = page.locator('button.compare-button');
  await box(ids[1]).uncheck();
  await box(ids[2]).uncheck();
  check(await button.isDisabled(), 'Compare is disabled with fewer than two runs ticked');
  await box(ids[2]).check();
  check(!(await button.isDisabled()), 'two ticked runs enable it');
  await sleep(3500);   // past one refresh of the list: the ticks survive it
  check(await page.locator(`input.choose[data-run="${ids[2]}"]`).isChecked(), 'a tick survives the list\'s refresh');
  await button.click();
  await page.waitForSelector('main[data-ready="true"]');
  check(new URL(page.url()).hash === `#/compare?runs=${ids[0]},${ids[2]}&x=step`, 'Compare opens the link of the ticked runs', page.url());
  await checkCharts([ids[0], ids[2]], 'iteration');
  check(await page.locator('table.compare-table thead th[data-run]').count() === 2, 'the table has one column per ticked run');

  // 4. Bad links: a clear error naming the field; a missing run is named, the rest compared.
  await page.goto(`${w.base}/#/compare?runs=3,abc`);
  await page.locator('main .notice.error').waitFor({ timeout: 10000 });
  const bad = await page.locator('main .notice.error').innerText();
  check(/runs/.test(bad) && /"abc"/.test(bad), 'a link with a bad run id says which part is wrong', bad);
  allowed404 = 4;
  await openCompare(`#/compare?runs=${ids[1]},99999`);
  const missing = await page.locator('main .notice.error').innerText();
  check(/#99999/.test(missing) && /no such run/.test(missing), 'a missing run is named', missing);
  await checkCharts([ids[1]], 'iteration');

  // 5. A run not trained yet sits beside a trained one: its column is there, its curves are
  //    empty, and nothing breaks.
  const fresh = await api('POST', '/runs', { dataset: 'shapes', arch: 'resnet_small', sz: SIZE, xtra_fc: [], seed: 42, bs: 8, opt: 'sgd' });
  must(fresh.status === 201, 'an untrained run is created', fresh);
  const freshId = idOf(fresh);
  for (const x of ['step', 'epoch', 'time']) {
    await openCompare(`#/compare?runs=${ids[0]},${freshId}&x=${x}`);
    await checkCharts([ids[0]], X_LABELS[x]);
  }
  const epochsRow = await page.locator('table.compare-table tr[data-key="epochs"] td').allInnerTexts();
  check(epochsRow.join(',') === `${EPOCHS},0`, 'the untrained run\'s column shows no epochs, marked as a difference', epochsRow);
  check(await page.locator('table.compare-table tr[data-key="epochs"] td.differs').count() === 2, 'and the difference is highlighted');

  // 6. A run in progress: opened while its fit waits behind another job, the comparison
  //    follows it without a reload until every iteration and epoch of the fit is drawn.
  {
    const made = await api('POST', '/runs', { dataset: 'shapes', arch: 'resnet_small', sz: SIZE, xtra_fc: [], seed: 42, bs: 8, opt: 'sgd' });
    must(made.status === 201, 'a run to follow is created', made);
    const liveId = idOf(made);
    const before = await api('POST', `/runs/${ids[1]}/fit`, { lrs: 0.01, n_cycle: 2, cycle_len: 1, schedule: 'sgdr' });
    must(before.status === 202 || before.status === 201, 'a fit of another run is queued first', before);
    const fit = await api('POST', `/runs/${liveId}/fit`, { lrs: 0.01, n_cycle: 1, cycle_len: LIVE_EPOCHS, schedule: 'sgdr' });
    must(fit.status === 202 || fit.status === 201, 'the fit to follow is queued', fit);
    await openCompare(`#/compare?runs=${ids[0]},${liveId}&x=step`);
    check(await page.evaluate(() => document.querySelector('main').dataset.following) === '1' && await page.locator('.page-head .live-pill').isVisible(),
      'the page says it follows the run in progress');
    const drawnOf = async () => {
      const st = await chartState();
      const s = st.loss && st.loss.series.find((x) => x.label === `#${liveId} train`);
      return s ? s.drawn : 0;
    };
    // A range zoomed into while the run grows stays zoomed through the redraws.
    await page.evaluate(() => window.sgdrd.charts.loss.u.setScale('x', { min: 2, max: 5 }));
    const seen = [];
    let job;
    for (;;) {
      const n = await drawnOf();
      if (seen[seen.length - 1] !== n) seen.push(n);
      job = (await api('GET', `/jobs/${idOf(fit)}`)).data;
      if (!['queued', 'running'].includes(job.state)) break;
      await sleep(250);
    }
    must(job.state === 'succeeded', 'the followed fit succeeds', job);
    const tlLive = (await api('GET', `/runs/${liveId}/metrics?key=train_loss&limit=10000`)).data.points;
    await waitFor(async () => (await drawnOf()) === tlLive.length, 'every iteration of the finished fit drawn without a reload', 15000);
    check(seen[0] === 0, 'the run followed had nothing drawn before its fit started', seen);
    const ranS = job.finished_at - job.started_at;
    // The page reads it every 2 s: a fit that ran over two of those was seen mid-way.
    if (ranS > 5) check(seen.some((n) => n > 0 && n < tlLive.length), 'the curve grew while the fit ran', { seen, ranS });
    else log(`the fit ran ${ranS.toFixed(1)} s; drawn counts seen: ${seen.join(', ')}`);
    await waitFor(async () => (await page.locator('table.compare-table tr[data-key="epochs"] td').allInnerTexts()).join(',') === `${EPOCHS},${LIVE_EPOCHS}`,
      'the followed run\'s column to show every epoch', 15000);
    await waitFor(() => page.evaluate(() => document.querySelector('main').dataset.following === '0'), 'the page to stop following once the fit ended', 15000);
    check(!(await page.locator('.page-head .live-pill').isVisible()), 'the live mark goes once nothing is in progress');
    const xr = await page.evaluate(() => { const u = window.sgdrd.charts.loss.u; return [u.scales.x.min, u.scales.x.max]; });
    check(xr[0] === 2 && xr[1] === 5, 'the zoomed x range survived the redraws of the growing run', xr);
    const acc = (await chartState()).accuracy.series.find((x) => x.label.startsWith(`#${liveId} `));
    check(acc && acc.drawn === LIVE_EPOCHS, 'the followed run\'s accuracy points are all drawn', acc);
  }

  // 7. A phone-sized screen: nothing spills out of the page sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  await openCompare(`#/compare?runs=${ids.join(',')}&x=epoch`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  check(overflow <= 390, 'the compare page fits a 390 px wide screen', overflow);
  await page.screenshot({ path: path.join(artifacts, 'compare-390.png'), fullPage: true });
  log(`screenshots in ${artifacts}`);

  check(consoleErrors.length === 0, 'no console errors during the whole test', consoleErrors);
  await ctx.close();
}

await w.run(main, 'compare-failure.png');
