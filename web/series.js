// series.js: a run's metric series as the training charts need them. The first load asks
// the API for at most VIEW_POINTS points per key (max_points): a short run comes back
// whole, a long one downsampled with its first, last and extreme points kept. New points
// are then appended page by page. A zoom into a downsampled run fetches the zoomed window
// again (exact once it holds no more than VIEW_POINTS points); exports page through every
// point.
import { get } from './api.js';
import { rowsOf, isNum } from './util.js';

export const VIEW_POINTS = 4000;   // per key: about twice the pixels of a wide chart
const PAGE = 50000;                // points per page when paging at full resolution

// Points of the API grouped by key, each list in step order; a point at or before the last
// one held of its key is one already there.
function groupByKey(points, into = new Map()) {
  for (const p of points) {
    if (!isNum(p.step) || !p.key) continue;
    let rows = into.get(p.key);
    if (!rows) into.set(p.key, rows = []);
    if (!rows.length || p.step > rows[rows.length - 1].step) rows.push(p);
  }
  return into;
}

export class RunSeries {
  constructor(rid) {
    this.rid = rid;
    this.series = new Map();   // key -> [{step, key, value, time}]: the whole run
    this.lastStep = null;      // the highest step held (every key of it)
    this.coarse = false;       // series is downsampled
    this.detail = null;        // {min, max, series, coarse}: the zoomed window
    this.zoomSeq = 0;          // drops zoom answers overtaken by a later zoom
  }

  // Every key's pages after step `after` (exclusive), at full resolution, into `into`.
  // Returns the last step read, or `after` when there was nothing new.
  async pages(into, after) {
    for (let i = 0; i < 1000; i++) {
      const from = after !== null ? `&after_step=${after}` : '';
      const resp = await get(`/runs/${this.rid}/metrics?limit=${PAGE}${from}`);
      const pts = rowsOf(resp, ['points']).filter((p) => isNum(p.step) && p.key);
      groupByKey(pts, into);
      if (pts.length) after = pts[pts.length - 1].step;
      const next = resp && resp.next_after_step;
      if (!pts.length || next === null || next === undefined) break;
      after = next;
    }
    return after;
  }

  // The first call reads the overview of every key, in one read of the store; later calls
  // append what is new.
  async load() {
    if (this.lastStep !== null) {
      this.lastStep = await this.pages(this.series, this.lastStep);
      return;
    }
    const resp = await get(`/runs/${this.rid}/metrics?max_points=${VIEW_POINTS}`);
    const pts = rowsOf(resp, ['points']);
    this.series = groupByKey(pts);
    this.coarse = Boolean(resp && resp.downsampled);
    for (const p of pts) if (isNum(p.step) && (this.lastStep === null || p.step > this.lastStep)) this.lastStep = p.step;
  }

  // Follows the charts' x range ({min, max} or null when reset). Resolves true when what
  // view() answers changed.
  async zoom(range) {
    const seq = ++this.zoomSeq;
    if (!this.coarse || !range) {
      const had = this.detail !== null;
      this.detail = null;
      return had;
    }
    const after = Math.max(-1, Math.floor(range.min) - 1);
    const before = Math.max(0, Math.ceil(range.max) + 1);
    const resp = await get(`/runs/${this.rid}/metrics?after_step=${after}&before_step=${before}&max_points=${VIEW_POINTS}`);
    if (seq !== this.zoomSeq) return false;
    this.detail = { min: range.min, max: range.max, series: groupByKey(rowsOf(resp, ['points'])), coarse: Boolean(resp && resp.downsampled) };
    return true;
  }

  // What the charts draw: the zoomed window when there is one, else the whole run.
  view() {
    return this.detail ? this.detail.series : this.series;
  }

  // Every point of the run (exports): the series itself unless it is downsampled.
  async all() {
    if (!this.coarse) return this.series;
    const into = new Map();
    await this.pages(into, null);
    return into;
  }
}
