#!/usr/bin/python3
"""bench_fit.py: training speed through the API against PyTorch's compute-only figure
(issue 19's "through the API" target), in one invocation.

Starts sgdrd on a free loopback port with a temporary data dir, registers the first
--images training and --valid test images of Fashion-MNIST (written there by
bench/recipe/idx_subset.py), and --rounds times, for each precision (fp32, and bf16 where
the daemon runs it): creates a resnet_small run (sz 28, bs 128, tfms none, head plain,
seed 1), fits it for --epochs epochs (one SGDR cycle) and reads the daemon's own figure,
the epoch events' img/s (images over the wall time from the epoch's start to its last
training batch: data loading included, validation excluded). Interleaved with the fits,
the same round measures PyTorch's compute-only figure of the same model (bench/engine's
run_bench.py case: torch.set_num_threads(2), synthetic inputs, NCHW and channels_last,
bf16 as torch.autocast('cpu', dtype=torch.bfloat16)) and, where it is built,
bench_engine's (the engine's training step without loader or daemon).

The figure of a fit is its last epoch (the first carries the learner's warm-up; it is
printed beside it). The daemon's figure is the median over rounds; PyTorch's the median of
the faster layout. Prints both, the ratio and MET / NOT MET against the must (1.0x) and the
goal (1.5x), refused when a side was capped (OPENBLAS_CORETYPE, ONEDNN_MAX_CPU_ISA or
DNNL_MAX_CPU_ISA in the environment) or, in bf16, a side ran no bf16 kernels (run_bench.py's
rule; the daemon's "fp32" bf16 kernels, OpenBLAS on rounded operands, count as bf16).

PyTorch and bench_engine run at the nice level of the daemon's training worker (5 above
the daemon's), with the OpenBLAS core the daemon chose and OMP_WAIT_POLICY=passive, so
that the load of a shared host falls on every side alike.

Usage: /usr/bin/python3 bench/api/bench_fit.py [--bin build/daemon/sgdrd]
       [--engine build/bench/engine/bench_engine] [--rounds 3] [--epochs 2]
       [--images 8000] [--valid 1000] [--precision fp32|bf16|both] [--quick]
Standard library and Debian's torch only; loopback only; the daemon is stopped at the
end, also on failure."""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "engine"))
sys.path.insert(0, os.path.join(ROOT, "bench", "recipe"))

import idx_subset  # noqa: E402
from bench_api import (API, FMNIST, cpu_s, free_port, must, print_log_tail,  # noqa: E402
                       stop_daemon)
from run_bench import CAP_VARS, PARITY, TORCH_CASE, kernels, run_json  # noqa: E402

BS = 128
SZ = 28
MUST, GOAL = 1.0, 1.5
WORKER_NICE = 5      # the daemon's training worker runs this many levels below its threads
FIT_TIMEOUT_S = 900  # one fit; a stuck job ends the benchmark


# ---------------------------------------------------------------- the daemon's side

def start_daemon(args, root, data):
    port = free_port()
    log = open(os.path.join(root, "daemon.log"), "w+")
    proc = subprocess.Popen([args.bin, "--listen", "127.0.0.1:%d" % port,
                             "--data-dir", os.path.join(root, "var"),
                             "--dataset-root", data, "--threads", "2"],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError("sgdrd exited with %d" % proc.returncode)
        try:
            return proc, log, port, must(port, "GET", API + "/health")
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("sgdrd did not answer within 60 s")
            time.sleep(0.1)


def register(port, path):
    ds = must(port, "POST", API + "/datasets", {"name": "fmnist-subset", "path": path,
                                                 "format": "idx"}, want=(201, 202))
    deadline = time.monotonic() + 120
    while ds["state"] == "scanning" and time.monotonic() < deadline:
        time.sleep(0.2)
        ds = must(port, "GET", "%s/datasets/%d" % (API, ds["id"]))
    if ds["state"] != "ready":
        raise RuntimeError("dataset not ready: %r" % ds)
    return ds


def wait_job(port, job, pid):
    """Waits for the job to succeed, sampling the daemon's CPU seconds every quarter
    second (a /proc read, no request): [(wall time, CPU seconds)]."""
    deadline = time.monotonic() + FIT_TIMEOUT_S
    samples = []
    while time.monotonic() < deadline:
        if len(samples) % 4 == 0:
            j = must(port, "GET", "%s/jobs/%d" % (API, job))
            if j["state"] not in ("queued", "running"):
                if j["state"] != "succeeded":
                    raise RuntimeError("job %d ended %s: %r" % (job, j["state"],
                                                                j.get("error")))
                return samples
        samples.append((time.time(), cpu_s(pid)))
        time.sleep(0.25)
    raise RuntimeError("job %d did not end within %d s" % (job, FIT_TIMEOUT_S))


def cpu_at(samples, t):
    """The daemon's CPU seconds at wall time t, interpolated between samples."""
    for (t0, c0), (t1, c1) in zip(samples, samples[1:]):
        if t0 <= t <= t1:
            return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c0
    return float("nan")


def thread_cpu(pid, nice):
    """{thread id: CPU seconds} of the process's live threads at this nice value (/proc
    stat fields 14, 15 and 19)."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[16]) == nice:
            out[tid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def epoch_rows(port, run):
    js = must(port, "GET", "%s/runs/%d/epochs" % (API, run))
    rows = js if isinstance(js, list) else next(v for v in js.values() if isinstance(v, list))
    return sorted(rows, key=lambda r: r["epoch"])


def batch_windows(port, run, rows, n_train):
    """Each epoch's training from its first batch's metric time to its last: (images after
    the first batch, t_first, t_last); the first batch's loading and warm-up and the
    validation between epochs are left out."""
    js = must(port, "GET", "%s/runs/%d/metrics?key=train_loss&limit=100000" % (API, run))
    pts = sorted((p["step"], p["time"]) for p in js["points"])
    out, prev = [], -1
    for r in rows:
        ts = [t for s, t in pts if prev < s <= r["step"]]
        prev = r["step"]
        if len(ts) >= 2:
            out.append((min(len(ts) * BS, n_train) - BS, ts[0], ts[-1]))
    return out


def daemon_fit(args, port, pid, ds, prec, base_nice):
    """One fit on a fresh run: its epochs' img/s, the per-batch figure, img per CPU-s of
    the daemon over the last epoch's batches, the run's config, and CPU seconds of the whole
    daemon and of its long-lived threads outside the training worker over the job."""
    cfg = must(port, "POST", API + "/runs",
               {"dataset": ds["id"], "arch": "resnet_small", "head": "plain", "sz": SZ,
                "bs": BS, "tfms": "none", "precision": prec, "seed": 1},
               want=(201,))
    c0, h0 = cpu_s(pid), thread_cpu(pid, base_nice)
    job = must(port, "POST", "%s/runs/%d/fit" % (API, cfg["id"]),
               {"lrs": 0.05, "n_cycle": 1, "cycle_len": args.epochs}, want=(202,))["id"]
    samples = wait_job(port, job, pid)
    cpu, h1 = cpu_s(pid) - c0, thread_cpu(pid, base_nice)
    other = sum(v - h0.get(tid, 0.0) for tid, v in h1.items())
    rows = epoch_rows(port, cfg["id"])
    if len(rows) != args.epochs:
        raise RuntimeError("run %d recorded %d epochs, not %d" % (cfg["id"], len(rows),
                                                                 args.epochs))
    wins = batch_windows(port, cfg["id"], rows, args.images)
    secs = sum(t1 - t0 for _, t0, t1 in wins)
    imgs, t0, t1 = wins[-1]
    used = cpu_at(samples, t1) - cpu_at(samples, t0)
    return {"epochs": [r["img_per_s"] for r in rows],
            "batch": sum(w[0] for w in wins) / secs if secs > 0 else float("nan"),
            "batch_cpu": imgs / used if used > 0 else float("nan"),
            "config": cfg["config"], "cpu_s": cpu, "other_cpu_s": other}


# ---------------------------------------------------------------- PyTorch and the engine

def torch_side(args, prec, channels_last, env):
    targs = ("resnet_small", "plain", 1, SZ, BS, "train", args.torch_iters,
             channels_last, prec == "bf16")
    code = TORCH_CASE.format(parity=PARITY, args=targs)
    return run_json(["nice", "-n", str(WORKER_NICE), "/usr/bin/python3", "-c", code], env)


def engine_side(args, prec, env):
    if not os.access(args.engine, os.X_OK):
        return None, []
    return run_json(["nice", "-n", str(WORKER_NICE), args.engine, "resnet_small", "plain",
                     "1", str(SZ), str(BS), "train", str(args.torch_iters), prec], env)


# ---------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def verdict(ratio, target, why):
    if why:
        return "NOT MET (refused: %s)" % "; ".join(why)
    return "MET" if ratio >= target else "NOT MET"


def summary(args, prec, res, capped, health):
    d = [f["epochs"][-1] for f in res["daemon"]]
    t = {cl: [x["img_per_s"] for x in res["torch"][cl]] for cl in (False, True)}
    best_cl = med(t[True]) > med(t[False])
    t_fig, d_fig = med(t[best_cl]), med(d)
    ratio = d_fig / t_fig
    t_isa, t_bf16, _ = kernels(res["torch_verbose"])
    kern = res["daemon"][0]["config"].get("bf16_kernels")
    why = list(capped)
    if prec == "bf16" and not (kern in ("fp32", "onednn") and t_bf16):
        why.append("a side ran no bf16 kernels")
    print("%s: daemon %.1f img/s (median of %d fits, epoch %d of %d; per-batch figure %.1f), "
          "PyTorch %.1f img/s (%s, median of %d) -> %.2fx"
          % (prec, d_fig, len(d), args.epochs, args.epochs,
             med([f["batch"] for f in res["daemon"]]), t_fig,
             "channels_last" if best_cl else "NCHW", len(t[best_cl]), ratio))
    print("  must >= %.1fx: %s; goal >= %.1fx: %s" % (MUST, verdict(ratio, MUST, why), GOAL,
                                                        verdict(ratio, GOAL, why)))
    core, isa = health["blas"]["core"], health["bf16"]["onednn_isa"]
    if prec == "fp32":
        ran = "OpenBLAS %s (fp32 runs no oneDNN kernels)" % core
    elif kern == "fp32":
        ran = "OpenBLAS %s on bf16-rounded operands (bf16_kernels fp32)" % core
    else:
        ran = "oneDNN bf16 kernels (bf16_kernels %s)" % kern
    print("  daemon: %s; OpenBLAS core %s, oneDNN ISA %s" % (ran, core, isa))
    print("  PyTorch: OpenBLAS core %s (OPENBLAS_CORETYPE), oneDNN ISA %s%s"
          % (res["env"]["OPENBLAS_CORETYPE"], t_isa.strip(),
             "; bf16 kernels ran" if t_bf16 else ""))
    e_fig = med([x["img_per_s"] for x in res["engine"]])
    if res["engine"]:
        print("  bench_engine (the same step on synthetic inputs, no loader, no daemon): "
              "%.1f img/s; the daemon's figure is %.0f%% of it" % (e_fig, 100 * d_fig / e_fig))
    cpu = sum(f["cpu_s"] for f in res["daemon"])
    other = sum(f["other_cpu_s"] for f in res["daemon"])
    t_cpu = med([max(a["img_per_cpu_s"], b["img_per_cpu_s"])
                 for a, b in zip(res["torch"][False], res["torch"][True])])
    print("  img per CPU-s: daemon %.0f (the last epoch's batches; over whole jobs %.1f%% of its "
          "CPU ran on long-lived threads outside training), PyTorch %.0f, engine %s"
          % (med([f["batch_cpu"] for f in res["daemon"]]), 100 * other / cpu, t_cpu,
             "%.0f" % med([x["img_per_cpu_s"] for x in res["engine"]])
             if res["engine"] else "-"))


def epoch_width(args):
    return max(21, 9 * args.epochs - 3)


def print_round(args, prec, rnd, f, tn, tc, e):
    t_cpu = max(tn["img_per_cpu_s"], tc["img_per_cpu_s"])
    print("%-4s %5d %-*s %9.1f %8.1f / %-8.1f %7s %7.0f / %.0f / %s" % (
        prec, rnd + 1, epoch_width(args), " / ".join("%6.1f" % x for x in f["epochs"]),
        f["batch"], tn["img_per_s"], tc["img_per_s"], "%.1f" % e["img_per_s"] if e else "-",
        f["batch_cpu"], t_cpu,
        "%.0f" % e["img_per_cpu_s"] if e else "-"), flush=True)


def header(args, health, capped, data_note):
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    import torch  # only for its version; the measured cases run in their own processes
    print("sgdrd fit benchmark: %s, load average %s at the start, %s"
          % (health.get("version", "?"), loadavg,
             time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    print("data: %s" % data_note)
    print("fit: resnet_small, head plain, sz %d, bs %d, tfms none, seed 1, %d epoch(s) of one "
          "SGDR cycle, lrs 0.05; daemon --threads 2, OpenBLAS %s, bf16 %s"
          % (SZ, BS, args.epochs, health["blas"]["core"],
             "supported (kernels %s)" % health["bf16"]["kernels"]
             if health["bf16"]["supported"] else "not supported here"))
    print("PyTorch %s: torch.set_num_threads(2), %d timed steps after 2 warm-up steps, "
          "synthetic inputs, nice +%d like the daemon's training worker"
          % (torch.__version__, args.torch_iters, WORKER_NICE))
    if capped:
        print("capped by the environment (nothing can be MET): " + ", ".join(capped))
    print()
    print("%-4s %5s %-*s %9s %19s %7s %s" % ("prec", "round", epoch_width(args),
                                             "daemon img/s by epoch", "per-batch",
                                             "torch NCHW / CL", "engine",
                                             "img per CPU-s daemon / torch / engine"))


# ---------------------------------------------------------------- main

def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "daemon", "sgdrd"))
    ap.add_argument("--engine", default=os.path.join(ROOT, "build", "bench", "engine",
                                                     "bench_engine"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--images", type=int, default=8000)
    ap.add_argument("--valid", type=int, default=1000)
    ap.add_argument("--precision", choices=("fp32", "bf16", "both"), default="both")
    ap.add_argument("--quick", action="store_true", help="one round, fewer PyTorch steps")
    args = ap.parse_args()
    args.rounds = 1 if args.quick else max(1, min(args.rounds, 5))
    args.epochs = max(1, min(args.epochs, 3))
    args.images = max(4 * BS, min(args.images, 60000))
    args.valid = max(BS, min(args.valid, 10000))
    args.torch_iters = 6 if args.quick else 10
    return args


def run_rounds(args, port, pid, ds, precs, env, base_nice):
    res = {p: {"daemon": [], "torch": {False: [], True: []}, "torch_verbose": [],
               "engine": [], "env": env} for p in precs}
    for rnd in range(args.rounds):
        for prec in precs:
            r = res[prec]
            # The daemon first in even rounds, last in odd ones: drift falls on both sides.
            if rnd % 2 == 0:
                f = daemon_fit(args, port, pid, ds, prec, base_nice)
            tn, vn = torch_side(args, prec, False, env)
            tc, vc = torch_side(args, prec, True, env)
            e, _ = engine_side(args, prec, env)
            if rnd % 2 == 1:
                f = daemon_fit(args, port, pid, ds, prec, base_nice)
            r["daemon"].append(f)
            r["torch"][False].append(tn)
            r["torch"][True].append(tc)
            r["torch_verbose"] += vn + vc
            if e:
                r["engine"].append(e)
            print_round(args, prec, rnd, f, tn, tc, e)
    return res


def main():
    args = parse()
    # A plain kill ends the benchmark through its finally clause, which stops the daemon.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    capped = ["%s=%s" % (v, os.environ[v]) for v in CAP_VARS if v in os.environ]
    root = tempfile.mkdtemp(prefix="sgdrd-bench-fit-")
    proc = log = None
    try:
        data = os.path.join(root, "data")
        sub = os.path.join(data, "fmnist-subset")
        os.makedirs(sub)
        idx_subset.head(FMNIST, sub, "train", args.images)
        idx_subset.head(FMNIST, sub, "t10k", args.valid)
        note = ("the first %d training and first %d test images of Fashion-MNIST (%s), "
                "written by bench/recipe/idx_subset.py" % (args.images, args.valid, FMNIST))
        proc, log, port, health = start_daemon(args, root, data)
        ds = register(port, sub)
        precs = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
        if "bf16" in precs and not health["bf16"]["supported"]:
            print("bf16: left out, the daemon refuses it here (oneDNN ISA %s)"
                  % health["bf16"]["onednn_isa"])
            precs.remove("bf16")
        if not precs:
            return 1
        env = dict(os.environ)
        env.setdefault("OPENBLAS_CORETYPE", health["blas"]["core"])
        env.setdefault("OMP_WAIT_POLICY", "passive")
        header(args, health, capped, note)
        res = run_rounds(args, port, proc.pid, ds, precs, env, os.nice(0))
        print()
        for prec in precs:
            summary(args, prec, res[prec], capped, health)
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        print("\nload average at the end: %s" % " ".join(load))
        if max(float(x) for x in load) > 2 * os.cpu_count():
            print("a loaded host (more than twice %d cores' worth of runnable work): the "
                  "sides got shares of the CPU that differ from moment to moment; the "
                  "img per CPU-s figures are the steadier ones" % os.cpu_count())
        return 0
    except Exception:
        print_log_tail(log)
        raise
    finally:
        stop_daemon(proc, log, root)


if __name__ == "__main__":
    sys.exit(main())
