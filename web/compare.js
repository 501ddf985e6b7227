// compare.js: the compare page, #/compare?runs=3,5,8&x=step|epoch|time. The loss, accuracy
// and LR curves of the chosen runs overlaid (by iteration, epoch or wall time), and a table
// of their settings, jobs and results where the values that differ between runs are
// highlighted. The URL holds the whole selection, so a comparison can be shared. Runs with a
// queued or running job are read again every FOLLOW_MS (the downsampled view, which the
// daemon answers from its summaries for long runs), so a comparison of a run in progress
// grows; the others are only checked for a new job now and then. Polled rather than one
// event stream per run: eight streams would hold most of the browser's six connections to
// the daemon.
import { h, mount, fmtNum, fmtLr, fmtPct, fmtDuration, debiasedEma, rowsOf, pick, isNum } from './util.js';
import { get, getAll, ApiError } from './api.js';
import { PALETTE } from './charts.js';
import { OverlayChart } from './overlay.js';
import { errorBox, runView } from './widgets.js';

export const MAX_RUNS = 8;
const VIEW_POINTS = 2000;   // per key and run: about a wide chart's pixels
const BETA = 0.98;          // the run page's default smoothing of the training loss
const FOLLOW_MS = 2000;      // runs in progress are read again this often
const IDLE_EVERY = 5;       // the other runs' jobs are checked every IDLE_EVERY rounds
const MORE_COLORS = ['#65a30d', '#9333ea'];
const COLORS = [...PALETTE, ...MORE_COLORS];

const X_MODES = {
  step: { label: 'iteration', whole: true, fmt: (v) => String(Math.round(v)) },
  epoch: { label: 'epoch', whole: false, fmt: (v) => fmtNum(v, 2).replace(/\.?0+$/, '') },
  time: { label: 'wall time', whole: false, fmt: (v) => fmtClock(v), ticks: clockTicks },
};

// Seconds as m:ss or h:mm:ss; under a minute as seconds with two decimals.
function fmtClock(s) {
  if (Math.abs(s) < 60) return `${s.toFixed(2)} s`;
  const t = Math.round(s);
  const hh = Math.floor(t / 3600);
  const mm = Math.floor((t % 3600) / 60);
  const ss = String(t % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

// Wall-time ticks: seconds with as many decimals as the spacing needs while the span is
// short, clock time beyond.
function clockTicks(splits) {
  const xs = splits.filter(isNum);
  const step = xs.length > 1 ? Math.abs(xs[1] - xs[0]) : 1;
  if (Math.max(...xs.map(Math.abs)) < 120) {
    const d = Math.min(3, Math.max(0, -Math.floor(Math.log10(step || 1))));
    return splits.map((v) => (isNum(v) ? `${v.toFixed(d)} s` : ''));
  }
  return splits.map((v) => (isNum(v) ? fmtClock(Math.round(v)) : ''));
}

// The selection in the URL: {ids, x} or an ApiError-shaped problem naming the bad part.
export function parseSelection(query) {
  const raw = (query.get('runs') || '').trim();
  const x = query.get('x') || 'step';
  const problem = (field, detail) => ({ error: new ApiError(400, { title: 'Invalid comparison link', detail, field }) });
  if (!X_MODES[x]) return problem('x', `x must be step, epoch or time, not "${x}".`);
  const parts = raw.split(',').map((s) => s.trim()).filter(Boolean);
  if (!parts.length) return problem('runs', 'runs must name the runs to compare: #/compare?runs=3,5');
  const bad = parts.find((p) => !/^[1-9]\d{0,17}$/.test(p));
  if (bad !== undefined) return problem('runs', `runs must be run ids separated by commas; "${bad}" is not one.`);
  const ids = [...new Set(parts)];
  if (ids.length > MAX_RUNS) return problem('runs', `at most ${MAX_RUNS} runs can be compared at once (${ids.length} given).`);
  return { ids, x };
}

export function compareHash(ids, x) {
  return `#/compare?runs=${ids.join(',')}&x=${x}`;
}

// The jobs of run id, oldest first.
async function loadJobs(id) {
  const rid = encodeURIComponent(id);
  const jobs = rowsOf(await get(`/jobs?run=${rid}&limit=100`), ['items', 'jobs']);
  return jobs.filter((j) => String(pick(j, 'run', 'run_id') ?? id) === String(id)).sort((a, b) => Number(a.id) - Number(b.id));
}

const inProgress = (jobs) => jobs.some((j) => j.state === 'queued' || j.state === 'running');

// Everything the page shows of one run; a run that cannot be read keeps its error.
async function loadRun(id) {
  const rid = encodeURIComponent(id);
  try {
    const [run, jobs, epochs, metrics] = await Promise.all([
      get(`/runs/${rid}`),
      loadJobs(id),
      get(`/runs/${rid}/epochs`).then((r) => rowsOf(r, ['items', 'epochs'])),
      get(`/runs/${rid}/metrics?max_points=${VIEW_POINTS}`),
    ]);
    const series = new Map();
    for (const p of rowsOf(metrics, ['points'])) {
      if (!isNum(p.step) || !p.key) continue;
      if (!series.has(p.key)) series.set(p.key, []);
      series.get(p.key).push(p);
    }
    for (const rows of series.values()) rows.sort((a, b) => a.step - b.step);
    return {
      id, run, view: runView(run), series, jobs,
      epochs: epochs.filter((e) => isNum(e.step)).sort((a, b) => a.step - b.step),
    };
  } catch (error) {
    return { id, error };
  }
}

// What the page draws of a run, in short: a run read again with the same signature changes
// nothing on the page.
function signatureOf(d) {
  const series = [...d.series].map(([k, rows]) => `${k}:${rows.length}:${rows.length ? rows[rows.length - 1].step : ''}`);
  const epochs = d.epochs.map((e) => `${e.step}:${e.valid_loss}`);
  return JSON.stringify([series, epochs, d.jobs.map((j) => [j.id, j.state, j.result]), d.run]);
}

// Maps a run's iterations and epoch ends onto the chosen x axis. By epoch, an iteration
// lies between the ends of the epochs around it (epoch k ends at x = k); by wall time, x
// counts seconds from the run's first recorded point.
function xAxisOf(mode, d) {
  if (mode === 'step') return { ofPoint: (p) => p.step, ofEpoch: (e) => e.step };
  if (mode === 'time') {
    let t0 = Infinity;
    for (const rows of d.series.values()) if (rows.length && isNum(rows[0].time)) t0 = Math.min(t0, rows[0].time);
    for (const e of d.epochs) if (isNum(e.time)) t0 = Math.min(t0, e.time);
    const at = (t) => (isNum(t) && isNum(t0) ? t - t0 : null);
    return { ofPoint: (p) => at(p.time), ofEpoch: (e) => at(e.time) };
  }
  const tl = d.series.get('train_loss') || [];
  const ends = d.epochs.map((e) => e.step);
  const start = tl.length ? Math.min(tl[0].step - 1, ends.length ? ends[0] - 1 : Infinity) : (ends.length ? ends[0] - 1 : 0);
  const ofStep = (s) => {
    if (!ends.length) return null;
    let i = 0;
    while (i < ends.length && ends[i] < s) i++;
    const prev = i === 0 ? start : ends[i - 1];
    if (i < ends.length) return i + (s - prev) / Math.max(1, ends[i] - prev);
    const last = ends.length > 1 ? ends[ends.length - 1] - ends[ends.length - 2] : ends[0] - start;
    return ends.length + (s - ends[ends.length - 1]) / Math.max(1, last);
  };
  return { ofPoint: (p) => ofStep(p.step), ofEpoch: (e) => ofStep(e.step) };
}

// The layer group trained at the highest rate: the last lr_<k> key.
function headLrKey(series) {
  const keys = [...series.keys()].filter((k) => /^lr_\d+$/.test(k)).sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  return keys[keys.length - 1];
}

// Each run's curves for the three charts, in the run's colour.
function curvesOf(d, color, mode) {
  const ax = xAxisOf(mode, d);
  const name = `#${d.id}`;
  const tl = d.series.get('train_loss') || [];
  const sl = d.series.get('smooth_loss');
  const smooth = sl && sl.length ? sl : null;
  const lossRows = smooth || tl;
  const lossY = smooth ? smooth.map((p) => p.value) : debiasedEma(tl.map((p) => (isNum(p.value) ? p.value : null)), BETA);
  const multi = d.view.multiLabel;
  const lrKey = headLrKey(d.series);
  const lrRows = lrKey ? d.series.get(lrKey) : [];
  const ep = d.epochs;
  return {
    loss: [
      { run: d.id, label: `${name} train`, color, x: lossRows.map(ax.ofPoint), y: lossY },
      { run: d.id, label: `${name} valid`, color, points: true, dash: [4, 4], x: ep.map(ax.ofEpoch), y: ep.map((e) => e.valid_loss) },
    ],
    accuracy: [{ run: d.id, label: `${name} ${multi ? 'F2' : 'accuracy'}`, color, points: true, x: ep.map(ax.ofEpoch), y: ep.map((e) => (multi ? e.f2 : e.accuracy)) }],
    lr: [{ run: d.id, label: `${name} ${lrKey ? lrKey.replace('_', ' group ') : 'lr'}`, color, x: lrRows.map(ax.ofPoint), y: lrRows.map((p) => p.value) }],
  };
}

// ---- the parameter table ---------------------------------------------------------------

function showValue(v) {
  if (v === null || v === undefined) return '—';
  if (Array.isArray(v)) return v.length ? v.map(showValue).join(', ') : '[]';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function flatten(obj, prefix, out) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
    else out.set(key, showValue(v));
  }
  return out;
}

// Settings of a run: its creation config, the dataset by name.
function settingsOf(d, dsNames) {
  const cfg = (d.run && typeof d.run.config === 'object' && d.run.config) || {};
  const out = new Map();
  const ds = d.view.dataset;
  out.set('dataset', ds === undefined ? '—' : `#${ds}${dsNames.has(String(ds)) ? ' ' + dsNames.get(String(ds)) : ''}`);
  const rest = { ...cfg };
  delete rest.dataset;
  delete rest.dataset_id;
  return flatten(rest, '', out);
}

// Jobs of a run in order, named by kind and rank ("fit 2" is the run's second fit), with
// their state and parameters; runs trained the same way line up row by row.
function jobsOf(d) {
  const out = new Map();
  const seen = new Map();
  for (const j of d.jobs) {
    const kind = pick(j, 'kind') || 'job';
    const n = (seen.get(kind) || 0) + 1;
    seen.set(kind, n);
    const name = `${kind} ${n}`;
    out.set(name, j.state || '—');
    for (const [k, v] of flatten(j.params || {}, '', new Map())) out.set(`${name} · ${k}`, v);
  }
  return out;
}

function resultsOf(d) {
  const ep = d.epochs;
  const last = ep[ep.length - 1] || {};
  const multi = d.view.multiLabel;
  const tl = d.series.get('train_loss') || [];
  const tta = d.jobs.filter((j) => j.state === 'succeeded' && j.result && isNum(j.result.tta_accuracy ?? j.result.accuracy_tta));
  const metric = (v) => (multi ? fmtNum(v) : fmtPct(v));
  const out = new Map([
    [multi ? 'best F2' : 'best accuracy', metric(pick(d.view.best, multi ? 'f2' : 'accuracy'))],
    ['best valid loss', fmtNum(pick(d.view.best, 'valid_loss'))],
    ['epochs', String(ep.length)],
    ['iterations', tl.length ? String(tl[tl.length - 1].step) : '0'],
    ['last train loss', fmtNum(last.train_loss)],
    ['last valid loss', fmtNum(last.valid_loss)],
    [multi ? 'last F2' : 'last accuracy', metric(multi ? last.f2 : last.accuracy)],
    ['training time', fmtDuration(ep.reduce((a, e) => a + (isNum(e.seconds) ? e.seconds : 0), 0)) || '—'],
  ]);
  if (tta.length) {
    const r = tta[tta.length - 1].result;
    out.set('TTA accuracy', fmtPct(r.tta_accuracy ?? r.accuracy_tta));
  }
  return out;
}

// Rows of one section: every key any run has, in first-seen order, and each run's value.
function sectionRows(maps) {
  const keys = [];
  const seen = new Set();
  for (const m of maps) for (const k of m.keys()) if (!seen.has(k)) { seen.add(k); keys.push(k); }
  return keys.map((k) => {
    const values = maps.map((m) => (m.has(k) ? m.get(k) : '—'));
    return { key: k, values, differs: values.some((v) => v !== values[0]) };
  });
}

function paramTable(runs, dsNames) {
  const sections = [
    ['Settings', sectionRows(runs.map((d) => settingsOf(d, dsNames)))],
    ['Jobs', sectionRows(runs.map(jobsOf))],
    ['Results', sectionRows(runs.map(resultsOf))],
  ];
  const head = h('tr', {}, h('th', { scope: 'col' }, 'Parameter'), runs.map((d, i) => h('th', { scope: 'col', dataset: { run: d.id } },
    h('span', { class: 'swatch', style: `background:${COLORS[i % COLORS.length]}`, 'aria-hidden': 'true' }),
    h('a', { href: `#/runs/${encodeURIComponent(d.id)}` }, `Run #${d.id}`, d.view.name ? ` ${d.view.name}` : ''))));
  return h('table', { class: 'table compare-table' },
    h('caption', { class: 'sr-only' }, 'Settings, jobs and results of the compared runs; values that differ are marked'),
    h('thead', {}, head),
    sections.filter(([, rows]) => rows.length).map(([title, rows]) => h('tbody', { dataset: { section: title.toLowerCase() } },
      h('tr', { class: 'section' }, h('th', { scope: 'rowgroup', colspan: runs.length + 1 }, title)),
      rows.map((r) => h('tr', { class: r.differs ? 'differs' : null, dataset: { key: r.key } },
        h('th', { scope: 'row' }, r.key, r.differs ? h('span', { class: 'sr-only' }, ' (differs)') : null),
        r.values.map((v) => h('td', { class: r.differs ? 'differs' : null }, v)))))));
}

// ---- the page --------------------------------------------------------------------------

function xSwitch(current, onPick) {
  const group = h('div', { class: 'segmented', role: 'radiogroup', 'aria-label': 'x axis' });
  for (const [mode, m] of Object.entries(X_MODES)) {
    const id = `x-${mode}`;
    const input = h('input', { type: 'radio', name: 'xaxis', id, value: mode, checked: mode === current });
    input.addEventListener('change', () => { if (input.checked) onPick(mode); });
    group.append(h('span', {}, input, h('label', { for: id }, `by ${m.label}`)));
  }
  return group;
}

function chartCard(id, title, el, note, tool) {
  return h('section', { class: 'card', id, 'aria-labelledby': `${id}-h` },
    h('div', { class: 'card-head' }, h('h2', { id: `${id}-h` }, title), tool), el, note ? h('p', { class: 'chart-note' }, note) : null);
}

// A loss range over 8x (one diverged run next to good ones) reads better on a log axis.
function wideRange(curves) {
  let lo = Infinity;
  let hi = 0;
  for (const c of curves) for (const v of c.y) if (isNum(v) && v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return hi / lo > 8;
}

export function comparePage(root, query) {
  const sel = parseSelection(query);
  const title = h('h1', { tabindex: -1 }, 'Compare runs');
  if (sel.error) {
    mount(root, h('div', { class: 'page-head' }, title), errorBox(sel.error),
      h('p', {}, 'Pick runs with the checkboxes of the ', h('a', { href: '#/runs' }, 'runs list'), ', then Compare.'));
    return () => {};
  }
  let alive = true;
  let mode = sel.x;
  const status = h('div', { 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
  const following = h('span', { class: 'live-pill live', role: 'status', hidden: true });
  const elOf = (label) => h('div', { class: 'chart', role: 'img', 'aria-label': label });
  const lossEl = elOf('Smoothed training loss of each run, with validation loss per epoch as points');
  const accEl = elOf('Validation accuracy of each run per epoch');
  const lrEl = elOf('Learning rate of each run\'s last layer group');
  const tableWrap = h('div', { class: 'table-wrap' });
  const onlyDiff = h('input', { type: 'checkbox', id: 'only-diff' });
  const logBox = h('input', { type: 'checkbox', id: 'cmp-losslog' });
  let logAuto = true;   // the loss axis follows the data until the checkbox is used
  const charts = {
    loss: new OverlayChart(lossEl, { yLabel: 'loss', yFmt: (v) => fmtNum(v), syncKey: 'compare', height: 260 }),
    accuracy: new OverlayChart(accEl, { yLabel: 'accuracy', yFmt: (v) => fmtNum(v), syncKey: 'compare', height: 220 }),
    lr: new OverlayChart(lrEl, { yLabel: 'learning rate', yFmt: fmtLr, yTicks: (u, s) => s.map(fmtLr), syncKey: 'compare', height: 200 }),
  };
  window.sgdrd.charts = charts;
  mount(root,
    h('div', { class: 'page-head' }, title, following, h('a', { href: '#/runs', class: 'button', title: 'The runs list, with these runs ticked' }, 'Change runs'),
      xSwitch(mode, (m) => { mode = m; history.replaceState(null, '', compareHash(sel.ids, mode)); draw(); })),
    status,
    chartCard('cmp-loss', 'Loss', lossEl, 'lines: training loss, smoothed; points: validation loss at the end of each epoch',
      h('span', { class: 'field-check' }, logBox, h('label', { for: 'cmp-losslog' }, 'log loss axis'))),
    h('div', { class: 'two-col' }, chartCard('cmp-acc', 'Accuracy', accEl), chartCard('cmp-lr', 'Learning rate', lrEl, 'the last layer group\'s rate')),
    h('section', { class: 'card', id: 'cmp-params', 'aria-labelledby': 'cmp-params-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'cmp-params-h' }, 'Parameters and results'),
        h('span', { class: 'field-check' }, onlyDiff, h('label', { for: 'only-diff' }, 'only differences'))),
      h('p', { class: 'chart-note' }, h('span', { class: 'key-differs', 'aria-hidden': 'true' }), ' values that differ between the runs'),
      tableWrap));
  onlyDiff.addEventListener('change', () => root.classList.toggle('only-diff', onlyDiff.checked));
  logBox.addEventListener('change', () => { logAuto = false; draw(); });
  let runs = [];
  let dsNames = new Map();
  let timer = null;
  let round = 0;

  // Reads again the runs in progress, and every IDLE_EVERY rounds the jobs of the others
  // (one given a new job is then read whole); redraws when something changed.
  async function follow() {
    round++;
    try {
      const fresh = await Promise.all(runs.map(async (d) => {
        if (!inProgress(d.jobs)) {
          if (round % IDLE_EVERY) return d;
          // A job queued since, even one that ran to its end between two checks.
          const jobs = await loadJobs(d.id).catch(() => d.jobs);
          if (JSON.stringify(jobs.map((j) => [j.id, j.state])) === JSON.stringify(d.jobs.map((j) => [j.id, j.state]))) return d;
        }
        const n = await loadRun(d.id);
        return n.error ? d : n;
      }));
      if (!alive) return;
      let changed = false;
      fresh.forEach((n, i) => {
        if (n !== runs[i] && signatureOf(n) !== signatureOf(runs[i])) { runs[i] = n; changed = true; }
      });
      if (changed) {
        mount(tableWrap, paramTable(runs, dsNames));
        draw();
      }
      showFollowing();
    } finally {
      if (alive) timer = setTimeout(follow, FOLLOW_MS);
    }
  }

  function showFollowing() {
    const n = runs.filter((d) => inProgress(d.jobs)).length;
    following.hidden = n === 0;
    following.textContent = n ? `live: ${n} run${n > 1 ? 's' : ''} in progress` : '';
    root.dataset.following = String(n);
  }

  function draw() {
    if (!runs.length) return;
    const per = runs.map((d, i) => curvesOf(d, COLORS[i % COLORS.length], mode));
    const axis = X_MODES[mode];
    if (logAuto) logBox.checked = wideRange(per.flatMap((c) => c.loss));
    charts.loss.opts.logY = logBox.checked;
    charts.loss.opts.yLabel = logBox.checked ? 'loss (log scale)' : 'loss';
    for (const k of Object.keys(charts)) charts[k].update(per.flatMap((c) => c[k]), axis);
    root.dataset.x = mode;
  }

  Promise.all([Promise.all(sel.ids.map(loadRun)), getAll('/datasets', 'datasets', 1000).catch(() => [])]).then(([all, ds]) => {
    if (!alive) return;
    dsNames = new Map(ds.map((d) => [String(d.id), d.name]));
    runs = all.filter((d) => !d.error);
    const failed = all.filter((d) => d.error);
    mount(status, failed.map((d) => errorBox(new ApiError(d.error.status || 0, {
      title: `Run #${d.id}`, detail: d.error.status === 404 ? 'no such run (deleted, or a wrong id in the link).' : d.error.message,
    }))));
    const multi = runs.length && runs.every((d) => d.view.multiLabel);
    accEl.setAttribute('aria-label', `Validation ${multi ? 'F2' : 'accuracy'} of each run per epoch`);
    charts.accuracy.opts.yLabel = multi ? 'F2' : 'accuracy';
    charts.accuracy.opts.yFmt = multi ? fmtNum : fmtPct;
    charts.accuracy.opts.yTicks = multi ? null : (u, splits) => splits.map((v) => (isNum(v) ? `${Number((100 * v).toFixed(1))}%` : ''));
    title.textContent = `Compare runs ${runs.map((d) => `#${d.id}`).join(', ')}`;
    document.title = `${title.textContent} · sgdrd`;
    mount(tableWrap, runs.length ? paramTable(runs, dsNames) : h('p', { class: 'empty' }, 'None of these runs can be read.'));
    draw();
    showFollowing();
    root.dataset.ready = 'true';
    timer = setTimeout(follow, FOLLOW_MS);
  });
  return () => {
    alive = false;
    clearTimeout(timer);
    delete root.dataset.following;
    delete root.dataset.ready;
    delete root.dataset.x;
    root.classList.remove('only-diff');
    for (const c of Object.values(charts)) c.destroy();
  };
}
