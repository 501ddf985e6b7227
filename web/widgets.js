// widgets.js: small pieces shared by pages: state badges, a job's progress bar, error boxes.
import { h, fmtDuration, pick, isNum } from './util.js';
import { ApiError } from './api.js';

export function stateBadge(state) {
  const s = state || 'idle';
  return h('span', { class: `badge state-${s}` }, s);
}

// A job's progress bar with its percentage and ETA, or its state when not running.
export function jobProgress(job, withKind = true) {
  if (!job) return h('span', { class: 'muted' }, '—');
  const frac = pick(job, 'progress', 'fraction');
  const eta = pick(job, 'eta_s', 'eta');
  const kind = pick(job, 'kind', 'type', 'op') || 'job';
  const running = job.state === 'running';
  return h('div', { class: 'jobcell' },
    withKind ? h('span', { class: 'jobkind' }, kind, ' ', stateBadge(job.state)) : null,
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


// A run record, normalised: the API keeps the creation settings in `config` and the
// learner's live state (freeze_to, n_groups, precompute, sz, step) in `state`.
export function runView(r) {
  const cfg = (r && typeof r.config === 'object' && r.config) || {};
  const ls = (r && typeof r.state === 'object' && r.state) || {};
  const job = pick(r, 'current_job');
  const best = (r && (r.best || r.best_metrics)) || {};
  return {
    id: r.id,
    name: pick(r, 'name') ?? pick(cfg, 'name') ?? null,
    dataset: pick(r, 'dataset_id', 'dataset'),
    model: pick(r, 'model'),
    arch: pick(r, 'arch') ?? cfg.arch,
    sz: pick(ls, 'sz') ?? pick(cfg, 'sz'),
    bs: pick(ls, 'bs') ?? pick(cfg, 'bs'),
    freezeTo: pick(ls, 'freeze_to', 'frozen_to'),
    nGroups: pick(ls, 'n_groups'),
    precompute: pick(ls, 'precompute') ?? pick(cfg, 'precompute'),
    multiLabel: !!pick(cfg, 'multi_label'),
    step: pick(ls, 'step'),
    best,
    currentJob: job && typeof job === 'object' ? job : null,
    status: typeof r.state === 'string' ? r.state : job && typeof job === 'object' ? job.state : 'idle',
    createdAt: r.created_at,
  };
}
