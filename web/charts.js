// charts.js: the dashboard's uPlot charts: the LR-finder chart (loss against a log10
// learning-rate axis, one curve per sweep, suggestion markers) and the linked pair of
// training charts (loss per iteration over LR per layer group, epoch and cycle marks).
/* global uPlot */
import { h, fmtLr, fmtNum, isNum } from './util.js';

export const PALETTE = ['#2563eb', '#d97706', '#059669', '#db2777', '#7c3aed', '#0891b2'];
const MARK_COLORS = { min_div10: '#7c3aed', steep: '#dc2626', valley: '#059669', slide: '#d97706' };

function faint(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const AXIS = { stroke: '#475569', font: FONT, labelFont: FONT, grid: { stroke: '#e2e8f0', width: 1 }, ticks: { stroke: '#cbd5e1', width: 1 } };

// Linear-axis tick labels with as many decimals as the tick spacing needs.
function linearTicks(u, splits) {
  const step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : 1;
  const d = Math.min(6, Math.max(0, -Math.floor(Math.log10(step || 1))));
  return splits.map((v) => (v === null || v === undefined ? '' : v.toFixed(d)));
}

function isPow10(v) {
  if (!(v > 0)) return false;
  const e = Math.log10(v);
  return Math.abs(e - Math.round(e)) < 1e-9;
}

// Iterations are whole numbers: ticks never fall between two.
const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

// Log-axis labels at 1, 2 and 5 times a power of ten; other ticks unlabelled.
function log125Ticks(u, splits) {
  return splits.map((v) => {
    if (!(v > 0)) return '';
    const m = v / Math.pow(10, Math.floor(Math.log10(v) + 1e-9));
    return [1, 2, 5].some((k) => Math.abs(m - k) < 1e-6) ? String(Number(v.toPrecision(3))) : '';
  });
}

// Grid lines only at whole decades on a log axis (ticks still mark 2x, 3x, ...).
function pow10Only(u, splits) {
  return splits.map((v) => (isPow10(v) ? v : null));
}

// Keeps a chart as wide as its container; returns a function that stops watching.
function fitWidth(u, el, height) {
  const ro = new ResizeObserver(() => {
    const w = Math.max(240, Math.floor(el.clientWidth));
    if (Math.abs(w - u.width) > 1) u.setSize({ width: w, height: typeof height === 'function' ? height() : height });
  });
  ro.observe(el);
  return () => ro.disconnect();
}

function widthOf(el) {
  return Math.max(240, Math.floor(el.clientWidth || 640));
}

// Vertical markers drawn over the plot. getMarkers(u) returns
// [{x, label, title, color, width, dash, row}]; a marker with a title shows it in a tooltip
// when the cursor is within 6 px of its line.
function markersPlugin(getMarkers) {
  let tip = null;
  return {
    hooks: {
      init: (u) => {
        tip = h('div', { class: 'chart-tip', role: 'tooltip', hidden: true });
        u.over.append(tip);
      },
      draw: (u) => {
        const { ctx, bbox } = u;
        const r = uPlot.pxRatio;
        ctx.save();
        const rowEnd = [];  // right edge of the last label drawn in each row: labels never overlap
        for (const m of getMarkers(u)) {
          if (!isNum(m.x)) continue;
          const x = Math.round(u.valToPos(m.x, 'x', true));
          if (x < bbox.left - 1 || x > bbox.left + bbox.width + 1) continue;
          ctx.strokeStyle = m.color;
          ctx.lineWidth = (m.width || 1) * r;
          ctx.setLineDash((m.dash || []).map((d) => d * r));
          ctx.beginPath();
          ctx.moveTo(x, bbox.top);
          ctx.lineTo(x, bbox.top + bbox.height);
          ctx.stroke();
          if (m.label) {
            ctx.setLineDash([]);
            ctx.font = `600 ${11 * r}px system-ui, sans-serif`;
            ctx.textAlign = 'left';
            ctx.textBaseline = 'alphabetic';
            const tw = ctx.measureText(m.label).width;
            const right = x + 4 * r + tw > bbox.left + bbox.width;
            const tx = right ? x - 4 * r - tw : x + 4 * r;
            const row = m.row || 0;
            const ty = bbox.top + (13 + 14 * row) * r;
            if (rowEnd[row] !== undefined && tx - 2 * r < rowEnd[row]) continue;
            rowEnd[row] = tx + tw + 4 * r;
            ctx.fillStyle = 'rgba(255,255,255,0.85)';
            ctx.fillRect(tx - 2 * r, ty - 11 * r, tw + 4 * r, 14 * r);
            ctx.fillStyle = m.color;
            ctx.fillText(m.label, tx, ty);
          }
        }
        ctx.restore();
      },
      setCursor: (u) => {
        const left = u.cursor.left;
        if (left === null || left === undefined || left < 0) { tip.hidden = true; return; }
        let best = null;
        let bestD = 6;
        for (const m of getMarkers(u)) {
          if (!m.title || !isNum(m.x)) continue;
          const d = Math.abs(u.valToPos(m.x, 'x') - left);
          if (d <= bestD) { bestD = d; best = m; }
        }
        if (!best) { tip.hidden = true; return; }
        tip.textContent = best.title;
        tip.hidden = false;
        const x = u.valToPos(best.x, 'x');
        const flip = x > u.over.clientWidth / 2;
        tip.style.left = flip ? '' : `${x + 10}px`;
        tip.style.right = flip ? `${u.over.clientWidth - x + 10}px` : '';
        tip.style.top = `${Math.max(0, (u.cursor.top || 0) - 10)}px`;
      },
    },
  };
}

// Keeps the y range on the interesting part of a sweep, as fastai's plot does by skipping
// the last points: from the lowest loss up to four times the lowest smoothed loss (where the
// sweep's stop rule fires) or the smoothed loss at the start, whichever is higher.
function lrFindRange(u) {
  let lo = Infinity;
  let minSmooth = Infinity;
  let firstSmooth = -Infinity;
  let hiRaw = -Infinity;
  for (let s = 1; s < u.series.length; s++) {
    const smooth = u.series[s].kind === 'smooth';
    let first = true;
    for (const v of u.data[s]) {
      if (!isNum(v)) continue;
      if (v < lo) lo = v;
      if (smooth) {
        if (first) { firstSmooth = Math.max(firstSmooth, v); first = false; }
        if (v < minSmooth) minSmooth = v;
      } else if (v > hiRaw) hiRaw = v;
    }
  }
  if (!isNum(lo)) return [0, 1];
  let hi = isNum(minSmooth) ? Math.max(4 * minSmooth, 1.25 * firstSmooth) : hiRaw;
  if (isNum(hiRaw)) hi = Math.min(hi, hiRaw);
  if (!isNum(hi) || hi <= lo) hi = lo + 1;
  const pad = (hi - lo) * 0.05;
  return [Math.max(0, lo - pad), hi + pad];
}

// The LR-finder chart. update(sweeps) draws sweeps = [{id, label, points, suggestions}]
// (points as the API gives them: {iter, lr, loss, smooth_loss}); markers are drawn for the
// suggestions of the sweep flagged `primary`.
export class LrFindChart {
  constructor(el) {
    this.el = el;
    this.u = null;
    this.sig = '';
    this.markers = [];
    this.bounds = [];
    this.stopFit = null;
  }

  update(sweeps) {
    const sig = sweeps.map((s) => s.id).join(',');
    const tables = sweeps.map((s) => {
      const pts = s.points.filter((p) => isNum(p.lr) && p.lr > 0).slice().sort((a, b) => a.lr - b.lr);
      return [pts.map((p) => p.lr), pts.map((p) => (isNum(p.loss) ? p.loss : null)), pts.map((p) => (isNum(p.smooth_loss) ? p.smooth_loss : null))];
    });
    const data = tables.length ? uPlot.join(tables) : [[], [], []];
    const primary = sweeps.find((s) => s.primary) || sweeps[sweeps.length - 1];
    // The requested LR span: a sweep still running grows across a fixed axis.
    this.bounds = sweeps.flatMap((s) => [s.start_lr, s.end_lr]).filter(isNum);
    this.markers = [];
    if (primary && primary.suggestions) {
      let row = 0;
      for (const [name, sug] of Object.entries(primary.suggestions)) {
        const lr = typeof sug === 'number' ? sug : sug && sug.lr;
        if (!isNum(lr)) continue;
        const reason = (sug && sug.reason) || '';
        this.markers.push({
          x: lr, label: `${name} ${fmtLr(lr)}`, title: `${name} = ${fmtLr(lr)}${reason ? ': ' + reason : ''}`,
          color: MARK_COLORS[name] || '#334155', width: 1.5, dash: [5, 4], row: row++,
        });
      }
    }
    if (!this.u || sig !== this.sig || tables.length === 0) {
      this.destroy();
      this.sig = sig;
      const series = [{ label: 'LR', value: (u, v) => fmtLr(v) }];
      sweeps.forEach((s, i) => {
        const c = PALETTE[i % PALETTE.length];
        series.push({ label: `${s.label} raw`, kind: 'raw', stroke: faint(c, 0.35), width: 1, spanGaps: true, points: { show: false }, value: (u, v) => fmtNum(v) });
        series.push({ label: `${s.label} smoothed`, kind: 'smooth', stroke: c, width: 2.25, spanGaps: true, points: { show: false }, value: (u, v) => fmtNum(v) });
      });
      if (sweeps.length === 0) {
        series.push({ label: 'loss', kind: 'raw', stroke: '#94a3b8' }, { label: 'smoothed', kind: 'smooth', stroke: '#2563eb' });
      }
      const opts = {
        width: widthOf(this.el),
        height: 320,
        scales: {
          // Wide enough for every suggestion too: min_div10 may lie below the sweep's start.
          x: {
            time: false, distr: 3, log: 10,
            range: (u, min, max) => {
              const xs = this.markers.map((m) => m.x).concat(this.bounds).filter((v) => v > 0);
              const lo = Math.min(min, ...xs);
              const hi = Math.max(max, ...xs);
              return lo > 0 && hi > lo ? uPlot.rangeLog(lo, hi, 10, true) : [min, max];
            },
          },
          y: { range: (u) => lrFindRange(u) },
        },
        axes: [
          {
            ...AXIS, label: 'learning rate (log10 scale)', values: (u, splits) => splits.map((v) => (isPow10(v) ? fmtLr(v) : '')),
            grid: { ...AXIS.grid, filter: pow10Only }, ticks: { ...AXIS.ticks, size: 6 },
          },
          { ...AXIS, label: 'loss', size: 56, values: linearTicks },
        ],
        series,
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
        plugins: [markersPlugin(() => this.markers)],
      };
      this.u = new uPlot(opts, data, this.el);
      this.stopFit = fitWidth(this.u, this.el, 320);
    } else {
      this.u.setData(data);
    }
  }

  destroy() {
    if (this.stopFit) this.stopFit();
    if (this.u) this.u.destroy();
    this.u = null;
    this.stopFit = null;
  }
}

// The training charts: loss per iteration on top (raw faint, smoothed bold, validation loss
// per epoch as points), the LR of every layer group below, on a linked x axis (shared
// cursor; zooming one zooms the other; double-click resets both).
export class TrainingCharts {
  constructor(lossEl, lrEl, syncKey) {
    this.lossEl = lossEl;
    this.lrEl = lrEl;
    this.syncKey = syncKey;
    this.loss = null;
    this.lr = null;
    this.nGroups = -1;
    this.lrLog = false;
    this.lossLog = false;
    this.lossLogAuto = true;   // follows the data until the user sets the checkbox
    this.marks = [];
    this.zoomed = false;
    this.syncing = false;
    this.stops = [];
    this.onZoom = null;        // (range {min, max} | null) after the user zooms or resets
    this.zoomTimer = null;
  }

  // Tells onZoom the x range the user settled on (drags and resets come in bursts).
  zoomChanged(range) {
    if (!this.onZoom) return;
    clearTimeout(this.zoomTimer);
    this.zoomTimer = setTimeout(() => this.onZoom(range), 120);
  }

  baseOpts(height) {
    return {
      height,
      scales: { x: { time: false } },
      legend: { live: true },
      cursor: { sync: { key: this.syncKey, setSeries: false }, drag: { x: true, y: false } },
      hooks: {
        setSelect: [(u) => { if (u.select.width > 0) this.zoomed = true; }],
        setScale: [(u, key) => this.propagate(u, key)],
      },
      plugins: [markersPlugin(() => this.marks)],
    };
  }

  propagate(u, key) {
    if (key !== 'x' || this.syncing) return;
    const other = u === this.loss ? this.lr : this.loss;
    if (!other) return;
    const { min, max } = u.scales.x;
    if (!isNum(min) || !isNum(max)) return;
    if (this.zoomed) this.zoomChanged({ min, max });
    if (other.scales.x.min === min && other.scales.x.max === max) return;
    this.syncing = true;
    other.setScale('x', { min, max });
    this.syncing = false;
  }

  build(nGroups) {
    this.destroy();
    this.nGroups = nGroups;
    const lossOpts = this.baseOpts(280);
    lossOpts.width = widthOf(this.lossEl);
    lossOpts.scales.y = this.lossLog ? { distr: 3, log: 10 } : {};
    lossOpts.axes = [
      { ...AXIS, label: 'iteration', incrs: STEP_INCRS },
      this.lossLog
        ? { ...AXIS, label: 'loss (log scale)', size: 56, values: log125Ticks, grid: { ...AXIS.grid, filter: pow10Only } }
        : { ...AXIS, label: 'loss', size: 56, values: linearTicks },
    ];
    lossOpts.series = [
      { label: 'iteration' },
      { label: 'train loss', stroke: faint(PALETTE[0], 0.3), width: 1, points: { show: false }, value: (u, v) => fmtNum(v) },
      { label: 'smoothed', stroke: PALETTE[0], width: 2.25, points: { show: false }, value: (u, v) => fmtNum(v) },
      { label: 'valid loss', stroke: PALETTE[1], width: 1.5, spanGaps: true, points: { show: true, size: 8, fill: PALETTE[1] }, value: (u, v) => fmtNum(v) },
    ];
    const lrOpts = this.baseOpts(200);
    lrOpts.width = widthOf(this.lrEl);
    lrOpts.scales.y = this.lrLog ? { distr: 3, log: 10 } : {};
    lrOpts.axes = [
      { ...AXIS, label: 'iteration', incrs: STEP_INCRS },
      {
        ...AXIS, label: 'learning rate', size: 64, values: (u, s) => s.map((v) => (this.lrLog && !isPow10(v) ? '' : fmtLr(v))),
        grid: { ...AXIS.grid, filter: (u, s) => (this.lrLog ? pow10Only(u, s) : s) },
      },
    ];
    lrOpts.series = [{ label: 'iteration' }];
    const greens = ['#0891b2', '#7c3aed', '#e11d48', '#ca8a04'];
    for (let g = 0; g < nGroups; g++) {
      lrOpts.series.push({ label: `LR group ${g}`, stroke: greens[g % greens.length], width: 1.75, points: { show: false }, value: (u, v) => fmtLr(v) });
    }
    this.loss = new uPlot(lossOpts, this.emptyData(3), this.lossEl);
    this.lr = new uPlot(lrOpts, this.emptyData(nGroups), this.lrEl);
    for (const u of [this.loss, this.lr]) {
      u.over.addEventListener('dblclick', () => { this.zoomed = false; this.zoomChanged(null); });
    }
    this.stops.push(fitWidth(this.loss, this.lossEl, 280), fitWidth(this.lr, this.lrEl, 200));
  }

  emptyData(n) {
    return [[], ...Array.from({ length: n }, () => [])];
  }

  setLrLog(on) {
    this.lrLog = on;
    this.nGroups = -1;
  }

  setLossLog(on) {
    this.lossLog = on;
    this.lossLogAuto = false;
    this.nGroups = -1;
  }

  // d: {steps, raw, smooth, validSteps, valid, lr: [{steps, values}], epochMarks, cycleMarks};
  // smoothSteps when smooth has steps of its own (a downsampled run draws the API's
  // smooth_loss: an average of downsampled points would not be one of the run).
  update(d) {
    if (this.lossLogAuto && d.steps.length) {
      // A loss range over 8x (an early diverged batch, a wild validation loss) reads
      // better on a log axis; once the user sets the checkbox, it decides.
      let lo = Infinity;
      let hi = 0;
      for (const v of d.smooth.concat(d.valid)) if (v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      const want = hi / lo > 8;
      if (want !== this.lossLog) {
        this.lossLog = want;
        this.nGroups = -1;
        if (this.onAutoLog) this.onAutoLog(want);
      }
    }
    const nGroups = Math.max(1, d.lr.length);
    if (!this.loss || nGroups !== this.nGroups) this.build(nGroups);
    this.marks = [
      ...d.epochMarks.map((x) => ({ x, color: '#94a3b8', width: 1, dash: [2, 3], title: `end of epoch at iteration ${x}` })),
      ...d.cycleMarks.map((m) => ({ x: m.step, color: '#64748b', width: 1.25, label: m.label, title: `${m.label} ends at iteration ${m.step}` })),
    ];
    const pos = (v) => (this.lossLog && !(v > 0) ? null : v);
    const lossData = d.smoothSteps
      ? uPlot.join([[d.steps, d.raw.map(pos)], [d.smoothSteps, d.smooth.map(pos)], [d.validSteps, d.valid.map(pos)]])
      : uPlot.join([[d.steps, d.raw.map(pos), d.smooth.map(pos)], [d.validSteps, d.valid.map(pos)]]);
    const lrTables = d.lr.length ? d.lr.map((g) => [g.steps, g.values.map((v) => (this.lrLog && !(v > 0) ? null : v))]) : [[[], []]];
    const lrData = lrTables.length === 1 ? lrTables[0] : uPlot.join(lrTables);
    this.syncing = true;
    this.loss.setData(lossData, !this.zoomed);
    this.lr.setData(lrData, !this.zoomed);
    this.syncing = false;
    if (!this.zoomed) {
      const xs = [lossData[0], lrData[0]].filter((a) => a.length);
      if (xs.length) {
        const min = Math.min(...xs.map((a) => a[0]));
        const max = Math.max(...xs.map((a) => a[a.length - 1]));
        if (max > min) {
          this.syncing = true;
          this.loss.setScale('x', { min, max });
          this.lr.setScale('x', { min, max });
          this.syncing = false;
        }
      }
    }
  }

  destroy() {
    clearTimeout(this.zoomTimer);
    for (const s of this.stops) s();
    this.stops = [];
    if (this.loss) this.loss.destroy();
    if (this.lr) this.lr.destroy();
    this.loss = null;
    this.lr = null;
  }
}
