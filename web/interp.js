// interp.js: a run's interpretation card: the confusion-matrix heat map (a click on a cell
// shows that cell's validation images), the per-class table, the top-losses grid of
// thumbnails served by the daemon by item index, and the augmentation preview of a
// training image under the run's transforms.
import { h, mount, fmtNum, fmtPct } from './util.js';
import { get, BASE, ApiError } from './api.js';

const PAGE = 24;

export function interpCard(rid) {
  const st = { weights: null, data: null, filter: null, token: null, items: [] };
  const summaryEl = h('p', { class: 'muted interp-summary' });
  const heatWrap = h('div', { class: 'table-wrap heatmap-wrap' });
  const classWrap = h('div', { class: 'table-wrap' });
  const lossHead = h('h3', { id: 'toplosses-h' }, 'Top losses');
  const clearButton = h('button', { type: 'button', class: 'small', onclick: () => showLosses(null), hidden: true }, 'All classes');
  const grid = h('div', { class: 'thumbs', 'aria-labelledby': 'toplosses-h', 'data-role': 'top-losses' });
  const more = h('button', { type: 'button', class: 'small', onclick: () => loadLosses(false), hidden: true }, 'More');
  const empty = h('p', { class: 'empty' }, 'No interpretation yet: it is computed after a fit or TTA.');
  const body = h('div', { hidden: true }, summaryEl, heatWrap, classWrap,
    h('div', { class: 'card-head' }, lossHead, clearButton), grid, more);

  const augItem = h('input', { id: 'aug-item', type: 'number', min: 0, value: 0, class: 'narrow' });
  const augSeed = h('input', { id: 'aug-seed', type: 'number', min: 0, value: 0, class: 'narrow' });
  const augImg = h('img', { class: 'aug-strip', alt: 'The training image under the run\u2019s transforms', hidden: true });
  const augNote = h('p', { class: 'muted', 'aria-live': 'polite' });
  const augForm = h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); showAugment(); } },
    h('label', { for: 'aug-item' }, 'Training item'), augItem,
    h('label', { for: 'aug-seed' }, 'Seed'), augSeed,
    h('button', { type: 'submit', class: 'small' }, 'Preview augmentations'));

  const el = h('section', { class: 'card', id: 'interpretation', 'aria-labelledby': 'interp-h' },
    h('div', { class: 'card-head' }, h('h2', { id: 'interp-h' }, 'Interpretation')),
    empty, body,
    h('h3', {}, 'Augmentation preview'), augForm, augNote, augImg);

  function showAugment() {
    const q = `item=${encodeURIComponent(augItem.value || 0)}&n=8&seed=${encodeURIComponent(augSeed.value || 0)}`;
    augNote.textContent = '';
    augImg.hidden = false;
    augImg.onerror = async () => {
      augImg.hidden = true;
      const r = await fetch(`${BASE}/runs/${rid}/augmentations?${q}`).catch(() => null);
      const p = r ? await r.json().catch(() => ({})) : {};
      augNote.textContent = p.detail || 'The preview could not be rendered.';
    };
    augImg.src = `${BASE}/runs/${rid}/augmentations?${q}`;
  }

  // The heat map: cell shade by share of the row (recall per true class), counts shown.
  function drawHeat(s) {
    if (!s.confusion) { mount(heatWrap); return; }
    const names = s.classes;
    const head = h('tr', {}, h('th', { scope: 'col' }, 'actual \\ predicted'), ...names.map((n) => h('th', { scope: 'col' }, n)));
    const rows = s.confusion.map((row, a) => {
      const total = row.reduce((x, y) => x + y, 0) || 1;
      return h('tr', {}, h('th', { scope: 'row' }, names[a]), ...row.map((count, p) => {
        const share = count / total;
        const hue = a === p ? '142, 70%, ' : '0, 75%, ';
        return h('td', { class: 'num heat-cell' },
          h('button', {
            type: 'button', class: 'heat', 'data-actual': a, 'data-predicted': p,
            style: `background: hsl(${hue}${Math.round(97 - share * 50)}%)`,
            title: `${count} of ${names[a]} predicted as ${names[p]}`,
            'aria-label': `${count} images of ${names[a]} predicted as ${names[p]}`,
            onclick: () => showLosses({ actual: a, predicted: p }),
          }, String(count)));
      }));
    });
    mount(heatWrap, h('table', { class: 'table heatmap', 'aria-label': 'Confusion matrix' }, h('thead', {}, head), h('tbody', {}, ...rows)));
  }

  function drawClasses(s) {
    const cols = s.multi_label ? ['class', 'support', 'precision', 'recall', 'f2'] : ['class', 'support', 'precision', 'recall', 'accuracy'];
    const rows = s.per_class.map((c) => h('tr', {}, ...cols.map((k) => k === 'class' ? h('th', { scope: 'row' }, c.class)
      : h('td', { class: 'num' }, k === 'support' ? String(c.support) : fmtNum(c[k], 3)))));
    mount(classWrap, h('table', { class: 'table per-class', 'aria-label': 'Per-class metrics' },
      h('thead', {}, h('tr', {}, ...cols.map((k) => h('th', { scope: 'col', class: k === 'class' ? null : 'num' }, k)))),
      h('tbody', {}, ...rows)));
  }

  function thumb(x) {
    const cap = x.actual_class !== undefined
      ? `${x.actual_class} → ${x.predicted_class} ${fmtPct(x.p_predicted)}` : `loss ${fmtNum(x.loss, 3)}`;
    return h('figure', { class: 'thumb', 'data-item': x.item },
      h('img', { src: x.thumbnail, alt: `validation item ${x.item}`, loading: 'lazy', width: 96, height: 96 }),
      h('figcaption', {}, cap, h('br'), h('small', { class: 'muted' }, `#${x.item} · loss ${fmtNum(x.loss, 3)}`)));
  }

  async function loadLosses(reset) {
    if (reset) { st.token = null; st.items = []; }
    let q = `limit=${PAGE}`;
    if (st.filter) q += `&actual=${st.filter.actual}&predicted=${st.filter.predicted}`;
    if (st.token) q += `&page_token=${encodeURIComponent(st.token)}`;
    const page = await get(`/runs/${rid}/interpretation/top-losses?${q}`);
    st.items.push(...page.items);
    st.token = page.next_page_token || null;
    more.hidden = !st.token;
    mount(grid, st.items.length ? st.items.map((x) => thumb(x)) : h('p', { class: 'empty' }, 'No images in this cell.'));
  }

  function showLosses(filter) {
    st.filter = filter;
    const names = st.data ? st.data.summary.classes : [];
    lossHead.textContent = filter ? `${names[filter.actual]} predicted as ${names[filter.predicted]}` : 'Top losses';
    clearButton.hidden = !filter;
    for (const b of heatWrap.querySelectorAll('button.heat')) {
      const on = filter && Number(b.dataset.actual) === filter.actual && Number(b.dataset.predicted) === filter.predicted;
      b.setAttribute('aria-pressed', on ? 'true' : 'false');
    }
    return loadLosses(true).catch((err) => mount(grid, h('p', { class: 'notice warn' }, err.message)));
  }

  // Fetches the interpretation once a fit, recipe or TTA job has succeeded (before that
  // there is none to ask for); redraws only when the weights it describes changed.
  async function refresh(jobs) {
    const done = (jobs || []).some((j) => ['fit', 'recipe', 'tta'].includes(j.kind) && j.state === 'succeeded');
    if (!done) { empty.hidden = false; body.hidden = true; return; }
    let data;
    try {
      data = await get(`/runs/${rid}/interpretation`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) { empty.hidden = false; body.hidden = true; return; }
      throw err;
    }
    if (data.weights === st.weights) return;
    st.weights = data.weights;
    st.data = data;
    const s = data.summary;
    empty.hidden = true;
    body.hidden = false;
    summaryEl.textContent = `${s.n} validation images, loss ${fmtNum(s.loss)}` +
      (s.multi_label ? `, threshold ${s.threshold}` : `, accuracy ${fmtPct(s.accuracy)}`);
    drawHeat(s);
    drawClasses(s);
    await showLosses(null);
  }

  return { el, refresh };
}
