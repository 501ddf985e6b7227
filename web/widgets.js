// widgets.js: small pieces shared by pages: state badges, a job's progress bar, error boxes.
import { h, fmtDuration, pick, isNum } from './util.js';
import { ApiError } from './api.js';

export function stateBadge(state) {
  const s = state || 'idle';
  return h('span', { class: `badge state-${s}` }, s);
}

// A job's progress bar with its percentage and ETA, or its state when not running.
export function jobProgress(job) {
  if (!job) return h('span', { class: 'muted' }, '—');
  const frac = pick(job, 'progress', 'fraction');
  const eta = pick(job, 'eta_s', 'eta');
  const kind = pick(job, 'kind', 'type', 'op') || 'job';
  const running = job.state === 'running';
  return h('div', { class: 'jobcell' },
    h('span', { class: 'jobkind' }, kind, ' ', stateBadge(job.state)),
    running && isNum(frac)
      ? h('div', { class: 'progress' },
        h('progress', { max: 1, value: frac, 'aria-label': `${kind} progress` }),
        h('span', { class: 'muted' }, `${Math.round(frac * 100)}%`, isNum(eta) && eta >= 0 ? ` · ${fmtDuration(eta)} left` : ''))
      : null);
}

export function errorBox(err) {
  const p = err instanceof ApiError ? err.problem : { title: 'Error', detail: String(err) };
  return h('div', { class: 'notice error', role: 'alert' }, h('strong', {}, p.title || 'Error'), ': ', p.detail || '');
}

