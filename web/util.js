// util.js: small helpers shared by the dashboard's pages: DOM building, number formatting,
// the debiased exponential average, CSV text and file downloads.

// Builds an element. attrs: plain attributes, plus `on*` functions as listeners, `class`,
// `dataset` (object) and `text` (textContent). Children may be strings, nodes, arrays or null.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// Replaces every child of el with the given children.
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const isNum = (x) => typeof x === 'number' && Number.isFinite(x);

// A loss or metric for a table cell: four significant decimals, a dash when absent.
export function fmtNum(x, digits = 4) {
  if (!isNum(x)) return '—';
  if (Number.isInteger(x) && Math.abs(x) < 1e9) return String(x);
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5)) return x.toExponential(2);
  return x.toFixed(digits);
}

// A learning rate: always in exponent form, as the recipe writes them (1e-2, 3e-4).
export function fmtLr(x) {
  if (!isNum(x)) return '—';
  if (x === 0) return '0';
  const s = x.toExponential(2).replace(/\.?0+e/, 'e').replace('e+', 'e');
  return s;
}

export function fmtPct(x) {
  return isNum(x) ? (100 * x).toFixed(2) + '%' : '—';
}

export function fmtDuration(s) {
  if (!isNum(s) || s < 0) return '';
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

// Timestamps arrive as Unix seconds (the store's REAL columns) or ISO strings.
export function toMs(t) {
  if (typeof t === 'number') return t * 1000;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? 0 : ms;
}

// A timestamp as local date and time.
export function fmtTime(t) {
  if (t === null || t === undefined || t === '') return '—';
  const ms = toMs(t);
  if (!ms) return String(t);
  const d = new Date(ms);
  return d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

// The debiased exponential moving average of fastai's LR finder and training loop:
// avg = beta*avg + (1-beta)*x, reported as avg / (1 - beta^(i+1)). Non-finite inputs are
// skipped (their slot gets null) so that one diverged batch does not poison the curve.
export function debiasedEma(values, beta) {
  const out = new Array(values.length);
  let avg = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (!isNum(x)) { out[i] = null; continue; }
    n++;
    avg = beta * avg + (1 - beta) * x;
    out[i] = beta === 0 ? x : avg / (1 - Math.pow(beta, n));
  }
  return out;
}

// CSV text with a header row; numbers are written with full precision (String(x)), so
// that an export round-trips to the same numbers the API returned.
export function toCsv(columns, rows) {
  const cell = (v) => {
    if (v === null || v === undefined) return '';
    const s = typeof v === 'object' ? JSON.stringify(v) : String(v);
    return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  };
  const lines = [columns.map(cell).join(',')];
  for (const r of rows) lines.push(columns.map((c) => cell(r[c])).join(','));
  return lines.join('\n') + '\n';
}

// Offers text as a file download through a temporary object URL.
export function download(filename, text, mime) {
  const url = URL.createObjectURL(new Blob([text], { type: mime }));
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Calls fn at most once per `ms`, always running the latest call last (trailing edge).
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return function throttled() {
    if (timer) return;
    const wait = Math.max(0, last + ms - performance.now());
    timer = setTimeout(() => {
      timer = null;
      last = performance.now();
      fn();
    }, wait);
  };
}

// The first array in an API answer: the array itself, or the first array-valued member of
// an envelope object ({"runs": [...], "next_page_token": ...}).
export function rowsOf(resp, preferred = []) {
  if (Array.isArray(resp)) return resp;
  if (resp && typeof resp === 'object') {
    for (const k of [...preferred, 'items', 'data', 'rows', 'points', 'results']) {
      if (Array.isArray(resp[k])) return resp[k];
    }
    for (const v of Object.values(resp)) if (Array.isArray(v)) return v;
  }
  return [];
}

// The first defined member among several candidate names (for API fields whose exact name
// is spelled differently by different endpoints).
export function pick(obj, ...names) {
  if (!obj) return undefined;
  for (const n of names) if (obj[n] !== undefined && obj[n] !== null) return obj[n];
  return undefined;
}
