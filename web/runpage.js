// runpage.js: one run: its state and current job, the LR-finder chart with sweep overlay and
// suggestions, the linked training charts, the epochs table with TTA results, the controls
// that queue jobs, and the live updates from the run's SSE stream.
import { h, mount, fmtNum, fmtLr, fmtPct, fmtTime, fmtDuration, debiasedEma, toCsv, download, throttle, rowsOf, pick, isNum } from './util.js';
import { get, post, del, getAll, idFrom, ApiError } from './api.js';
import { field, num, lrs, setPath, statusLine, onSubmit } from './forms.js';
import { LrFindChart, TrainingCharts } from './charts.js';
import { RunSeries } from './series.js';
import { subscribe } from './live.js';
import { stateBadge, jobProgress, errorBox, runView } from './widgets.js';
import { interpCard } from './interp.js';
import { worldPanel } from './world.js';

const REDRAW_MS = 300;      // at most ~3 redraws per second while live
const POLL_MS = 5000;       // job progress and ETA refresh while a job runs

export function runPage(root, runId) {
  const rid = encodeURIComponent(runId);
  const st = {
    alive: true,
    run: null,
    jobs: [],
    sweepList: [],
    sweeps: new Map(),      // id -> the API's lr-find record {id, points, suggestions, ...}
    selected: new Set(),
    userPicked: false,
    series: new Map(),      // metric key -> [{step, value, time}] in step order
    dsNames: null,          // dataset id -> name
    notes: [],              // the run's decisions with their reasons, from SSE "note" events
    snapshots: [],
    epochs: [],
    beta: 0.98,
    live: 'connecting',
  };

  // ---- skeleton ----
  const title = h('h1', { tabindex: -1 }, `Run #${runId}`);
  const liveBadge = h('span', { class: 'live-pill', role: 'status', 'aria-live': 'polite' }, 'connecting…');
  const deleteButton = h('button', { type: 'button', class: 'small danger', onclick: deleteRun }, 'Delete run');
  const facts = h('dl', { class: 'facts inline' });
  const jobBar = h('div', { class: 'jobbar' });
  const world = worldPanel();
  const banner = h('div', { class: 'banner-slot', 'aria-live': 'polite' });
  const actionNote = h('div', { class: 'banner-slot', 'aria-live': 'polite' });   // refusals of delete and cancel

  const sweepPicker = h('fieldset', { class: 'sweep-picker' }, h('legend', {}, 'Sweeps'));
  const lrfindEl = h('div', { class: 'chart', role: 'img', 'aria-label': 'Loss against learning rate, log10 scale' });
  const lrfindEmpty = h('p', { class: 'empty' }, 'No LR sweep yet. Start one with “Find LR” in the controls.');
  const sugHead = h('h3', { class: 'sug-head' }, 'Suggestions');
  const suggestionsEl = h('dl', { class: 'suggestions' });
  const lrChart = new LrFindChart(lrfindEl);

  const betaOut = h('output', { for: 'beta' }, st.beta.toFixed(3));
  const betaInput = h('input', { id: 'beta', type: 'range', min: 0, max: 0.999, step: 0.001, value: st.beta, 'aria-describedby': 'beta-hint' });
  const BETA_HINT = 'debiased exponential average of the raw loss';
  const betaHint = h('small', { id: 'beta-hint', class: 'hint' }, BETA_HINT);
  const lrLogBox = h('input', { id: 'lrlog', type: 'checkbox' });
  const lossLogBox = h('input', { id: 'losslog', type: 'checkbox' });
  const lossEl = h('div', { class: 'chart', role: 'img', 'aria-label': 'Training loss per iteration, smoothed, with validation loss per epoch' });
  const lrEl = h('div', { class: 'chart', role: 'img', 'aria-label': 'Learning rate of each layer group per iteration' });
  const trainEmpty = h('p', { class: 'empty' }, 'No training yet. Queue a fit or the recipe from the controls.');
  const charts = new TrainingCharts(lossEl, lrEl, `run-${runId}`);
  const source = new RunSeries(rid);
  charts.onZoom = (range) => {
    source.zoom(range).then((changed) => { if (changed && st.alive) drawTraining(); }, () => {});
  };
  let chartNote = null;

  const epochsWrap = h('div', { class: 'table-wrap' });
  const ttaWrap = h('div', { class: 'tta' });
  const jobsWrap = h('div', { class: 'jobs' });
  const notesWrap = h('div', { class: 'notes' }, h('p', { class: 'empty' }, 'No decisions logged yet.'));
  const weightsWrap = h('div', { class: 'weights' });
  const predictCard = buildPredict();
  const interp = interpCard(rid);

  const exportButtons = (name, fn) => h('div', { class: 'export', role: 'group', 'aria-label': `Export ${name}` },
    h('button', { type: 'button', class: 'small', onclick: () => fn('csv'), 'data-export': `${name}-csv` }, 'CSV'),
    h('button', { type: 'button', class: 'small', onclick: () => fn('json'), 'data-export': `${name}-json` }, 'JSON'));

  const controls = buildControls();

  mount(root,
    h('div', { class: 'page-head' }, title, liveBadge, deleteButton),
    banner, actionNote,
    h('section', { class: 'card runhead', 'aria-label': 'Run state' }, facts, jobBar, world.el),
    h('div', { class: 'run-layout' },
      h('div', { class: 'run-main' },
        h('section', { class: 'card', id: 'lrfind', 'aria-labelledby': 'lrfind-h' },
          h('div', { class: 'card-head' }, h('h2', { id: 'lrfind-h' }, 'LR finder'), exportButtons('lrfind', exportLrFind)),
          sweepPicker, lrfindEmpty, lrfindEl,
          sugHead, suggestionsEl),
        h('section', { class: 'card', id: 'training', 'aria-labelledby': 'training-h' },
          h('div', { class: 'card-head' }, h('h2', { id: 'training-h' }, 'Training'), exportButtons('training', exportTraining)),
          h('div', { class: 'toolbar' },
            h('label', { for: 'beta' }, 'Smoothing β'), betaInput, betaOut,
            betaHint,
            h('span', { class: 'spacer' }),
            h('span', { class: 'field-check' }, lossLogBox, h('label', { for: 'losslog' }, 'log loss axis')),
            h('span', { class: 'field-check' }, lrLogBox, h('label', { for: 'lrlog' }, 'log LR axis'))),
          trainEmpty, lossEl, lrEl,
          chartNote = h('p', { class: 'chart-note' },
            h('span', {}, h('span', { class: 'key key-epoch', 'aria-hidden': 'true' }), ' epoch end'),
            h('span', {}, h('span', { class: 'key key-cycle', 'aria-hidden': 'true' }), ' cycle end'),
            h('span', {}, h('span', { class: 'key key-valid', 'aria-hidden': 'true' }), ' validation loss per epoch'),
            h('span', {}, 'drag to zoom, double-click to reset'))),
        h('section', { class: 'card', id: 'epochs', 'aria-labelledby': 'epochs-h' },
          h('div', { class: 'card-head' }, h('h2', { id: 'epochs-h' }, 'Epochs'), exportButtons('epochs', exportEpochs)),
          epochsWrap, ttaWrap),
        interp.el),
      h('aside', { class: 'run-side' },
        h('section', { class: 'card', id: 'controls', 'aria-labelledby': 'controls-h' }, h('h2', { id: 'controls-h' }, 'Controls'), controls),
        h('section', { class: 'card', id: 'jobs', 'aria-labelledby': 'jobs-h' }, h('h2', { id: 'jobs-h' }, 'Jobs'), jobsWrap),
        h('section', { class: 'card', id: 'predict', 'aria-labelledby': 'predict-h' }, h('h2', { id: 'predict-h' }, 'Predict an image'), predictCard),
        h('section', { class: 'card', id: 'weights', 'aria-labelledby': 'weights-h' }, h('h2', { id: 'weights-h' }, 'Weights and snapshots'), weightsWrap),
        h('section', { class: 'card', id: 'notes', 'aria-labelledby': 'notes-h' }, h('h2', { id: 'notes-h' }, 'Decisions'), notesWrap))));

  window.sgdrd.charts = { lrfind: lrChart, training: charts };

  betaInput.addEventListener('input', () => {
    st.beta = Number(betaInput.value);
    betaOut.textContent = st.beta.toFixed(3);
    drawTraining();
  });
  charts.onAutoLog = (on) => { lossLogBox.checked = on; };
  lossLogBox.addEventListener('change', () => {
    charts.setLossLog(lossLogBox.checked);
    drawTraining();
  });
  lrLogBox.addEventListener('change', () => {
    charts.setLrLog(lrLogBox.checked);
    drawTraining();
  });

  // ---- data ----

  async function loadRun() {
    st.run = await get(`/runs/${rid}`);
    if (!st.dsNames) {
      st.dsNames = new Map();
      const ds = await getAll('/datasets', 'datasets', 1000).catch(() => []);
      for (const d of ds) st.dsNames.set(String(d.id), d.name);
    }
  }

  async function loadJobs() {
    const all = rowsOf(await get(`/jobs?run=${rid}&limit=100`), ['items', 'jobs']);
    st.jobs = all.filter((j) => String(pick(j, 'run', 'run_id') ?? runId) === String(runId))
      .sort((a, b) => Number(b.id) - Number(a.id));
  }

  async function loadSweeps() {
    st.sweepList = (await getAll(`/runs/${rid}/lr-finds`, 'lr_finds', 200)).sort((a, b) => Number(a.id) - Number(b.id));
    const ids = st.sweepList.map((s) => String(s.id));
    const newest = ids[ids.length - 1];
    for (const s of [...st.selected]) if (!ids.includes(s)) st.selected.delete(s);
    if (newest && (!st.userPicked || st.selected.size === 0)) {
      st.selected = new Set([newest]);
    }
    // Finished sweeps never change: fetch each once; the newest may still be growing.
    await Promise.all([...st.selected].map(async (id) => {
      if (st.sweeps.has(id) && id !== newest) return;
      st.sweeps.set(id, await get(`/lr-finds/${encodeURIComponent(id)}`));
    }));
  }

  // The whole run downsampled by the API on the first load, new points appended after
  // (series.js); a zoom into a downsampled run fetches its window.
  async function loadMetrics() {
    await source.load();
    st.series = source.series;
  }

  // The LR of each layer group: keys lr_0, lr_1, ... in group order.
  function lrKeys() {
    return [...st.series.keys()].filter((k) => /^lr_\d+$/.test(k)).sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  }

  async function loadSnapshots() {
    st.snapshots = rowsOf(await get(`/runs/${rid}/snapshots`), ['items', 'snapshots']);
  }

  async function loadEpochs() {
    st.epochs = rowsOf(await get(`/runs/${rid}/epochs`), ['items', 'epochs']);
  }

  // ---- drawing ----

  function drawHead() {
    if (!st.run) return;
    const v = runView(st.run);
    title.textContent = `Run #${v.id}${v.name ? ' ' + v.name : ''}`;
    document.title = `${title.textContent} · sgdrd`;
    const ds = st.dsNames && st.dsNames.get(String(v.dataset));
    const item = (k, val) => h('div', { class: 'fact' }, h('dt', {}, k), h('dd', {}, val ?? '—'));
    const job = currentJob();
    mount(facts,
      item('State', stateBadge(job ? job.state : 'idle')),
      item('Dataset', v.dataset !== undefined ? h('a', { href: `#/datasets/${encodeURIComponent(v.dataset)}` }, ds ? `${ds}` : `#${v.dataset}`) : '—'),
      item('Arch', v.arch),
      item('Size', v.sz !== undefined ? `${v.sz} px` : '—'),
      item('Batch', v.bs !== undefined ? String(v.bs) : '—'),
      item('Trainable', isNum(v.freezeTo) ? (v.freezeTo === 0 ? 'all groups' : `groups ≥ ${v.freezeTo}`) + (isNum(v.nGroups) ? ` of ${v.nGroups}` : '') : '—'),
      item('Precompute', v.precompute === undefined ? '—' : v.precompute ? 'on' : 'off'),
      item(v.multiLabel ? 'Best F2' : 'Best accuracy', v.multiLabel ? fmtNum(pick(v.best, 'f2', 'accuracy')) : fmtPct(pick(v.best, 'accuracy'))),
      item('Best valid loss', fmtNum(pick(v.best, 'valid_loss'))));
    const last = st.jobs[0];
    mount(jobBar, job
      ? h('div', { class: 'jobline' }, h('span', { class: 'muted' }, `Job #${job.id}`), jobProgress(job),
        h('button', { type: 'button', class: 'small danger', onclick: () => cancelJob(job.id) }, 'Cancel'))
      : h('div', { class: 'jobline' }, h('span', { class: 'muted' }, 'No job queued.'),
        last ? h('span', { class: 'muted' }, `Last: job #${last.id} ${pick(last, 'kind') ?? ''} `, stateBadge(last.state)) : null));
    world.update(job, v.bs);
  }

  // The running job, else the oldest queued one.
  function currentJob() {
    const active = st.jobs.filter((j) => j.state === 'running' || j.state === 'queued');
    const running = active.find((j) => j.state === 'running');
    if (running) return running;
    if (active.length) return active[active.length - 1];
    const cj = pick(st.run || {}, 'current_job');
    return cj && typeof cj === 'object' && ['queued', 'running'].includes(cj.state) ? cj : null;
  }

  // Which layer groups trained during a sweep: the last freeze or unfreeze job that
  // finished before the sweep's job (sweeps before and after unfreezing are compared).
  function sweepLayers(s) {
    const job = Number(pick(s, 'job'));
    if (!isNum(job)) return '';
    const change = st.jobs.filter((j) => Number(j.id) < job && j.state === 'succeeded' && ['freeze', 'unfreeze'].includes(pick(j, 'kind')))
      .sort((a, b) => Number(b.id) - Number(a.id))[0];
    if (!change) return '';
    return change.kind === 'unfreeze' ? ' · unfrozen' : ` · frozen to ${pick(change.params || {}, 'to') ?? '?'}`;
  }

  function sweepLabel(s) {
    const range = isNum(s.start_lr) && isNum(s.end_lr) ? ` · ${fmtLr(s.start_lr)}–${fmtLr(s.end_lr)}` : '';
    return `#${s.id}${sweepLayers(s)}${range}${s.created_at ? ' · ' + fmtTime(s.created_at) : ''}`;
  }

  function drawLrFind() {
    const legend = sweepPicker.querySelector('legend');
    mount(sweepPicker, legend, st.sweepList.map((s) => {
      const id = String(s.id);
      const box = h('input', { type: 'checkbox', id: `sweep-${id}`, checked: st.selected.has(id), value: id });
      box.addEventListener('change', async () => {
        st.userPicked = true;
        if (box.checked) st.selected.add(id); else st.selected.delete(id);
        try {
          if (box.checked && !st.sweeps.has(id)) st.sweeps.set(id, await get(`/lr-finds/${encodeURIComponent(id)}`));
        } catch (err) { showBanner(err); }
        drawLrFind();
      });
      return h('span', { class: 'field-check' }, box, h('label', { for: `sweep-${id}` }, sweepLabel(s)));
    }));
    sweepPicker.hidden = st.sweepList.length < 2;
    const sel = st.sweepList.filter((s) => st.selected.has(String(s.id)) && st.sweeps.has(String(s.id)));
    const has = sel.length > 0;
    lrfindEmpty.hidden = has;
    lrfindEl.hidden = !has;
    if (!has) { mount(suggestionsEl); return; }
    const sweeps = sel.map((s, i) => {
      const full = st.sweeps.get(String(s.id));
      const running = !full.finished_at;
      return {
        id: s.id, label: `#${s.id}`, points: rowsOf(full.points ?? full, ['points']), suggestions: full.suggestions || null,
        primary: i === sel.length - 1, start_lr: full.start_lr, end_lr: running ? full.end_lr : undefined,
      };
    });
    lrChart.update(sweeps);
    lrfindEl.dataset.points = String(sweeps[sweeps.length - 1].points.length);
    const sug = sweeps[sweeps.length - 1].suggestions || {};
    sugHead.textContent = sweeps.length > 1 ? `Suggestions of sweep ${sweeps[sweeps.length - 1].label}` : 'Suggestions';
    sugHead.hidden = Object.keys(sug).length === 0;
    mount(suggestionsEl, Object.entries(sug).map(([name, v]) => {
      const lr = typeof v === 'number' ? v : v && v.lr;
      const reason = v && typeof v === 'object' ? v.reason : '';
      return h('div', { class: `suggestion sug-${name}` },
        h('dt', {}, name.replace(/_/g, ' ')),
        h('dd', {}, h('strong', {}, fmtLr(lr)), reason ? h('span', { class: 'reason' }, reason) : null,
          isNum(lr) ? h('button', { type: 'button', class: 'small', title: `Use ${fmtLr(lr)} as the fit's learning rate`, onclick: () => useLr(lr) }, 'Use') : null));
    }));
  }

  function useLr(lr) {
    const input = controls.querySelector('form[data-action="fit"] [name="lrs"]');
    input.value = fmtLr(lr);
    input.focus();
  }

  // The iteration an epoch ended at: its `step`, or for rows recorded before epochs had
  // one (schema version 3), the last train_loss point recorded before the epoch's row (the
  // row is written after the epoch's last batch and before the next epoch's first).
  function epochStep(e) {
    if (isNum(e.step)) return e.step;
    const tl = st.series.get('train_loss') || [];
    if (!isNum(e.time) || !tl.length || !isNum(tl[0].time)) return undefined;
    let lo = 0;
    let hi = tl.length - 1;
    if (tl[0].time > e.time) return undefined;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (tl[mid].time <= e.time) lo = mid; else hi = mid - 1;
    }
    return tl[lo].step;
  }

  function drawTraining() {
    const view = source.view();
    const tl = view.get('train_loss') || [];
    const has = tl.length > 0;
    trainEmpty.hidden = has;
    lossEl.hidden = !has;
    lrEl.hidden = !has;
    chartNote.hidden = !has;
    if (!has) return;
    const steps = tl.map((r) => r.step);
    const raw = tl.map((r) => (isNum(r.value) ? r.value : null));
    const withStep = st.epochs.map((e) => ({ e, step: epochStep(e) })).filter((x) => isNum(x.step));
    // A cycle ends where the next epoch starts another cycle or belongs to another fit.
    const cycleMarks = [];
    for (let i = 0; i < withStep.length; i++) {
      const a = withStep[i].e;
      const b = i + 1 < withStep.length ? withStep[i + 1].e : null;
      const ended = b ? a.cycle !== b.cycle || pick(a, 'job') !== pick(b, 'job') : false;
      if (ended) cycleMarks.push({ step: withStep[i].step, label: `cycle ${a.cycle}` });
    }
    const validRows = withStep.filter((x) => isNum(x.e.valid_loss));
    // A downsampled run draws the API's smooth_loss: the beta slider needs every point.
    const sl = source.coarse && view.get('smooth_loss');
    betaInput.disabled = Boolean(sl);
    betaHint.textContent = sl ? 'a long run is drawn downsampled: the smoothed curve is the daemon\'s; drag to zoom in' : BETA_HINT;
    charts.update({
      steps, raw, smooth: sl ? sl.map((r) => (isNum(r.value) ? r.value : null)) : debiasedEma(raw, st.beta),
      smoothSteps: sl ? sl.map((r) => r.step) : undefined,
      validSteps: validRows.map((x) => x.step), valid: validRows.map((x) => x.e.valid_loss),
      lr: lrKeys().map((k) => view.get(k) || []).map((rows) => ({ steps: rows.map((r) => r.step), values: rows.map((r) => r.value) })),
      epochMarks: withStep.map((x) => x.step), cycleMarks,
    });
    lossEl.dataset.points = String(steps.length);
  }

  function drawEpochs() {
    const rows = st.epochs;
    const multi = st.run && runView(st.run).multiLabel;
    if (!rows.length) { mount(epochsWrap, h('p', { class: 'empty' }, 'No epoch finished yet.')); }
    else {
      const metric = multi ? 'F2' : 'Accuracy';
      mount(epochsWrap, h('table', { class: 'table epochs' },
        h('caption', { class: 'sr-only' }, 'Per-epoch results'),
        h('thead', {}, h('tr', {}, ['Epoch', 'Cycle', 'Train loss', 'Valid loss', metric, 'Seconds', 'img/s']
          .map((t, i) => h('th', { scope: 'col', class: i ? 'num' : null }, t)))),
        h('tbody', {}, rows.map((e) => h('tr', {},
          h('td', {}, String(e.epoch ?? '—')),
          h('td', { class: 'num' }, String(e.cycle ?? '—')),
          h('td', { class: 'num' }, fmtNum(e.train_loss)),
          h('td', { class: 'num' }, fmtNum(e.valid_loss)),
          h('td', { class: 'num' }, multi ? fmtNum(e.f2) : fmtPct(e.accuracy)),
          h('td', { class: 'num' }, fmtNum(e.seconds, 1)),
          h('td', { class: 'num' }, fmtNum(pick(e, 'img_per_s', 'img_s'), 0)))))));
    }
    // TTA results: from tta jobs and from the recipe (whose last step is TTA).
    const tta = st.jobs.filter((j) => j.state === 'succeeded' && j.result && typeof j.result === 'object' && isNum(j.result.tta_accuracy ?? j.result.accuracy_tta))
      .sort((x, y) => Number(x.id) - Number(y.id));
    if (!tta.length) { mount(ttaWrap); return; }
    const centreOf = (r) => r.centre_accuracy ?? r.accuracy;
    const passes = (r) => (Array.isArray(r.pass_accuracy) ? r.pass_accuracy.slice(0, isNum(r.passes_run) ? r.passes_run : undefined) : [])
      .map((x) => fmtPct(x)).join(' · ') || '—';
    // A TTA that did worse than the centre crop alone (the job's notes say so too): the
    // views training drew cut content off this data, so its predictions are better without.
    const worse = tta.filter((j) => j.result.tta_worse === true);
    mount(ttaWrap, h('h3', {}, 'Test-time augmentation'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'table tta-table' },
        h('caption', { class: 'sr-only' }, 'Validation metrics of the centre crop alone and with TTA'),
        h('thead', {}, h('tr', {}, ['Job', 'Copies', 'Valid loss', 'with TTA', 'Centre crop', 'with TTA', 'Gain', 'Each pass']
          .map((t, i) => h('th', { scope: 'col', class: i > 0 && i < 7 ? 'num' : null }, t)))),
        h('tbody', {}, tta.map((j) => {
          const r = j.result;
          const acc = centreOf(r);
          const accT = r.tta_accuracy ?? r.accuracy_tta;
          const gain = isNum(acc) && isNum(accT) ? accT - acc : null;
          return h('tr', { dataset: { job: j.id }, class: r.tta_worse === true ? 'tta-worse' : null },
            h('td', {}, `#${j.id} ${pick(j, 'kind') ?? ''}`,
              r.tta_worse === true ? h('span', { class: 'badge warn', title: 'TTA below the centre crop alone' }, 'worse') : null),
            h('td', { class: 'num' }, String(r.n_aug ?? '—')),
            h('td', { class: 'num' }, fmtNum(r.loss)),
            h('td', { class: 'num' }, fmtNum(r.tta_loss ?? r.loss_tta)),
            h('td', { class: 'num' }, fmtPct(acc)),
            h('td', { class: 'num' }, fmtPct(accT)),
            h('td', { class: `num ${gain > 0 ? 'up' : gain < 0 ? 'down' : ''}` }, isNum(gain) ? `${gain >= 0 ? '+' : '−'}${(Math.abs(gain) * 100).toFixed(2)} pt` : '—'),
            h('td', { class: 'passes' }, passes(r)));
        })))),
      worse.map((j) => h('p', { class: 'notice warn tta-warning', role: 'alert', dataset: { job: j.id } },
        h('strong', {}, `TTA did worse (job #${j.id}): `),
        `the average of its passes reached ${fmtPct(j.result.tta_accuracy ?? j.result.accuracy_tta)}, the centre crop alone ${fmtPct(centreOf(j.result))}. `,
        'Predict without TTA for this run: the views training drew cut content off its images.')));
  }

  function drawWeights() {
    const trained = st.jobs.some((j) => j.state === 'succeeded' && ['fit', 'recipe', 'lr_find', 'precompute'].includes(pick(j, 'kind')));
    mount(weightsWrap,
      trained
        ? h('p', {}, h('a', { class: 'button', href: `/api/v1/runs/${rid}/weights`, download: `run-${runId}.safetensors` }, 'Download current weights'),
          h('small', { class: 'hint' }, 'safetensors, torchvision parameter names'))
        : h('p', { class: 'empty' }, 'No weights yet: they are written after the first job.'),
      st.snapshots.length
        ? h('ul', { class: 'snaplist' }, st.snapshots.slice().reverse().slice(0, 50).map((sn) => h('li', {},
          h('span', { class: 'badge' }, sn.kind ?? 'snapshot'),
          ` ${isNum(sn.cycle) ? `cycle ${sn.cycle}` : ''}${isNum(sn.epoch) ? ` · epoch ${sn.epoch}` : ''}`,
          h('small', { class: 'muted' }, ` ${fmtTime(sn.created_at)}`))))
        : null);
  }

  // One image through the current weights (sync): the classes by probability.
  function buildPredict() {
    const out = h('div', { class: 'predict-out', 'aria-live': 'polite' });
    const f = h('form', { class: 'form control', 'data-action': 'predict', 'aria-label': 'Predict an image' },
      h('div', { class: 'grid-fields compact' },
        field({ name: 'image', label: 'PNG or JPEG image', type: 'file', accept: 'image/png,image/jpeg' }),
        field({ name: 'tta', label: 'with TTA', type: 'checkbox', value: false })),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Predict')),
      statusLine(), out);
    return onSubmit(f, async (form) => {
      const file = form.elements.image.files[0];
      if (!file) throw new ApiError(0, { title: 'No image', detail: 'Choose a PNG or JPEG file first.', field: 'image' });
      const tta = form.elements.tta.checked ? '?tta=1' : '';
      const r = await post(`/runs/${rid}/predict${tta}`, file, { type: file.type || 'application/octet-stream' });
      const d = r.data || {};
      const classes = d.classes || [];
      const probs = d.probs || [];
      const ranked = classes.map((c, i) => [c, probs[i]]).filter(([, p]) => isNum(p)).sort((a, b) => b[1] - a[1]).slice(0, 5);
      const url = URL.createObjectURL(file);
      mount(out, h('div', { class: 'predict-result' },
        h('img', { src: url, alt: `the image sent: ${file.name}`, width: 64, height: 64, onload: () => URL.revokeObjectURL(url) }),
        h('ol', { class: 'probs' }, ranked.map(([c, p]) => h('li', {},
          h('span', { class: 'prob-class' }, String(c)),
          h('span', { class: 'prob-bar', 'aria-hidden': 'true' }, h('span', { style: `width:${Math.round(p * 100)}%` })),
          h('span', { class: 'prob-val' }, fmtPct(p)))))));
      return d.top ? `Most likely: ${d.top.class} (${fmtPct(d.top.prob)})${d.tta ? ', with TTA' : ''}.` : 'Done.';
    });
  }

  // What a job event makes stale besides the job list: a job's progress ticks often, so the
  // curves are refetched only when its kind writes them or when it ends.
  function jobTopics(text) {
    let j;
    try { j = JSON.parse(text); } catch { return ['lrfind', 'epochs', 'metrics']; }
    if (j && j.data && typeof j.data === 'object') j = j.data;
    if (!j || typeof j !== 'object') return ['lrfind', 'epochs', 'metrics'];
    if (!['queued', 'running'].includes(j.state)) return ['lrfind', 'epochs', 'metrics'];
    return j.kind === 'lr_find' ? ['lrfind'] : [];
  }

  // A note's data is {"job","what","why"} (or an event envelope holding it in "data").
  function addNote(text) {
    let n;
    try { n = JSON.parse(text); } catch { return; }
    if (n && n.data && typeof n.data === 'object') n = n.data;
    if (!n || !n.what) return;
    st.notes.push(n);
    if (st.notes.length > 500) st.notes.shift();
  }

  function drawNotes() {
    if (!st.notes.length) return;
    mount(notesWrap, h('ol', { class: 'notelist', reversed: true, tabindex: 0, 'aria-label': 'Decisions, newest first' }, st.notes.slice().reverse().slice(0, 100).map((n) => h('li', {},
      h('div', { class: 'note-what' }, isNum(n.job) ? h('span', { class: 'jobid' }, `#${n.job} `) : null, String(n.what)),
      n.why ? h('div', { class: 'note-why' }, String(n.why)) : null))));
  }

  function drawJobs() {
    if (!st.jobs.length) { mount(jobsWrap, h('p', { class: 'empty' }, 'No jobs yet.')); return; }
    mount(jobsWrap, h('ol', { class: 'joblist' }, st.jobs.slice(0, 30).map((j) => {
      const kind = pick(j, 'kind', 'type', 'op') || 'job';
      const err = pick(j, 'error', 'error_message');
      const hasCsv = j.predictions === true || (/predict/.test(kind) && j.state === 'succeeded');
      return h('li', { class: `job state-${j.state}` },
        h('div', { class: 'jobrow' }, h('span', { class: 'jobid' }, `#${j.id}`), h('span', { class: 'jobkind' }, kind), stateBadge(j.state),
          ['queued', 'running'].includes(j.state) ? h('button', { type: 'button', class: 'small danger', onclick: () => cancelJob(j.id), 'aria-label': `Cancel job ${j.id}` }, 'Cancel') : null),
        j.state === 'running' ? jobProgress(j, false) : null,
        err ? h('p', { class: 'job-error' }, typeof err === 'object' ? err.detail || JSON.stringify(err) : String(err)) : null,
        hasCsv ? h('a', { href: `/api/v1/jobs/${encodeURIComponent(j.id)}/predictions.csv`, download: `predictions-job${j.id}.csv` }, 'predictions.csv') : null,
        h('small', { class: 'muted' }, fmtTime(pick(j, 'created_at', 'queued_at')),
          isNum(pick(j, 'duration_s')) ? ` · ${fmtDuration(j.duration_s)}` : ''));
    })));
  }

  // ---- refresh loop: SSE says what changed, the API says what it is ----

  const stale = new Set(['run', 'jobs', 'lrfind', 'epochs', 'metrics']);
  let flushing = false;
  let again = false;

  const flush = throttle(async () => {
    if (!st.alive || st.deleting) return;
    if (flushing) { again = true; return; }
    flushing = true;
    const t = new Set(stale);
    stale.clear();
    try {
      if (t.has('run') || !st.run) await loadRun();
      await Promise.all([
        t.has('jobs') || t.has('run') ? loadJobs() : null,
        t.has('jobs') ? loadSnapshots() : null,
        t.has('lrfind') ? loadSweeps() : null,
        t.has('metrics') ? loadMetrics() : null,
        t.has('epochs') ? loadEpochs() : null,
      ]);
      if (!st.alive) return;
      if (t.has('run') || t.has('jobs')) { drawHead(); drawJobs(); drawWeights(); }
      if (t.has('lrfind') || t.has('jobs')) drawLrFind();
      if (t.has('metrics') || t.has('epochs')) drawTraining();
      if (t.has('epochs') || t.has('jobs')) drawEpochs();
      if (t.has('notes')) drawNotes();
      if (t.has('jobs')) await interp.refresh(st.jobs);
      mount(banner);
    } catch (err) {
      if (!st.alive) return;
      if (err instanceof ApiError && err.status === 404 && !st.run) {
        mount(root, h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, `Run #${runId}`)), errorBox(err));
        stop();
        return;
      }
      for (const x of t) stale.add(x);
      showBanner(err);
    } finally {
      flushing = false;
    }
    if (st.alive && (again || stale.size)) { again = false; flush(); }
  }, REDRAW_MS);

  function markStale(topics) {
    for (const x of topics) stale.add(x);
    flush();
  }

  function showBanner(err, what) {
    const box = h('div', { class: 'notice warn', role: 'alert' }, `${what || 'Could not refresh'}: `, (err && err.message) || String(err),
      what ? [' ', h('button', { type: 'button', class: 'small', onclick: () => mount(actionNote) }, 'Dismiss')] : ' — retrying.');
    mount(what ? actionNote : banner, box);
  }

  const sse = subscribe(`/api/v1/runs/${rid}/events`, (topics, type, data) => {
    if (type === 'note') addNote(data);
    if (type === 'job') for (const x of jobTopics(data)) topics.add(x);
    markStale(topics);
  }, (s) => {
    st.live = s;
    liveBadge.textContent = s === 'live' ? 'live' : 'reconnecting…';
    liveBadge.className = `live-pill ${s}`;
  });
  window.sgdrd.sse = sse.stats;

  // While a job runs, progress and ETA are polled too (cheap; also covers a silent stream).
  const poll = setInterval(() => {
    const job = currentJob();
    if (st.live !== 'live') markStale(['run', 'jobs', 'lrfind', 'epochs', 'metrics']);
    else if (job && ['queued', 'running'].includes(job.state)) markStale(['run', 'jobs']);
  }, POLL_MS);

  flush();

  // Deleting needs the run idle (the API answers 409 otherwise, shown in the banner).
  async function deleteRun() {
    if (!window.confirm(`Delete run #${runId} with its curves, snapshots and weights?`)) return;
    st.deleting = true;   // no refresh may ask for the run while it goes,
    while (flushing) await new Promise((r) => setTimeout(r, 50));   // nor one under way
    try {
      await del(`/runs/${rid}`);
      stop();
      location.hash = '#/runs';
    } catch (err) {
      st.deleting = false;
      showBanner(err, 'Could not delete the run');
    }
  }

  async function cancelJob(id) {
    try {
      await post(`/jobs/${encodeURIComponent(id)}/cancel`);
      markStale(['run', 'jobs']);
    } catch (err) {
      showBanner(err, 'Could not cancel the job');
    }
  }

  // ---- controls ----

  function buildControls() {
    const queued = async (path, body) => {
      const r = await post(`/runs/${rid}/${path}`, body);
      markStale(['run', 'jobs']);
      const jid = idFrom(r.location, r.data);
      return jid ? `Queued job #${jid}.` : 'Done.';
    };
    const form = (action, heading, fields, buttons, submit) => onSubmit(
      h('form', { class: 'form control', 'data-action': action, 'aria-label': heading },
        h('h3', {}, heading), fields.length ? h('div', { class: 'grid-fields compact' }, fields) : null,
        h('div', { class: 'actions' }, buttons), statusLine()),
      submit);
    const body = (f, spec) => {
      const b = {};
      for (const [name, parse] of spec) {
        const el = f.elements[name];
        setPath(b, name, el.type === 'checkbox' ? el.checked : parse(el.value));
      }
      return b;
    };

    return h('div', { class: 'controls' },
      form('lr-find', 'Find LR', [
        field({ name: 'start_lr', label: 'Start LR', type: 'number', value: '1e-5' }),
        field({ name: 'end_lr', label: 'End LR', type: 'number', value: '10' }),
        field({ name: 'num_it', label: 'Iterations', type: 'number', placeholder: 'default' }),
      ], h('button', { type: 'submit', class: 'primary' }, 'Find LR'),
      (f) => queued('lr-find', body(f, [['start_lr', num], ['end_lr', num], ['num_it', num]]))),

      form('fit', 'Fit (SGDR)', [
        field({ name: 'lrs', label: 'Learning rate(s)', value: '1e-2', hint: 'One, or one per layer group: 1e-4, 1e-3, 1e-2' }),
        field({ name: 'n_cycle', label: 'Cycles', type: 'number', value: '3' }),
        field({ name: 'cycle_len', label: 'Cycle length (epochs)', type: 'number', value: '1' }),
        field({ name: 'cycle_mult', label: 'Cycle multiplier', type: 'number', placeholder: '1' }),
        field({ name: 'wd', label: 'Weight decay', type: 'number', placeholder: 'default' }),
        field({ name: 'schedule', label: 'Schedule', type: 'select', value: 'sgdr', options: [['sgdr', 'SGDR (cosine, restarts)'], ['constant', 'constant'], ['1cycle', '1cycle']] }),
        field({ name: 'early_stop.patience', label: 'Early stop patience', type: 'number', placeholder: 'off' }),
        field({ name: 'snapshots', label: 'Snapshot each cycle', type: 'checkbox', value: false }),
      ], h('button', { type: 'submit', class: 'primary' }, 'Fit'),
      (f) => {
        const b = body(f, [['lrs', lrs], ['n_cycle', num], ['cycle_len', num], ['cycle_mult', num], ['wd', num], ['schedule', String], ['early_stop.patience', num]]);
        if (f.elements.snapshots.checked) b.snapshots = true;
        return queued('fit', b);
      }),

      form('freeze', 'Layer groups', [
        field({ name: 'to', label: 'Freeze up to group', type: 'number', value: '1', hint: 'Groups before this one stop training.' }),
      ], [h('button', { type: 'submit', value: 'freeze' }, 'Freeze'), h('button', { type: 'submit', value: 'unfreeze' }, 'Unfreeze all')],
      (f, submitter) => (submitter && submitter.value === 'unfreeze' ? queued('unfreeze', {}) : queued('freeze', body(f, [['to', num]])))),

      form('precompute', 'Precompute', [],
        [h('button', { type: 'submit', value: 'on' }, 'Turn on'), h('button', { type: 'submit', value: 'off' }, 'Turn off')],
        (f, submitter) => queued('precompute', { on: !!submitter && submitter.value === 'on' })),

      form('resize', 'Resize images', [
        field({ name: 'sz', label: 'New size (px)', type: 'number', placeholder: 'e.g. 64' }),
      ], h('button', { type: 'submit' }, 'Resize'),
      (f) => queued('resize', body(f, [['sz', num]]))),

      form('tta', 'Test-time augmentation', [
        field({ name: 'n_aug', label: 'Augmented copies', type: 'number', value: '4' }),
      ], h('button', { type: 'submit' }, 'Run TTA'),
      (f) => queued('tta', body(f, [['n_aug', num]]))),

      form('predict-test', 'Predict test/ folder', [
        field({ name: 'tta', label: 'with TTA', type: 'checkbox', value: true }),
      ], h('button', { type: 'submit' }, 'Predict'),
      (f) => queued('predict-test', { tta: f.elements.tta.checked })),

      form('recipe', 'Whole recipe', [
        field({ name: 'max_epochs', label: 'Max epochs', type: 'number', placeholder: 'recipe default' }),
        field({ name: 'n_aug', label: 'TTA copies', type: 'number', placeholder: '4' }),
        field({ name: 'close_to_imagenet', label: 'Images close to ImageNet (smaller body LRs)', type: 'checkbox', value: false }),
      ], h('button', { type: 'submit', class: 'primary' }, 'Run the recipe'),
      (f) => {
        const b = body(f, [['max_epochs', num], ['n_aug', num]]);
        if (f.elements.close_to_imagenet.checked) b.close_to_imagenet = true;
        return queued('recipe', b);
      }),
    );
  }

  // ---- exports ----

  function exportLrFind(fmt) {
    const sel = st.sweepList.filter((s) => st.selected.has(String(s.id)) && st.sweeps.has(String(s.id))).map((s) => st.sweeps.get(String(s.id)));
    const name = `run${runId}-lrfind`;
    if (fmt === 'json') { download(`${name}.json`, JSON.stringify(sel, null, 1), 'application/json'); return; }
    const rows = sel.flatMap((s) => rowsOf(s.points ?? s, ['points']).map((p) => ({ sweep: s.id, ...p })));
    download(`${name}.csv`, toCsv(['sweep', 'iter', 'lr', 'loss', 'smooth_loss'], rows), 'text/csv');
  }

  // JSON: the API's own metric points (every key) and epoch rows; CSV: one row per step,
  // one column per key, validation loss on the step its epoch ended at.
  async function exportTraining(fmt) {
    const name = `run${runId}-training`;
    const series = await source.all();
    const keys = [...series.keys()].sort((a, b) => (a === 'train_loss' ? -1 : b === 'train_loss' ? 1 : a.localeCompare(b)));
    if (fmt === 'json') {
      const points = keys.flatMap((k) => series.get(k)).sort((a, b) => a.step - b.step || a.key.localeCompare(b.key));
      download(`${name}.json`, JSON.stringify({ run: st.run ? st.run.id : runId, points, epochs: st.epochs }, null, 1), 'application/json');
      return;
    }
    const byStep = new Map();
    for (const k of keys) {
      for (const p of series.get(k)) {
        const row = byStep.get(p.step) || { step: p.step };
        row[k] = p.value;
        byStep.set(p.step, row);
      }
    }
    for (const e of st.epochs) {
      const s = epochStep(e);
      if (isNum(s) && byStep.has(s)) byStep.get(s).valid_loss = e.valid_loss;
    }
    const rows = [...byStep.values()].sort((a, b) => a.step - b.step);
    download(`${name}.csv`, toCsv(['step', ...keys, 'valid_loss'], rows), 'text/csv');
  }

  function exportEpochs(fmt) {
    const name = `run${runId}-epochs`;
    if (fmt === 'json') { download(`${name}.json`, JSON.stringify(st.epochs, null, 1), 'application/json'); return; }
    const cols = [...new Set(st.epochs.flatMap((e) => Object.keys(e)))];
    download(`${name}.csv`, toCsv(cols, st.epochs), 'text/csv');
  }

  function stop() {
    st.alive = false;
    sse.close();
    clearInterval(poll);
  }

  return () => {
    stop();
    lrChart.destroy();
    charts.destroy();
  };
}
