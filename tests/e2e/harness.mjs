// harness.mjs: what every browser test here shares: the paths from its command line, the
// check/must reporting, the preconditions (playwright-core, chromium, the built daemon), a
// free loopback port, polling with a deadline, chromium's launch flags, starting, calling
// and stopping the daemon, and a test's world (TestWorld: its folders, daemon, browser and
// page, and the report of a failure).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

export const SKIP = 77;

// Thrown to stop a test at a failed must() or a timed-out wait; its message is the report.
export class Fatal extends Error {}

// The paths a test works with, from `node test.mjs <source root> <build root>`.
export function testPaths(argv) {
  const srcRoot = path.resolve(argv[2] || path.join(import.meta.dirname, '../..'));
  const buildRoot = path.resolve(argv[3] || path.join(srcRoot, 'build'));
  return {
    srcRoot,
    buildRoot,
    daemonBin: path.join(buildRoot, 'daemon', 'sgdrd'),
    chromiumBin: process.env.CHROMIUM || '/usr/bin/chromium',
    artifacts: path.join(srcRoot, 'tests', 'e2e', 'artifacts'),
  };
}

// log/check/must under one tag; failures() counts failed checks and fail() adds one.
export function checker(tag, extraChars = 600) {
  let failures = 0;
  const log = (...a) => console.log(tag, ...a);
  function check(cond, what, extra) {
    if (cond) log('ok  ', what);
    else { failures++; log('FAIL', what, extra !== undefined ? JSON.stringify(extra).slice(0, extraChars) : ''); }
    return cond;
  }
  function must(cond, what, extra) {
    if (!check(cond, what, extra)) throw new Fatal(what);
  }
  return { log, check, must, failures: () => failures, fail: () => { failures++; } };
}

// Exits 1 when a tool is missing and 77 (skip) when the daemon is not built; returns
// playwright-core's chromium. needUplot: the test draws charts, so the vendored uPlot must be there.
export function preconditions({ srcRoot, daemonBin, chromiumBin }, { needUplot = false, skipWhy = 'is not built' } = {}) {
  const require = createRequire(import.meta.url);
  let chromium;
  try {
    ({ chromium } = require('playwright-core'));
  } catch {
    console.error('playwright-core is not installed in tests/e2e/node_modules: run scripts/install-deps.sh (npm ci there)');
    process.exit(1);
  }
  if (!fs.existsSync(chromiumBin)) {
    console.error(`${chromiumBin} is missing: run scripts/install-deps.sh (apt-get install chromium)`);
    process.exit(1);
  }
  if (needUplot && !fs.existsSync(path.join(srcRoot, 'web', 'node_modules', 'uplot', 'dist', 'uPlot.iife.min.js'))) {
    console.error('web/node_modules/uplot is missing: run scripts/install-deps.sh (npm ci in web/)');
    process.exit(1);
  }
  if (!fs.existsSync(daemonBin)) {
    console.log(`SKIP: the daemon ${daemonBin} ${skipWhy}`);
    process.exit(SKIP);
  }
  return chromium;
}

// The flags every test launches chromium with (headless, no network chatter of its own).
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn until it returns something truthy; a throw counts as "not yet" and its message
// is kept for the timeout report (a Fatal thrown inside ends the wait only at the deadline).
export async function waitFor(fn, what, timeoutMs = 30000, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) { last = e.message; }
    await sleep(everyMs);
  }
  throw new Fatal(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

// Starts the daemon (args after the binary) and waits for /health at base; every byte it
// writes goes to onOutput. Returns the child process; no answer in time is Fatal (and the
// process is stopped, since the caller never gets it to stop).
export async function launchDaemon(daemonBin, args, base, onOutput) {
  const proc = spawn(daemonBin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  let out = '';
  const take = (d) => { out += d; onOutput(d); };
  proc.stdout.on('data', take);
  proc.stderr.on('data', take);
  let exited = null;
  proc.on('exit', (code, sig) => { exited = `${code ?? sig}`; });
  try {
    await waitFor(async () => {
      if (exited !== null) throw new Fatal(`the daemon exited (${exited}) before answering:\n${out}`);
      return (await fetch(`${base}/api/v1/health`)).ok;
    }, 'the daemon to answer /api/v1/health', 60000, 200);
  } catch (e) {
    await stopProcess(proc);
    throw e;
  }
  return proc;
}

// SIGTERM, then SIGKILL after 10 s; resolves once proc has exited (at once if it has).
export async function stopProcess(proc) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
  await gone;
  clearTimeout(t);
}

// method p (under /api/v1) at base, body sent as JSON; headers: extra ones. The answer's
// status, its body (parsed when it is JSON, else the text) and its Location header.
export async function apiCall(base, method, p, body, headers = {}) {
  const res = await fetch(`${base}/api/v1${p}`, {
    method,
    headers: body === undefined ? { ...headers } : { ...headers, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  return { status: res.status, data, location: res.headers.get('location') };
}

// Polls job id through api (as apiCall, bound to a daemon) until it succeeds and returns
// it; a job that fails, is cancelled or interrupted is Fatal.
export function awaitJob(api, id, timeoutMs) {
  return waitFor(async () => {
    const j = (await api('GET', `/jobs/${id}`)).data;
    if (['failed', 'cancelled', 'interrupted'].includes(j.state)) throw new Fatal(`job ${id} ended ${j.state}: ${j.error}`);
    return j.state === 'succeeded' ? j : null;
  }, `job ${id} to succeed`, timeoutMs, 250);
}

// One browser test's world. Owns a new temporary folder (prefix names it) holding var/, the
// daemon's data folder, and datasets/, its dataset root, with dsName the test's dataset
// folder below it; the daemon (on a free loopback port, kept across restarts, with
// daemonArgs after the folders); chromium; and the page the test drives, whose console
// errors are recorded in consoleErrors. run() ends them all.
export class TestWorld {
  constructor(paths, ck, { prefix, dsName, daemonArgs = [] }) {
    this.paths = paths;
    this.ck = ck;
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.dataDir = path.join(this.tmp, 'var');
    this.dsRoot = path.join(this.tmp, 'datasets');
    this.dsPath = path.join(this.dsRoot, dsName);
    this.daemonArgs = daemonArgs;
    this.daemon = null;
    this.daemonOut = '';
    this.port = 0;
    this.base = '';
    this.browser = null;
    this.page = null;
    this.consoleErrors = [];
    this.api = (method, p, body) => apiCall(this.base, method, p, body);
  }

  // Starts the daemon and waits for it to answer; a restart keeps the first start's port.
  async startDaemon() {
    if (!this.port) {
      this.port = await freePort();
      this.base = `http://127.0.0.1:${this.port}`;
    }
    fs.mkdirSync(this.dataDir, { recursive: true });
    this.daemon = await launchDaemon(this.paths.daemonBin, ['--listen', `127.0.0.1:${this.port}`,
      '--data-dir', this.dataDir, '--dataset-root', this.dsRoot, ...this.daemonArgs],
    this.base, (d) => { this.daemonOut += d; });
  }

  stopDaemon() {
    return stopProcess(this.daemon);
  }

  async launchBrowser(chromium) {
    this.browser = await chromium.launch({ executablePath: this.paths.chromiumBin, args: CHROMIUM_ARGS });
    return this.browser;
  }

  // A page in a new browser context (ctxOptions); its console errors, except those
  // expected(text) accepts, and its page errors go to consoleErrors.
  async openPage(ctxOptions, expected = () => false) {
    const ctx = await this.browser.newContext(ctxOptions);
    this.page = await ctx.newPage();
    this.page.on('console', (m) => {
      if (m.type() === 'error' && !expected(m.text())) this.consoleErrors.push(m.text());
    });
    this.page.on('pageerror', (e) => this.consoleErrors.push(`pageerror: ${e.message}`));
    return { ctx, page: this.page };
  }

  // Runs main; a throw counts as a failure, reported with a screenshot of the page
  // (artifacts/failureShot), the console errors so far and the tail of the daemon's output.
  // Then closes the browser, stops the daemon, removes the folder, and ends the process:
  // 0 when every check passed, else 1.
  async run(main, failureShot) {
    const { log, fail, failures } = this.ck;
    try {
      await main();
    } catch (e) {
      fail();
      log('FAIL', e instanceof Fatal ? e.message : e.stack);
      if (this.page) {
        const shot = path.join(this.paths.artifacts, failureShot);
        await this.page.screenshot({ path: shot, fullPage: true }).catch(() => {});
        log(`page at failure: ${this.page.url()} (screenshot ${shot})`);
      }
      if (this.consoleErrors.length) log('console errors so far:\n' + this.consoleErrors.join('\n'));
      if (this.daemonOut) log('daemon output (tail):\n' + this.daemonOut.slice(-3000));
    } finally {
      if (this.browser) await this.browser.close().catch(() => {});
      await this.stopDaemon();
      fs.rmSync(this.tmp, { recursive: true, force: true });
    }
    log(failures() ? `${failures()} check(s) failed` : 'all checks passed');
    process.exit(failures() ? 1 : 0);
  }
}
