// overlay.js: one uPlot chart holding the curves of several runs on a shared x axis (the
// compare page): one colour per run, a line per curve, optional points (per-epoch values).
// Charts of one page share the cursor through a sync key.
/* global uPlot */
import { isNum } from './util.js';

const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const AXIS = { stroke: '#475569', font: FONT, labelFont: FONT, grid: { stroke: '#e2e8f0', width: 1 }, ticks: { stroke: '#cbd5e1', width: 1 } };

// Whole x values: iterations never get ticks between two.
const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

function linearTicks(u, splits) {
  const step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : 1;
  const d = Math.min(6, Math.max(0, -Math.floor(Math.log10(step || 1))));
  return splits.map((v) => (v === null || v === undefined ? '' : v.toFixed(d)));
}

// Log-axis labels at 1, 2 and 5 times a power of ten; other ticks unlabelled.
function logTicks(u, splits) {
  return splits.map((v) => {
    if (!(v > 0)) return '';
    const m = v / Math.pow(10, Math.floor(Math.log10(v) + 1e-9));
    return [1, 2, 5].some((k) => Math.abs(m - k) < 1e-6) ? String(Number(v.toPrecision(3))) : '';
  });
}

// Grid lines only at whole decades on a log axis.
function decadesOnly(u, splits) {
  return splits.map((v) => {
    const e = Math.log10(v);
    return v > 0 && Math.abs(e - Math.round(e)) < 1e-9 ? v : null;
  });
}

// One curve's [xs, ys] with x strictly increasing (uPlot.join needs it) and y finite or null.
function table(c) {
  const xs = [];
  const ys = [];
  for (let i = 0; i < c.x.length; i++) {
    const x = c.x[i];
    if (!isNum(x) || (xs.length && x <= xs[xs.length - 1])) continue;
    xs.push(x);
    ys.push(isNum(c.y[i]) && (!c.positive || c.y[i] > 0) ? c.y[i] : null);
  }
  return [xs, ys];
}

function widthOf(el) {
  return Math.max(240, Math.floor(el.clientWidth || 640));
}

// opts: {yLabel, yFmt (value -> text), height, syncKey, logY}.
export class OverlayChart {
  constructor(el, opts) {
    this.el = el;
    this.opts = opts;
    this.u = null;
    this.curves = [];
    this.ro = null;
  }

  // curves: [{label, run, color, x, y, points (bool), dash (array)}]; axis: {label, whole
  // (x values are whole numbers), fmt (x -> legend text), ticks (splits -> labels)}. Rebuilds the chart: the compare page
  // draws once per x-axis choice and when a run it follows grows, so nothing is gained by
  // updating in place. A range the user zoomed into on the same axis is kept.
  update(curves, axis) {
    const was = this.u;
    const zoom = was && this.span && this.axisLabel === axis.label
      && (was.scales.x.min > this.span[0] || was.scales.x.max < this.span[1]) ? { min: was.scales.x.min, max: was.scales.x.max } : null;
    this.destroy();
    this.curves = curves;
    const tables = curves.map((c) => table({ ...c, positive: this.opts.logY }));
    const data = tables.length ? uPlot.join(tables) : [[]];
    const yFmt = this.opts.yFmt;
    const series = [{ label: axis.label, value: (u, v) => (isNum(v) ? axis.fmt(v) : '—') }];
    for (const c of curves) {
      series.push({
        label: c.label, stroke: c.color, width: c.points ? 1.5 : 2, dash: c.dash, spanGaps: true,
        points: c.points ? { show: true, size: 7, fill: c.color } : { show: false },
        value: (u, v) => (isNum(v) ? yFmt(v) : '—'),
      });
    }
    const height = this.opts.height || 240;
    const opts = {
      width: widthOf(this.el),
      height,
      scales: { x: { time: false }, y: this.opts.logY ? { distr: 3, log: 10 } : {} },
      axes: [
        { ...AXIS, label: axis.label, values: (u, s) => (axis.ticks ? axis.ticks(s) : s.map((v) => (isNum(v) ? axis.fmt(v) : ''))), ...(axis.whole ? { incrs: STEP_INCRS } : {}) },
        this.opts.logY
          ? { ...AXIS, label: this.opts.yLabel, size: 64, values: logTicks, grid: { ...AXIS.grid, filter: decadesOnly } }
          : { ...AXIS, label: this.opts.yLabel, size: 64, values: this.opts.yTicks || linearTicks },
      ],
      series,
      legend: { live: true },
      cursor: { sync: { key: this.opts.syncKey, setSeries: false }, drag: { x: true, y: false } },
    };
    this.u = new uPlot(opts, data, this.el);
    const xs = data[0];
    this.span = xs.length ? [xs[0], xs[xs.length - 1]] : null;
    this.axisLabel = axis.label;
    if (zoom) this.u.setScale('x', zoom);
    this.ro = new ResizeObserver(() => {
      const w = widthOf(this.el);
      if (this.u && Math.abs(w - this.u.width) > 1) this.u.setSize({ width: w, height });
    });
    this.ro.observe(this.el);
  }

  destroy() {
    if (this.ro) this.ro.disconnect();
    if (this.u) this.u.destroy();
    this.ro = null;
    this.u = null;
  }
}
