// app.js: the dashboard's entry point: hash routing (#/runs, #/runs/3, #/new, #/datasets,
// #/datasets/2, #/compare?runs=3,5), the header's health line, the runs list (with its
// selection for the compare page), the datasets pages and the new-run form. The run page
// lives in runpage.js, the compare page in compare.js.
import { h, mount, fmtPct, fmtDuration, fmtTime, toMs, pick, isNum, rowsOf } from './util.js';
import { get, getAll, post, del, upload, idFrom, ApiError } from './api.js';
import { field, num, lrs, setPath, statusLine, onSubmit, showProblem } from './forms.js';
import { runPage } from './runpage.js';
import { comparePage, compareHash, parseSelection, MAX_RUNS } from './compare.js';
import { stateBadge, jobProgress, errorBox, runView } from './widgets.js';
import { sessionState, signInPage, signOut } from './signin.js';
import { UNAUTHENTICATED } from './api.js';

// Handles for the browser test and for anyone poking at the page from the console.
window.sgdrd = { charts: {}, sse: null, page: null };

const main = document.getElementById('main');
let cleanup = null;
let firstRoute = true;

// ---- shared bits ---------------------------------------------------------------------

function pageHeader(title, ...extra) {
  return h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, title), ...extra);
}

// The runs chosen for comparison, in the order they were ticked; kept across the list's
// refreshes and visits to other pages, and set by a compare link (so that the list shows
// what was compared, to change it).
const chosen = new Set();

// The Compare button of the runs list; sync() follows the selection (and, at the most runs
// a comparison takes, disables the boxes not ticked).
function compareButton(body) {
  const button = h('button', { type: 'button', class: 'compare-button' });
  const sync = () => {
    button.textContent = chosen.size ? `Compare (${chosen.size})` : 'Compare';
    button.disabled = chosen.size < 2;
    button.title = chosen.size < 2 ? 'Tick two runs or more to compare them' : `Compare runs ${[...chosen].map((id) => '#' + id).join(', ')}`;
    for (const box of body.querySelectorAll('input.choose')) {
      box.disabled = !box.checked && chosen.size >= MAX_RUNS;
      box.title = box.disabled ? `At most ${MAX_RUNS} runs can be compared at once` : '';
    }
  };
  button.addEventListener('click', () => { if (chosen.size >= 2) location.hash = compareHash([...chosen], 'step'); });
  sync();
  return { button, sync };
}

function chooseBox(v, compare) {
  const id = String(v.id);
  const box = h('input', { type: 'checkbox', class: 'choose', 'aria-label': `Compare run #${id}`, checked: chosen.has(id), dataset: { run: id } });
  box.addEventListener('change', () => {
    if (box.checked) chosen.add(id); else chosen.delete(id);
    compare.sync();
  });
  return box;
}

function chooseFrom(query) {
  const sel = parseSelection(query);
  if (sel.error) return;
  chosen.clear();
  for (const id of sel.ids) chosen.add(id);
}

function runsPage(root) {
  const body = h('tbody');
  const compare = compareButton(body);
  const table = h('table', { class: 'table runs' },
    h('caption', { class: 'sr-only' }, 'Runs, newest first'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'pick' }, h('span', { class: 'sr-only' }, 'Compare')),
      ['Run', 'Dataset', 'Arch', 'Size', 'State', 'Current job', 'Best accuracy', 'Created']
        .map((t, i) => h('th', { scope: 'col', class: i === 3 || i === 6 ? 'num' : null }, t)))),
    body);
  const status = h('div', { class: 'list-status', 'aria-live': 'polite' });
  mount(root,
    pageHeader('Runs', compare.button, h('a', { class: 'button primary', href: '#/new' }, 'New run')),
    h('section', { class: 'card' }, h('div', { class: 'table-wrap' }, table), status));
  let timer = null;
  let alive = true;
  const details = new Map();   // run id -> GET /runs/{id} (best metrics; list items lack them)

  const load = async () => {
    try {
      const [runs, datasets, jobs] = await Promise.all([
        getAll('/runs', 'runs', 1000),
        getAll('/datasets', 'datasets', 1000).catch(() => []),
        get('/jobs?limit=100').then((r) => rowsOf(r, ['items', 'jobs'])).catch(() => []),
      ]);
      if (!alive) return;
      const dsName = new Map(datasets.map((d) => [String(d.id), d.name]));
      // The running job of each run, else its oldest queued one.
      const active = new Map();
      for (const j of [...jobs].sort((a, b) => Number(a.id) - Number(b.id))) {
        const run = String(pick(j, 'run', 'run_id'));
        if (j.state === 'running' || (j.state === 'queued' && !active.has(run))) active.set(run, j);
      }
      // Details are refetched for runs with a job in flight, once for the others.
      await Promise.all(runs.slice(0, 200).map(async (r) => {
        const id = String(r.id);
        if (details.has(id) && !active.has(id) && !details.get(id).busy) return;
        try {
          const d = await get(`/runs/${encodeURIComponent(id)}`);
          details.set(id, { run: d, busy: active.has(id) });
        } catch { /* a run deleted meanwhile simply drops out on the next round */ }
      }));
      if (!alive) return;
      const views = runs.map((r) => runView({ ...r, ...(details.get(String(r.id)) || {}).run }));
      views.sort((a, b) => toMs(b.createdAt) - toMs(a.createdAt) || Number(b.id) - Number(a.id));
      const ids = new Set(views.map((v) => String(v.id)));
      for (const id of [...chosen]) if (!ids.has(id)) chosen.delete(id);
      // The rows are rebuilt on each refresh: a focused checkbox keeps the focus.
      const focused = document.activeElement && document.activeElement.classList.contains('choose') ? document.activeElement.dataset.run : null;
      mount(body, views.map((v) => {
        const job = active.get(String(v.id)) || v.currentJob;
        const href = `#/runs/${encodeURIComponent(v.id)}`;
        const ds = dsName.get(String(v.dataset));
        return h('tr', { dataset: { runId: v.id } },
          h('td', { class: 'pick' }, chooseBox(v, compare)),
          h('td', {}, h('a', { href }, `Run #${v.id}`, v.name ? ` ${v.name}` : '')),
          h('td', {}, ds ? `${ds}` : v.dataset !== undefined ? `#${v.dataset}` : '—'),
          h('td', {}, v.arch ?? '—'),
          h('td', { class: 'num' }, v.sz ?? '—'),
          h('td', {}, stateBadge(job ? job.state : 'idle')),
          h('td', {}, job ? jobProgress(job) : h('span', { class: 'muted' }, '—')),
          h('td', { class: 'num' }, fmtPct(pick(v.best, 'accuracy', 'f2'))),
          h('td', {}, fmtTime(v.createdAt)));
      }));
      compare.sync();
      if (focused) { const box = body.querySelector(`input.choose[data-run="${focused}"]`); if (box) box.focus(); }
      mount(status, runs.length ? '' : h('p', { class: 'empty' }, 'No runs yet. ', h('a', { href: '#/new' }, 'Create one'), ' from a registered dataset.'));
    } catch (err) {
      if (alive) mount(status, errorBox(err));
    }
    if (alive) timer = setTimeout(load, 3000);
  };
  load();
  return () => { alive = false; clearTimeout(timer); };
}

// ---- datasets ------------------------------------------------------------------------

function datasetsPage(root) {
  const list = h('div', { class: 'table-wrap' });
  const byPath = h('form', { class: 'form', 'aria-labelledby': 'reg-path-h' },
    h('h2', { id: 'reg-path-h' }, 'Register a folder on the server'),
    h('div', { class: 'grid-fields' },
      field({ name: 'name', label: 'Name', placeholder: 'dogscats' }),
      field({ name: 'path', label: 'Path', placeholder: '/data/dogscats', hint: 'Must lie under the daemon\'s --dataset-root.' }),
      field({ name: 'format', label: 'Format', type: 'select', value: 'folders', options: [['folders', 'folders (train/, valid/)'], ['csv', 'csv (labels file)'], ['idx', 'idx (MNIST style)']] }),
      field({ name: 'valid_pct', label: 'Validation fraction', type: 'number', placeholder: '0.2', hint: 'Used when there is no valid/ split.' }),
      field({ name: 'csv', label: 'CSV file', placeholder: 'labels.csv', hint: 'Only for format csv.' }),
      field({ name: 'seed', label: 'Seed', type: 'number', placeholder: '42' })),
    h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit' }, 'Register')),
    statusLine());
  onSubmit(byPath, async (form) => {
    const f = form.elements;
    const body = {};
    for (const k of ['name', 'path', 'format', 'csv']) if (f[k].value.trim() !== '') body[k] = f[k].value.trim();
    setPath(body, 'valid_pct', num(f.valid_pct.value));
    setPath(body, 'seed', num(f.seed.value));
    const r = await post('/datasets', body);
    const id = idFrom(r.location, r.data);
    location.hash = `#/datasets/${id}`;
    return r.status === 202 ? `Dataset ${id} is being registered.` : `Registered dataset ${id}.`;
  });

  const progress = h('progress', { max: 1, value: 0, hidden: true, 'aria-label': 'upload progress' });
  const byUpload = h('form', { class: 'form', 'aria-labelledby': 'reg-up-h' },
    h('h2', { id: 'reg-up-h' }, 'Upload an archive'),
    h('div', { class: 'grid-fields' },
      field({ name: 'name', label: 'Name', placeholder: 'my-images' }),
      field({ name: 'file', label: 'Archive (.tar or .tar.gz)', type: 'file', accept: '.tar,.tgz,.tar.gz,application/x-tar,application/gzip' }),
      field({ name: 'format', label: 'Format', type: 'select', value: 'folders', options: [['folders', 'folders (train/, valid/)'], ['csv', 'csv (labels file)'], ['idx', 'idx (MNIST style)']] }),
      field({ name: 'valid_pct', label: 'Validation fraction', type: 'number', placeholder: '0.2', hint: 'Used when there is no valid/ split.' })),
    h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit' }, 'Upload'), progress),
    statusLine());
  onSubmit(byUpload, async (form) => {
    const file = form.elements.file.files[0];
    const name = form.elements.name.value.trim();
    if (!file) throw new ApiError(400, { title: 'No file', detail: 'Choose a .tar or .tar.gz archive first.', field: 'file' });
    const type = /\.(tgz|gz)$/i.test(file.name) ? 'application/gzip' : 'application/x-tar';
    progress.hidden = false;
    try {
      const q = new URLSearchParams({ name, format: form.elements.format.value });
      const vp = form.elements.valid_pct.value.trim();
      if (vp) q.set('valid_pct', vp);
      const r = await upload(`/datasets?${q}`, file, type, (f) => { progress.value = f; });
      const id = idFrom(r.location, r.data);
      location.hash = `#/datasets/${id}`;
      return r.status === 202 ? `Uploaded; dataset ${id} is being registered.` : `Uploaded dataset ${id}.`;
    } finally {
      progress.hidden = true;
    }
  });

  mount(root, pageHeader('Datasets'),
    h('section', { class: 'card', 'aria-label': 'Registered datasets' }, list),
    h('div', { class: 'two-col' }, h('section', { class: 'card' }, byPath), h('section', { class: 'card' }, byUpload)));

  let alive = true;
  getAll('/datasets', 'datasets').then((ds) => {
    if (!alive) return;
    if (!ds.length) { mount(list, h('p', { class: 'empty' }, 'No datasets yet: register a folder or upload an archive below.')); return; }
    mount(list, h('table', { class: 'table' },
      h('caption', { class: 'sr-only' }, 'Datasets'),
      h('thead', {}, h('tr', {}, ['Dataset', 'Format', 'Classes', 'Images', 'Unreadable', 'Path'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ds.map(flatDataset).map((d) => h('tr', {},
        h('td', {}, h('a', { href: `#/datasets/${encodeURIComponent(d.id)}` }, `#${d.id} ${d.name ?? ''}`)),
        h('td', {}, d.format ?? '—'),
        h('td', { class: 'num' }, classCount(d)),
        h('td', { class: 'num' }, imageCount(d)),
        h('td', { class: 'num' }, unreadableCount(d)),
        h('td', { class: 'path' }, d.path ?? '—'))))));
  }).catch((err) => { if (alive) mount(list, errorBox(err)); });
  return () => { alive = false; };
}

// A dataset record with its scan (`info`: classes, counts, sizes, unreadable) lifted to the
// top level, whichever of the two the API put them in.
function flatDataset(raw) {
  const info = raw && typeof raw.info === 'object' && raw.info ? raw.info : {};
  return { ...info, ...raw };
}

function classList(d) {
  const c = pick(d, 'classes', 'class_names', 'labels');
  return Array.isArray(c) ? c : [];
}
function classCount(d) {
  const n = pick(d, 'n_classes', 'c');
  return isNum(n) ? n : classList(d).length || '—';
}
// Per-split counts, normalised to {split: {total, per_class: {name: n}}} whatever the shape.
function splits(d) {
  const counts = pick(d, 'counts', 'splits') || {};
  const out = {};
  for (const [split, v] of Object.entries(counts)) {
    if (isNum(v)) out[split] = { total: v, per_class: null };
    else if (Array.isArray(v)) out[split] = { total: v.reduce((a, b) => a + (isNum(b) ? b : 0), 0), per_class: Object.fromEntries(v.map((n, i) => [classList(d)[i] ?? i, n])) };
    else if (v && typeof v === 'object') {
      const per = v.per_class || v.classes || Object.fromEntries(Object.entries(v).filter(([k, n]) => k !== 'total' && isNum(n)));
      const total = isNum(v.total) ? v.total : Object.values(per).reduce((a, b) => a + (isNum(b) ? b : 0), 0);
      out[split] = { total, per_class: per };
    }
  }
  return out;
}
function imageCount(d) {
  const n = pick(d, 'n_images', 'images');
  if (isNum(n)) return n;
  const s = Object.values(splits(d));
  return s.length ? s.reduce((a, b) => a + b.total, 0) : '—';
}
function unreadableList(d) {
  const u = pick(d, 'unreadable', 'unreadable_files', 'errors');
  return Array.isArray(u) ? u : [];
}
function unreadableCount(d) {
  const n = pick(d, 'n_unreadable');
  return isNum(n) ? n : unreadableList(d).length;
}

function datasetPage(root, id) {
  mount(root, pageHeader(`Dataset #${id}`), h('p', { class: 'muted' }, 'Loading…'));
  let alive = true;
  const notice = h('div', { 'aria-live': 'polite' });
  // The API refuses (409) while runs use the dataset; its detail says so.
  const deleteDataset = async (d) => {
    if (!window.confirm(`Delete dataset #${d.id} ${d.name ?? ''}?${d.uploaded ? ' Its uploaded files are removed too.' : ''}`)) return;
    try {
      await del(`/datasets/${encodeURIComponent(d.id)}`);
      location.hash = '#/datasets';
    } catch (err) {
      mount(notice, errorBox(err));
    }
  };
  let timer = null;
  // A registration still under way (an upload's extraction, then the scan) is polled until
  // it ends; a failed one shows its reason, with Delete to free the name.
  const pending = (raw) => {
    const head = pageHeader(`Dataset #${raw.id} ${raw.name ?? ''}`,
      h('button', { type: 'button', class: 'danger', onclick: () => deleteDataset(raw) }, 'Delete'));
    if (raw.state === 'scanning') {
      const seen = isNum(raw.progress) && raw.progress > 0 ? `${raw.progress} files scanned` : raw.uploaded ? 'extracting the archive' : 'scanning';
      mount(root, head, notice, h('section', { class: 'card', role: 'status', 'aria-live': 'polite' },
        stateBadge('scanning'), ` Registering: ${seen}…`));
      timer = setTimeout(load, 1000);
      return true;
    }
    if (raw.state === 'failed') {
      mount(root, head, notice, h('div', { class: 'notice error', role: 'alert' },
        h('strong', {}, 'Registration failed'), ': ', raw.error ?? ''));
      return true;
    }
    return false;
  };
  const load = () => get(`/datasets/${encodeURIComponent(id)}`).then((raw) => {
    if (!alive || pending(raw)) return;
    const d = flatDataset(raw);
    const sp = splits(d);
    const classes = classList(d);
    const splitNames = Object.keys(sp);
    const perClass = splitNames.some((s) => sp[s].per_class);
    const sizes = pick(d, 'image_size', 'image_sizes', 'sizes');
    const unreadable = unreadableList(d);
    const fact = (k, v, cls) => h('div', { class: 'fact' }, h('dt', {}, k), h('dd', { class: cls }, v));
    mount(root,
      pageHeader(`Dataset #${d.id} ${d.name ?? ''}`,
        h('button', { type: 'button', class: 'danger', onclick: () => deleteDataset(d) }, 'Delete'),
        h('a', { class: 'button primary', href: `#/new?dataset=${encodeURIComponent(d.id)}` }, 'Create a run')),
      notice,
      h('section', { class: 'card' },
        h('dl', { class: 'facts inline' },
          fact('Format', d.format ?? '—'),
          fact('Classes', String(classCount(d))),
          d.multi_label !== undefined ? fact('Labels', d.multi_label ? 'multi-label' : 'single-label') : null,
          splitNames.map((s) => fact(`${s} images`, String(sp[s].total))),
          isNum(d.channels) ? fact('Channels', d.channels === 1 ? '1 (gray)' : String(d.channels)) : null,
          fact('Image size', sizes === undefined ? '—' : describeSizes(sizes)),
          fact('Unreadable', String(unreadableCount(d)))),
        h('dl', { class: 'facts path-line' }, h('dt', {}, 'Path'), h('dd', { class: 'path' }, d.path ?? '—'))),
      h('section', { class: 'card', 'aria-labelledby': 'classes-h' }, h('h2', { id: 'classes-h' }, `Classes (${classes.length})`),
        perClass
          ? h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
            h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Class'), splitNames.map((s) => h('th', { scope: 'col', class: 'num' }, s)))),
            h('tbody', {},
              classes.map((c, i) => h('tr', {}, h('th', { scope: 'row' }, String(c)),
                splitNames.map((s) => {
                  const per = sp[s].per_class;
                  return h('td', { class: 'num' }, per ? (per[c] ?? per[i] ?? '—') : '—');
                }))),
              h('tr', { class: 'total' }, h('th', { scope: 'row' }, 'total'), splitNames.map((s) => h('td', { class: 'num' }, sp[s].total))))))
          : h('ul', { class: 'chips' }, classes.map((c) => h('li', {}, String(c))))),
      unreadable.length
        ? h('section', { class: 'card', 'aria-labelledby': 'unreadable-h' }, h('h2', { id: 'unreadable-h' }, `Unreadable files (${unreadableCount(d)})`),
          h('ul', { class: 'unreadable' }, unreadable.slice(0, 500).map((u) => h('li', {},
            typeof u === 'string' ? h('code', {}, u) : [h('code', {}, pick(u, 'file', 'path', 'name') ?? JSON.stringify(u)), u.error || u.reason ? ` — ${u.error || u.reason}` : '']))))
        : null);
    focusHeading();
  }).catch((err) => { if (alive) mount(root, pageHeader(`Dataset #${id}`), errorBox(err)); });
  load();
  return () => { alive = false; clearTimeout(timer); };
}

function describeSizes(s) {
  if (typeof s === 'string') return s;
  const wh = (v) => (Array.isArray(v) ? v.join('×') : String(v));
  if (s && Array.isArray(s.min) && Array.isArray(s.max)) {
    if (wh(s.min) === wh(s.max)) return wh(s.min);
    return `${wh(s.min)} to ${wh(s.max)}${s.median ? ` (median ${wh(s.median)})` : ''}`;
  }
  if (Array.isArray(s)) return s.slice(0, 8).map((x) => (Array.isArray(x) ? x.join('×') : typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ');
  if (s && typeof s === 'object') {
    const { min_w: a, min_h: b, max_w: c, max_h: e } = s;
    if ([a, b, c, e].every(isNum)) return a === c && b === e ? `${a}×${b}` : `${a}×${b} to ${c}×${e}`;
    return Object.entries(s).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join('×') : v}`).join(', ');
  }
  return String(s);
}

// ---- new run -------------------------------------------------------------------------

function newRunPage(root, query) {
  const dsSelect = field({ name: 'dataset', label: 'Dataset', type: 'select', options: [] });
  const modelSelect = field({ name: 'pretrained', label: 'Pretrained weights', type: 'select', options: [['', 'none (random init)']], hint: 'Imported with POST /models.' });
  const form = h('form', { class: 'form', 'aria-labelledby': 'new-run-h' },
    h('h2', { id: 'new-run-h', class: 'sr-only' }, 'Learner settings'),
    h('div', { class: 'grid-fields' },
      dsSelect,
      field({ name: 'arch', label: 'Architecture', type: 'select', value: 'resnet_small', options: [['resnet_small', 'resnet_small (28–64 px)'], ['resnet_small_silu', 'resnet_small_silu (SiLU for ReLU)'], ['resnet18', 'resnet18'], ['resnet34', 'resnet34']] }),
      modelSelect,
      field({ name: 'sz', label: 'Image size (px)', type: 'number', value: '28' }),
      field({ name: 'bs', label: 'Batch size', type: 'number', value: '64' }),
      field({ name: 'tfms', label: 'Augmentation', type: 'select', value: 'side_on', options: [['side_on', 'side_on (rotations, lighting, flips)'], ['top_down', 'top_down (rotations, lighting, dihedral turns)'], ['flip', 'flip (left-right flips only)'], ['none', 'none']] }),
      field({ name: 'max_zoom', label: 'Max zoom', type: 'number', value: '1.1' }),
      field({ name: 'width', label: 'Width (resnet_small, resnet_small_silu)', type: 'number', value: '', hint: 'Channels of its first stage, doubled at each of the next two; empty for 32.' }),
      field({ name: 'pad', label: 'Padding (px)', type: 'number', value: '0', hint: 'Reflect padding the random crop shifts within (fast.ai\'s pad; sz/8 is usual).' }),
      field({ name: 'opt', label: 'Optimizer', type: 'select', value: 'sgd', options: [['sgd', 'SGD with momentum (fast.ai 0.7)'], ['adamw', 'AdamW (wd around 0.01)']] }),
      field({ name: 'ps', label: 'Dropout (ps)', value: '0.25, 0.5', hint: 'One value, or one per head layer.' }),
      field({ name: 'xtra_fc', label: 'Extra FC layers', value: '512', hint: 'Sizes separated by commas; empty for none.' }),
      field({ name: 'seed', label: 'Seed', type: 'number', value: '42' }),
      field({ name: 'workers', label: 'Workers', type: 'number', value: '1', hint: 'Processes its jobs train on by default (data-parallel; at most the daemon\'s --max-workers).' }),
      field({ name: 'precompute', label: 'Precompute body activations', type: 'checkbox', value: false }),
      field({ name: 'multi_label', label: 'Multi-label (sigmoid, F2)', type: 'checkbox', value: false })),
    h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit' }, 'Create run')),
    statusLine());
  onSubmit(form, async (f) => {
    const e = f.elements;
    const body = { dataset: num(e.dataset.value) ?? e.dataset.value, arch: e.arch.value, tfms: e.tfms.value, opt: e.opt.value };
    if (e.pretrained.value) body.pretrained = num(e.pretrained.value);
    for (const k of ['sz', 'bs', 'max_zoom', 'pad', 'width', 'seed', 'workers']) setPath(body, k, num(e[k].value));
    setPath(body, 'ps', lrs(e.ps.value));
    const x = e.xtra_fc.value.trim();
    body.xtra_fc = x === '' ? [] : x.split(/[\s,;]+/).filter(Boolean).map(num);
    body.precompute = e.precompute.checked;
    if (e.multi_label.checked) body.multi_label = true;
    const r = await post('/runs', body);
    const id = idFrom(r.location, r.data);
    location.hash = `#/runs/${id}`;
    return `Created run ${id}.`;
  });
  mount(root, pageHeader('New run'), h('section', { class: 'card' }, form));

  let alive = true;
  Promise.all([getAll('/datasets', 'datasets'), get('/models').catch(() => [])]).then(([ds, models]) => {
    if (!alive) return;
    const sel = dsSelect.querySelector('select');
    const want = query.get('dataset');
    mount(sel, ds.map((d) => h('option', { value: d.id, selected: String(d.id) === want }, `#${d.id} ${d.name ?? ''}`)));
    if (!ds.length) showProblem(form, new ApiError(0, { title: 'No dataset', detail: 'Register a dataset first (Datasets page).' }));
    const msel = modelSelect.querySelector('select');
    for (const m of rowsOf(models, ['models'])) msel.append(h('option', { value: m.id }, `#${m.id} ${m.name ?? ''} (${m.arch ?? '?'})`));
  }).catch((err) => { if (alive) showProblem(form, err); });
  return () => { alive = false; };
}

// ---- shell ---------------------------------------------------------------------------

function focusHeading() {
  const h1 = main.querySelector('h1');
  if (h1 && document.activeElement === document.body) h1.focus({ preventScroll: true });
}

// Set while the sign-in page is up: routing waits for it.
let signingIn = null;

function showSignOut(on) {
  document.getElementById('signout').hidden = !on;
}

// Replaces the page with the sign-in until the daemon takes the token, then routes again.
function needSignIn() {
  if (signingIn) return;
  if (cleanup) { cleanup(); cleanup = null; }
  window.sgdrd.page = 'signin';
  document.title = 'Sign in · sgdrd';
  showSignOut(false);
  signingIn = signInPage(main).then(() => {
    signingIn = null;
    showSignOut(true);
    route();
    health();
  });
}

function route() {
  if (signingIn) return;
  if (cleanup) { cleanup(); cleanup = null; }
  window.sgdrd.charts = {};
  const raw = location.hash.replace(/^#/, '') || '/runs';
  const [path, qs] = raw.split('?');
  const query = new URLSearchParams(qs || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let m = 'runs';
  if (parts[0] === 'runs' && parts[1]) { m = 'run'; cleanup = runPage(main, parts[1]); }
  else if (parts[0] === 'new') { m = 'new'; cleanup = newRunPage(main, query); }
  else if (parts[0] === 'datasets' && parts[1]) { m = 'datasets'; cleanup = datasetPage(main, parts[1]); }
  else if (parts[0] === 'datasets') { m = 'datasets'; cleanup = datasetsPage(main); }
  else if (parts[0] === 'compare') { m = 'compare'; cleanup = comparePage(main, query); chooseFrom(query); }
  else cleanup = runsPage(main);
  window.sgdrd.page = m;
  const h1 = main.querySelector('h1');
  document.title = `${h1 ? h1.textContent : 'Runs'} · sgdrd`;
  for (const a of document.querySelectorAll('.nav a')) {
    if (a.dataset.nav === m || ((m === 'run' || m === 'compare') && a.dataset.nav === 'runs')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // After a navigation, focus moves to the new page's heading (screen readers announce it);
  // on the first load focus stays at the top of the document, where Tab reaches the skip link.
  if (!firstRoute && h1) h1.focus({ preventScroll: true });
  firstRoute = false;
  window.scrollTo(0, 0);
}

let healthTimer = null;

async function health() {
  const el = document.getElementById('health');
  clearTimeout(healthTimer);
  try {
    const hl = await get('/health');
    const b = hl.blas && typeof hl.blas === 'object' ? hl.blas : {};
    const blas = pick(b, 'core') ?? pick(hl, 'blas_core') ?? '?';
    const threads = pick(b, 'threads') ?? pick(hl, 'blas_threads');
    const queue = pick(hl, 'queue_length', 'queue');
    mount(el, h('span', { class: 'dot ok', 'aria-hidden': 'true' }),
      `sgdrd ${hl.version ?? ''}`,
      h('span', { class: 'sep' }, ' · '), `BLAS ${blas}${isNum(threads) ? ' × ' + threads : ''}`,
      isNum(queue) ? [h('span', { class: 'sep' }, ' · '), `queue ${queue}`] : null);
    el.title = `up ${fmtDuration(pick(hl, 'uptime_s', 'uptime'))}`;
  } catch (err) {
    mount(el, h('span', { class: 'dot bad', 'aria-hidden': 'true' }),
      err instanceof ApiError && err.status === 401 ? 'signed out' : 'daemon unreachable');
  }
  healthTimer = setTimeout(health, 10000);
}

async function start() {
  const s = await sessionState();
  window.addEventListener(UNAUTHENTICATED, needSignIn);
  window.addEventListener('hashchange', route);
  document.getElementById('signout').addEventListener('click', async () => {
    try { await signOut(); } catch { /* the cookie is gone either way once the daemon answers */ }
    needSignIn();
  });
  if (s && s.token_required && !s.signed_in) needSignIn();
  else route();
  showSignOut(!!(s && s.token_required && s.signed_in));
  health();
}

start();
