// api.js: the dashboard's only way to reach the daemon: JSON requests to /api/v1, the
// problem+json error shape (api/openapi.json), paging, and uploads with progress.

export const BASE = '/api/v1';

// A 401 means the daemon wants its token (or the session ended): the page listens for this
// event and shows the sign-in. The sign-in's own refusal of a wrong token is not one.
export const UNAUTHENTICATED = 'sgdrd:unauthenticated';
function unauthenticated(status, path) {
  if (status === 401 && path !== '/session') window.dispatchEvent(new Event(UNAUTHENTICATED));
}

// A refusal by the API (or a network failure, status 0). `problem` holds the RFC 9457 body:
// title, detail, status, error_code and, for a bad field, field.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.field = problem.field || null;
  }
}

async function parseBody(res) {
  const type = res.headers.get('content-type') || '';
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  if (type.includes('json')) {
    try { return JSON.parse(text); } catch { return { detail: text }; }
  }
  return text;
}

// Sends one request. body: an object (sent as JSON), a Blob/File (sent as is, with
// opts.type as its content type) or undefined. Resolves to {status, data, location};
// rejects with ApiError when the answer is not 2xx.
export async function request(method, path, body, opts = {}) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body instanceof Blob) {
    init.body = body;
    init.headers['Content-Type'] = opts.type || body.type || 'application/octet-stream';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path.startsWith('/') ? BASE + path : path, init);
  } catch (e) {
    throw new ApiError(0, { title: 'Network error', detail: `The daemon did not answer (${e.message}).` });
  }
  const data = await parseBody(res);
  unauthenticated(res.status, path);
  if (!res.ok) {
    const problem = data && typeof data === 'object' ? data : { detail: String(data || res.statusText) };
    if (!problem.title) problem.title = res.statusText || `HTTP ${res.status}`;
    throw new ApiError(res.status, problem);
  }
  return { status: res.status, data, location: res.headers.get('location') };
}

export const get = (path) => request('GET', path).then((r) => r.data);
export const post = (path, body, opts) => request('POST', path, body === undefined ? {} : body, opts);
export const del = (path) => request('DELETE', path);

// Every item of a paged list (limit + page_token -> next_page_token), following pages up to
// `max` items. `key` names the array in the envelope when the answer is an object.
export async function getAll(path, key, max = 5000) {
  const out = [];
  let token = null;
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const url = `${path}${sep}limit=100${token ? '&page_token=' + encodeURIComponent(token) : ''}`;
    const data = await get(url);
    if (Array.isArray(data)) { out.push(...data); break; }
    const items = data && (data[key] || data.items) ? (data[key] || data.items) : [];
    out.push(...items);
    token = data && data.next_page_token;
    if (!token || items.length === 0 || out.length >= max) break;
  }
  return out;
}

// The id at the end of a Location header (".../runs/7" -> "7"), or of a record's `id`.
export function idFrom(location, data) {
  if (data && data.id !== undefined) return String(data.id);
  const m = /\/([^/]+)\/?$/.exec(location || '');
  return m ? m[1] : null;
}

// Uploads a file with XMLHttpRequest (fetch has no upload progress). onProgress(0..1).
export function upload(path, file, type, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', BASE + path);
    xhr.setRequestHeader('Content-Type', type);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
    xhr.onerror = () => reject(new ApiError(0, { title: 'Network error', detail: 'The upload was interrupted.' }));
    xhr.onload = () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = { detail: xhr.responseText }; }
      unauthenticated(xhr.status, path);
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve({ status: xhr.status, data, location: xhr.getResponseHeader('location') });
      } else {
        const problem = data && typeof data === 'object' ? data : {};
        if (!problem.title) problem.title = xhr.statusText || `HTTP ${xhr.status}`;
        reject(new ApiError(xhr.status, problem));
      }
    };
    xhr.send(file);
  });
}
