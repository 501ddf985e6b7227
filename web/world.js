// world.js: the run page's panel of a data-parallel job (workers > 1): its world as
// GET /health reports it (world.running, refreshed by the daemon every epoch): the hosts,
// each rank's host, pid and img/s, and the time its gradient sums take per step, with
// the share of a step that is and the part backward does not hide.
import { h, mount, fmtNum, isNum, pick } from './util.js';
import { get } from './api.js';

const REFRESH_MS = 2000;   // at most one /health read this often while a world runs

// The panel's element and update(job, bs): shows the world of job (the run's running job)
// when the daemon reports it, else hides itself. bs: the run's global batch.
export function worldPanel() {
  const el = h('div', { class: 'world', id: 'world', hidden: true, 'aria-live': 'polite' });
  let last = 0;
  let pending = false;

  async function update(job, bs) {
    const workers = Number(pick((job && job.params) || {}, 'workers'));
    if (!job || job.state !== 'running' || !(workers > 1)) {
      el.hidden = true;
      return;
    }
    if (pending || Date.now() - last < REFRESH_MS) return;
    pending = true;
    try {
      const w = pick(await get('/health'), 'world') || {};
      const run = w.running;
      last = Date.now();
      if (!run || Number(run.job) !== Number(job.id)) {
        el.hidden = false;
        mount(el, h('p', { class: 'muted' }, `Starting a world of ${workers} workers…`));
        return;
      }
      el.hidden = false;
      mount(el, draw(run, bs));
    } catch {
      // The run page's own refresh reports an unreachable daemon.
    } finally {
      pending = false;
    }
  }

  return { el, update };
}

function ms(s) {
  return isNum(s) ? `${fmtNum(s * 1000, 1)} ms` : '—';
}

function draw(run, bs) {
  const ranks = Array.isArray(run.ranks) ? run.ranks : [];
  const hosts = [...new Set(ranks.map((r) => r.host))];
  const size = Number(run.size) || ranks.length;
  const rows = ranks.map((r) => {
    // A rank's step: its shard (bs / size images) at its own rate.
    const step = isNum(bs) && isNum(r.img_per_s) && r.img_per_s > 0 ? bs / size / r.img_per_s : null;
    const share = step && isNum(r.allreduce_s_per_step) ? r.allreduce_s_per_step / step : null;
    return h('tr', { 'data-rank': r.rank },
      h('td', {}, String(r.rank)), h('td', {}, r.host ?? '—'), h('td', { class: 'num' }, String(r.pid ?? '—')),
      h('td', { class: 'num' }, isNum(r.img_per_s) && r.img_per_s > 0 ? fmtNum(r.img_per_s, 1) : '—'),
      h('td', { class: 'num' }, ms(r.allreduce_s_per_step)),
      h('td', { class: 'num' }, share === null ? '—' : `${Math.round(share * 100)}%`),
      h('td', { class: 'num' }, ms(r.wait_s_per_step)));
  });
  const mb = isNum(run.allreduce_bytes) && isNum(run.steps) && run.steps > 0 ? run.allreduce_bytes / run.steps / 1e6 : null;
  return [
    h('p', { class: 'world-head' },
      h('strong', {}, `World of ${size} rank${size === 1 ? '' : 's'}`),
      ` on ${hosts.length} host${hosts.length === 1 ? '' : 's'} (${hosts.join(', ')})`,
      mb === null ? '' : ` · ${fmtNum(mb, 2)} MB of gradients summed per step`),
    h('div', { class: 'table-wrap' },
      h('table', { class: 'table world-ranks' },
        h('thead', {}, h('tr', {},
          ['Rank', 'Host', 'PID', 'img/s', 'Allreduce per step', 'Share of step', 'Not hidden by backward']
            .map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))),
  ];
}
