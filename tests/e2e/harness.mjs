// harness.mjs: what every browser test here shares: the paths from its command line, the
// check/must reporting, the preconditions (playwright-core, chromium, the built daemon), a
// free loopback port, polling with a deadline, chromium's launch flags, and starting,
// calling and stopping the daemon.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
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
