// security.mjs: the browser test of the daemon's web safety (meson suite e2e). In Debian's
// chromium through playwright-core:
// - a page served from a second origin (another loopback port) tries to drive the daemon
//   with fetch (simple and preflighted), HTML <form> POSTs and EventSource: nothing changes
//   and nothing is read, while the dashboard on its own origin keeps working;
// - a name that resolves to 127.0.0.1 (DNS rebinding, mapped in chromium's resolver) gets
//   403 for the page and for its requests;
// - a daemon started with --token-file: the dashboard shows its sign-in, a wrong token is
//   refused on the form, the right one gives an HttpOnly SameSite=Strict cookie, then the
//   pages, the live event stream and downloads work, and sign-out ends it.
//
// Usage: node security.mjs <source root> <build root>. Exit 0 pass, 1 fail, 77 skip.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import {
  CHROMIUM_ARGS, Fatal, apiCall, checker, freePort, preconditions, sleep, stopProcess, testPaths, waitFor,
} from './harness.mjs';

const { srcRoot, daemonBin, chromiumBin, artifacts } = testPaths(process.argv);
const TOKEN = 'e2e-token-0123456789';

const { log, check, must, failures, fail } = checker('[security]');
const chromium = preconditions({ srcRoot, daemonBin, chromiumBin });

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sgdrd-e2e-sec-'));
const daemons = [];
let browser = null;
let page = null;
const consoleErrors = [];

// One daemon: its own data folder, a tiny PNG dataset and a run, made over the API (node's
// fetch, which is no browser page and sends no Origin).
class Daemon {
  constructor(name, token) {
    this.name = name;
    this.token = token;
    this.root = path.join(tmp, name);
    this.out = '';
  }

  async start() {
    this.port = await freePort();
    this.base = `http://127.0.0.1:${this.port}`;
    const args = ['--listen', `127.0.0.1:${this.port}`, '--data-dir', path.join(this.root, 'var'),
      '--dataset-root', path.join(this.root, 'ds'), '--threads', '1'];
    fs.mkdirSync(this.root, { recursive: true });
    if (this.token) {
      const tf = path.join(this.root, 'token');
      fs.writeFileSync(tf, this.token + '\n', { mode: 0o600 });
      args.push('--token-file', tf);
    }
    this.proc = spawn(daemonBin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout.on('data', (d) => { this.out += d; });
    this.proc.stderr.on('data', (d) => { this.out += d; });
    daemons.push(this);
    await waitFor(async () => {
      if (this.proc.exitCode !== null) throw new Fatal(`${this.name} exited:\n${this.out}`);
      return (await this.api('GET', '/health')).status === 200;
    }, `${this.name} to answer`, 60000, 200);
  }

  api(method, p, body) {
    return apiCall(this.base, method, p, body, this.token ? { Authorization: `Bearer ${this.token}` } : {});
  }

  async seedRun() {
    const ds = path.join(this.root, 'ds', 'tiny');
    for (const split of ['train', 'valid']) {
      for (const cls of ['a', 'b']) {
        fs.mkdirSync(path.join(ds, split, cls), { recursive: true });
        for (let i = 0; i < 3; i++) fs.writeFileSync(path.join(ds, split, cls, `${i}.png`), png(cls === 'a' ? 200 : 40, i));
      }
    }
    const d = await this.api('POST', '/datasets', { name: 'tiny', path: ds, format: 'folders' });
    must(d.status === 201, `${this.name}: dataset registered`, d);
    const r = await this.api('POST', '/runs', { dataset: 'tiny', arch: 'resnet_small', sz: 28 });
    must(r.status === 201, `${this.name}: run created`, r);
    this.runId = r.data.id;
  }

  async jobCount() {
    const j = await this.api('GET', '/jobs?limit=100');
    return j.data.items.length;
  }

  stop() {
    return stopProcess(this.proc);
  }
}

// A tiny valid 8x8 grey PNG (stored, no compression), so the test needs no image library.
function png(grey, salt) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4); c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const w = 8, hgt = 8;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(hgt, 4); ihdr[8] = 8; ihdr[9] = 0;
  const raw = Buffer.alloc(hgt * (w + 1));
  for (let y = 0; y < hgt; y++) for (let x = 0; x < w; x++) raw[y * (w + 1) + 1 + x] = (grey + salt * 7 + x * y) & 0xff;
  // zlib stream with one stored block.
  let a = 1, b = 0;
  for (const v of raw) { a = (a + v) % 65521; b = (b + a) % 65521; }
  const adler = Buffer.alloc(4); adler.writeUInt32BE(((b << 16) | a) >>> 0);
  const len = Buffer.alloc(2); len.writeUInt16LE(raw.length);
  const nlen = Buffer.alloc(2); nlen.writeUInt16LE(~raw.length & 0xffff);
  const z = Buffer.concat([Buffer.from([0x78, 0x01, 0x01]), len, nlen, raw, adler]);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', z), chunk('IEND', Buffer.alloc(0))]);
}

// The second origin: a plain node server on another loopback port serving the attack page.
function startEvilServer(port) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><title>elsewhere</title><iframe name="sink"></iframe>');
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

// ---- 1. another origin cannot drive or read the daemon -----------------------------------

async function crossOrigin(d) {
  const evilPort = await freePort();
  const evil = await startEvilServer(evilPort);
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  p.on('pageerror', (e) => consoleErrors.push(`evil pageerror: ${e.message}`));
  try {
    await p.goto(`http://127.0.0.1:${evilPort}/`);
    const before = await d.jobCount();
    const target = `${d.base}/api/v1/runs/${d.runId}`;
    const results = await p.evaluate(async (t) => {
      const out = {};
      const attempt = async (name, fn) => {
        try { out[name] = await fn(); } catch (e) { out[name] = `rejected: ${e.name}`; }
      };
      await attempt('no-cors text/plain unfreeze', () => fetch(`${t}/unfreeze`, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body: '' }).then((r) => r.type));
      await attempt('no-cors recipe', () => fetch(`${t}/recipe`, { method: 'POST', mode: 'no-cors', body: '{}' }).then((r) => r.type));
      await attempt('no-cors delete-like POST', () => fetch(`${t}/lr-find`, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'a=1' }).then((r) => r.type));
      await attempt('cors json unfreeze', () => fetch(`${t}/unfreeze`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }).then((r) => r.status));
      await attempt('cors DELETE run', () => fetch(t, { method: 'DELETE' }).then((r) => r.status));
      await attempt('cors read runs', () => fetch(`${t.replace(/\/runs\/\d+$/, '/runs')}`).then((r) => r.text()));
      await attempt('cors read health', () => fetch(`${t.replace(/\/runs\/\d+$/, '/health')}`).then((r) => r.text()));
      out.events = await new Promise((resolve) => {
        const es = new EventSource(`${t}/events`);
        let got = 0;
        es.onmessage = () => { got++; };
        es.onerror = () => { es.close(); resolve(`error, ${got} messages`); };
        setTimeout(() => { es.close(); resolve(`still open, ${got} messages`); }, 5000);
      });
      // HTML forms: text/plain, urlencoded and multipart, into a hidden frame.
      for (const [i, enctype] of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data'].entries()) {
        const f = document.createElement('form');
        f.method = 'POST';
        f.action = `${t}/${['unfreeze', 'recipe', 'tta'][i]}`;
        f.enctype = enctype;
        f.target = 'sink';
        const inp = document.createElement('input');
        inp.name = '{"n_aug":1, "x":"';
        inp.value = '"}';
        f.appendChild(inp);
        document.body.appendChild(f);
        f.submit();
        await new Promise((r) => setTimeout(r, 700));
      }
      return out;
    }, target);
    log('cross-origin attempts:', JSON.stringify(results));
    for (const k of ['cors json unfreeze', 'cors DELETE run', 'cors read runs', 'cors read health'])
      check(String(results[k]).startsWith('rejected'), `another origin's fetch fails: ${k}`, results[k]);
    for (const k of ['no-cors text/plain unfreeze', 'no-cors recipe', 'no-cors delete-like POST'])
      check(results[k] === 'opaque' || String(results[k]).startsWith('rejected'), `another origin's no-cors fetch reads nothing: ${k}`, results[k]);
    check(/^error, 0 messages$/.test(results.events), 'another origin\'s EventSource gets no event', results.events);
    await sleep(500);
    check(await d.jobCount() === before, 'nothing was queued by the other origin (fetch and forms)', { before, after: await d.jobCount() });
    check((await d.api('GET', `/runs/${d.runId}`)).status === 200, 'the run is still there');
  } finally {
    await ctx.close();
    evil.close();
  }
}

// ---- 2. a rebound name gets nothing -----------------------------------------------------

async function rebinding(d) {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  try {
    const res = await p.goto(`http://rebind.test:${d.port}/`);
    check(res.status() === 403, 'a page at a name that resolves to 127.0.0.1 gets 403', res.status());
    const body = await p.locator('body').innerText();
    check(/HOST_NOT_ALLOWED/.test(body), 'the 403 says HOST_NOT_ALLOWED', body.slice(0, 200));
    const api = await p.evaluate(async () => {
      const r = await fetch('/api/v1/runs');
      const w = await fetch('/api/v1/runs/1/unfreeze', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
      return [r.status, w.status];
    });
    check(api[0] === 403 && api[1] === 403, 'that page\'s same-"origin" reads and writes get 403', api);
  } finally {
    await ctx.close();
  }
}

// ---- 3. the dashboard on its own origin keeps working ------------------------------------

function watchConsole(p, allowed) {
  p.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (allowed.some((re) => re.test(m.text()))) return;
    consoleErrors.push(m.text());
  });
  p.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
}

async function ownOrigin(d) {
  const ctx = await browser.newContext();
  page = await ctx.newPage();
  watchConsole(page, []);
  try {
    await page.goto(`${d.base}/#/runs/${d.runId}`);
    await page.locator('#lrfind').waitFor({ timeout: 30000 });
    const before = await d.jobCount();
    const unfreeze = page.locator('button[value="unfreeze"]');
    await unfreeze.click();
    await waitFor(async () => (await d.jobCount()) === before + 1, 'the page\'s unfreeze to be queued', 20000);
    check(true, 'the dashboard on its own origin still queues a job (POST from the page)');
    await waitFor(() => page.evaluate(() => window.sgdrd.sse && window.sgdrd.sse.opens > 0), 'the page\'s event stream to open', 20000);
    check(true, 'the dashboard\'s own event stream opens');
  } finally {
    await ctx.close();
    page = null;
  }
}

// ---- 4. sign-in on a daemon with a token -------------------------------------------------

async function signIn(d) {
  const ctx = await browser.newContext({ acceptDownloads: true });
  page = await ctx.newPage();
  // The refused token and the requests made before signing in show up as 401s.
  watchConsole(page, [/status of 401/]);
  try {
    await page.goto(`${d.base}/#/runs/${d.runId}`);
    await page.locator('h1:text("Sign in")').waitFor({ timeout: 20000 });
    check(await page.locator('#signout').isHidden(), 'signed out: the sign-in page shows, no sign-out button');
    await page.locator('[name="token"]').fill('not-the-token');
    await page.locator('form.signin button[type="submit"]').click();
    const err = page.locator('form.signin .form-status.error');
    await err.waitFor({ timeout: 10000 });
    check(/token is not valid/.test(await err.innerText()), 'a wrong token is refused on the form', await err.innerText());
    check((await ctx.cookies()).length === 0, 'a wrong token sets no cookie');

    await page.locator('[name="token"]').fill(TOKEN);
    await page.locator('form.signin button[type="submit"]').click();
    await page.locator('#lrfind').waitFor({ timeout: 30000 });
    check(true, 'after signing in the run page shows');
    const cookies = await ctx.cookies();
    const c = cookies.find((x) => x.name === `sgdrd_session_${d.port}`);
    check(c && c.httpOnly && c.sameSite === 'Strict' && !c.secure && c.expires > Date.now() / 1000 + 3600,
      'the session cookie is HttpOnly, SameSite=Strict, with an expiry', cookies);
    check(!(await page.evaluate(() => document.cookie)).includes('sgdrd_session'), 'the page\'s scripts cannot read the cookie');
    check(!(await page.content()).includes(TOKEN), 'the token is not left in the page');
    await waitFor(async () => /BLAS/.test(await page.locator('#health').innerText()), 'the header to show the daemon', 15000);
    check(await page.locator('#signout').isVisible(), 'the sign-out button shows');

    // Live: a job queued over the API (bearer) reaches the page through the cookie's stream.
    await waitFor(() => page.evaluate(() => window.sgdrd.sse && window.sgdrd.sse.opens > 0), 'the event stream to open', 20000);
    const ev0 = await page.evaluate(() => window.sgdrd.sse.events);
    const q = await d.api('POST', `/runs/${d.runId}/freeze`, { to: 1 });
    must(q.status === 202, 'a freeze is queued over the API', q);
    await waitFor(() => page.evaluate((n) => window.sgdrd.sse.events > n, ev0), 'an event over the stream', 30000);
    check(true, 'the event stream is live with the session cookie');
    const jobItem = page.locator('#jobs li').filter({ hasText: 'freeze' });
    await waitFor(async () => (await jobItem.count()) > 0, 'the jobs list to show the freeze', 30000);
    check(true, 'the page shows the job it did not start');

    // Downloads ride on the same cookie.
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 15000 }),
      page.evaluate((id) => {
        const a = document.createElement('a');
        a.href = `/api/v1/runs/${id}/epochs`;
        a.download = 'epochs.json';
        document.body.appendChild(a);
        a.click();
      }, d.runId),
    ]);
    const text = fs.readFileSync(await download.path(), 'utf8');
    check(!/UNAUTHENTICATED/.test(text) && /^[[{]/.test(text.trim()), 'a file download through a link gets the data', text.slice(0, 120));

    // Sign-out: the cookie is gone and the API refuses the page again.
    await page.locator('#signout').click();
    await page.locator('h1:text("Sign in")').waitFor({ timeout: 15000 });
    const after = await page.evaluate(async () => (await fetch('/api/v1/runs')).status);
    check(after === 401, 'after signing out the API answers 401', after);
    check(!(await ctx.cookies()).some((x) => x.name.startsWith('sgdrd_session')), 'signing out deletes the cookie');
    await page.screenshot({ path: path.join(artifacts, 'sign-in.png') });
  } finally {
    await ctx.close();
    page = null;
  }
}

async function main() {
  fs.mkdirSync(artifacts, { recursive: true });
  browser = await chromium.launch({
    executablePath: chromiumBin,
    args: [...CHROMIUM_ARGS, '--host-resolver-rules=MAP rebind.test 127.0.0.1'],
  });
  const plain = new Daemon('plain');
  await plain.start();
  await plain.seedRun();
  await crossOrigin(plain);
  await rebinding(plain);
  await ownOrigin(plain);
  const tok = new Daemon('token', TOKEN);
  await tok.start();
  await tok.seedRun();
  await signIn(tok);
  check(!tok.out.includes(TOKEN), 'the daemon never logged the token');
  check(consoleErrors.length === 0, 'no unexpected console errors', consoleErrors);
}

try {
  await main();
} catch (e) {
  fail();
  log('FAIL', e instanceof Fatal ? e.message : e.stack);
  if (page) {
    await page.screenshot({ path: path.join(artifacts, 'security-failure.png'), fullPage: true }).catch(() => {});
    log(`page at failure: ${page.url()}`);
  }
  for (const d of daemons) log(`${d.name} output (tail):\n${d.out.slice(-2000)}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  for (const d of daemons) await d.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
}
log(failures() ? `${failures()} check(s) failed` : 'all checks passed');
process.exit(failures() ? 1 : 0);
