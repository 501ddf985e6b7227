// forms.js: small labelled form controls, turning a form into an API body, and showing
// the API's refusal (problem+json detail, the offending field highlighted and focused).
import { h } from './util.js';
import { ApiError } from './api.js';

let uid = 0;

// A labelled input. opts: {name, label, type ('number', 'text', 'checkbox', 'select', 'file'),
// value, placeholder, hint, options: [[value, text]], required, accept}.
export function field(opts) {
  const id = `f${++uid}-${opts.name.replace(/\W/g, '_')}`;
  const hintId = opts.hint ? `${id}-hint` : null;
  let input;
  if (opts.type === 'select') {
    input = h('select', { id, name: opts.name, 'aria-describedby': hintId },
      (opts.options || []).map(([v, t]) => h('option', { value: v, selected: String(v) === String(opts.value) }, t)));
  } else if (opts.type === 'checkbox') {
    input = h('input', { id, name: opts.name, type: 'checkbox', checked: !!opts.value, 'aria-describedby': hintId });
    return h('div', { class: 'field field-check' }, input, h('label', { for: id }, opts.label),
      opts.hint ? h('small', { id: hintId, class: 'hint' }, opts.hint) : null);
  } else {
    input = h('input', {
      id, name: opts.name, type: opts.type === 'number' ? 'text' : (opts.type || 'text'),
      inputmode: opts.type === 'number' ? 'decimal' : null, value: opts.value ?? '',
      placeholder: opts.placeholder, required: opts.required, accept: opts.accept,
      autocomplete: 'off', spellcheck: 'false', 'aria-describedby': hintId,
    });
  }
  return h('div', { class: 'field' }, h('label', { for: id }, opts.label), input,
    opts.hint ? h('small', { id: hintId, class: 'hint' }, opts.hint) : null);
}

// Parses a number field. An empty value is `undefined` (left out of the body); text that is
// not a number is sent as typed so that the API, not the page, says what is wrong with it.
export function num(v) {
  const s = String(v ?? '').trim();
  if (s === '') return undefined;
  const x = Number(s);
  return Number.isFinite(x) ? x : s;
}

// "1e-3" -> 0.001; "1e-4, 1e-3, 1e-2" -> [0.0001, 0.001, 0.01] (one LR per layer group).
export function lrs(v) {
  const s = String(v ?? '').trim();
  if (s === '') return undefined;
  const parts = s.split(/[\s,;]+/).filter(Boolean);
  if (parts.length === 1) return num(parts[0]);
  return parts.map(num);
}

// Sets body[a][b] for a dotted name "a.b".
export function setPath(body, name, value) {
  if (value === undefined) return;
  const keys = name.split('.');
  let o = body;
  for (const k of keys.slice(0, -1)) o = o[k] ??= {};
  o[keys[keys.length - 1]] = value;
}

// The status line under a form: role=status for success, role=alert for a refusal.
export function statusLine() {
  return h('p', { class: 'form-status', 'aria-live': 'polite' });
}

export function clearProblem(form) {
  const line = form.querySelector('.form-status');
  if (line) { line.textContent = ''; line.className = 'form-status'; line.removeAttribute('role'); }
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

export function showOk(form, text) {
  const line = form.querySelector('.form-status');
  line.className = 'form-status ok';
  line.setAttribute('role', 'status');
  line.textContent = text;
}

// Shows the API's refusal on the form: "detail" in the status line (with the field name), the
// input named by `field` marked invalid and focused.
export function showProblem(form, err) {
  const line = form.querySelector('.form-status');
  const p = err instanceof ApiError ? err.problem : { title: 'Error', detail: String(err && err.message || err) };
  line.className = 'form-status error';
  line.setAttribute('role', 'alert');
  line.replaceChildren(
    h('strong', {}, p.title || 'Refused'),
    p.status || (err && err.status) ? ` (${p.status || err.status})` : '',
    ': ',
    h('span', { class: 'problem-detail' }, p.detail || 'the daemon refused the request'),
    p.field ? h('span', { class: 'problem-field' }, ` — field `, h('code', {}, p.field)) : null,
  );
  if (p.field) {
    const top = String(p.field).split(/[.[]/)[0];
    const input = form.querySelector(`[name="${CSS.escape(p.field)}"]`) || form.querySelector(`[name="${CSS.escape(top)}"]`);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  }
}

// Wires a form: on submit, clears the last message, calls action(form) (which returns a
// promise of a success message) and shows its outcome. Buttons are disabled meanwhile.
export function onSubmit(form, action) {
  form.noValidate = true;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearProblem(form);
    const buttons = [...form.querySelectorAll('button')];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const msg = await action(form, ev.submitter);
      if (msg) showOk(form, msg);
    } catch (err) {
      showProblem(form, err);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  return form;
}
