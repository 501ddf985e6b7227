"""test_daemon.py: data-parallel jobs through the real daemon (started with --max-workers 2)
over HTTP. On a small Fashion-MNIST subset: a fit with workers 2 succeeds with its epochs
recorded and an accuracy close to the same fit in the daemon (workers 1, on a second run
with the same seed); an LR sweep records its points and suggestions on 2 workers, the
default of its run (`workers` on POST /runs, shown in the run's config), which a job's own
workers overrides; workers above --max-workers, on a job or a run, is a 400 naming the
field; killing one rank mid-fit stops the
job (interrupted, with the reason) while the daemon keeps serving; the fit resumes from
its epoch checkpoint to its end, and the next job on the run runs. /health shows the
running world (its ranks, hosts, img/s, gradient-sum time); cancel stops every rank.

usage: /usr/bin/python3 test_daemon.py SGDRD_BIN
"""
import os
import signal
import subprocess
import sys
import time

os.environ["SGDRD_BIN"] = os.path.abspath(sys.argv[1])
sys.path.insert(0, os.path.dirname(__file__))
from daemon_world import (API, check, daemon_world, items, last_accuracy, new_run,  # noqa: E402
                          register_fm, verdict, wait_job)


def worker_pids(d, job_id):
    """The ranks of this daemon's job: its spec lies under this daemon's data dir, so that
    the worlds of another daemon on the machine (another test run) are never matched."""
    spec = os.path.join(d.data, "runs", "[0-9]+", "world-%d.json" % job_id)
    out = subprocess.run(["pgrep", "-f", "sgdrd-worker " + spec + "$"],
                         capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def main():
    ok = True
    with daemon_world("sgdrd-dist-", ["--worker-timeout", "120"]) as d:
        register_fm(d)

        fit = {"lrs": 0.05, "n_cycle": 1, "cycle_len": 2}
        r = d.post(API + "/runs/%d/fit" % new_run(d, 3), dict(fit, workers=3))
        ok &= check(r.status == 400 and r.json().get("field") == "workers",
                    "workers above --max-workers: 400 naming workers")

        r = d.post(API + "/runs", {"dataset": "fm", "arch": "resnet_small", "workers": 3})
        ok &= check(r.status == 400 and r.json().get("field") == "workers",
                    "a run's workers above --max-workers: 400 naming workers")
        # The second run's jobs default to 2 workers; its fit names them anyway.
        runs = [new_run(d, 5), new_run(d, 5, workers=2)]
        config = d.get(API + "/runs/%d" % runs[1]).json()["config"]
        ok &= check(config.get("workers") == 2, f"the run's config shows its workers: {config}")
        jobs = []
        for run, workers in zip(runs, (1, 2)):
            r = d.post(API + "/runs/%d/fit" % run, dict(fit, workers=workers))
            ok &= check(r.status == 202, f"fit with workers {workers} queued")
            jobs.append(wait_job(d, r.json()["id"], timeout=600))
        acc = [last_accuracy(d, run) for run in runs]
        ok &= check(all(j["state"] == "succeeded" for j in jobs),
                    f"both fits succeeded: {[j['state'] for j in jobs]} "
                    f"{[j.get('error') for j in jobs]}")
        ok &= check(acc[0][1] == 2 and acc[1][1] == 2, f"2 epochs recorded each: {acc}")
        if acc[0][0] is not None and acc[1][0] is not None:
            ok &= check(abs(acc[0][0] - acc[1][0]) <= 0.08,
                        f"accuracy on 1 and 2 workers within 0.08: {acc[0][0]} {acc[1][0]}")

        r = d.post(API + "/runs/%d/lr-find" % runs[1], {"num_it": 12})
        ok &= check(r.status == 202 and r.json()["params"].get("workers") == 2,
                    f"a job without workers takes the run's: {r.json().get('params')}")
        job = wait_job(d, r.json()["id"], timeout=600)
        ok &= check(os.path.exists(os.path.join(d.data, "runs", str(runs[1]),
                                                "world-%d.json" % job["id"])),
                    "it ran as a world (the daemon wrote its spec)")
        sweeps = items(d.get(API + "/runs/%d/lr-finds" % runs[1]))
        one = d.get(API + "/lr-finds/%d" % sweeps[-1]["id"]).json() if sweeps else {}
        ok &= check(job["state"] == "succeeded" and len(one.get("points", [])) >= 5
                    and one.get("suggestions"),
                    f"LR sweep on 2 workers: {job['state']}, "
                    f"{len(one.get('points', []))} points")

        _, before = last_accuracy(d, runs[1])
        r = d.post(API + "/runs/%d/fit" % runs[1], {"lrs": 0.05, "n_cycle": 1, "cycle_len": 3,
                                                    "workers": 2})
        job_id = r.json()["id"]
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and last_accuracy(d, runs[1])[1] <= before:
            time.sleep(0.5)
        world = d.get(API + "/health").json().get("world", {})
        running = world.get("running") or {}
        ok &= check(world.get("max_workers") == 2 and running.get("size") == 2
                    and len(running.get("ranks", [])) == 2
                    and all(r.get("host") for r in running["ranks"]),
                    f"health shows the running world: {running}")
        pids = worker_pids(d, job_id)
        if pids:
            os.kill(pids[-1], signal.SIGKILL)
        t0 = time.monotonic()
        job = wait_job(d, job_id, timeout=200)
        ok &= check(pids and job["state"] == "interrupted" and job.get("error"),
                    f"a killed rank stops the fit in {time.monotonic() - t0:.1f} s: "
                    f"{job['state']}: {job.get('error')}")
        r = d.post(API + "/jobs/%d/resume" % job_id)
        ok &= check(r.status == 202, f"the fit resumes: {r.status}")
        if r.status == 202:
            job = wait_job(d, r.json()["id"], timeout=600)
            _, after = last_accuracy(d, runs[1])
            ok &= check(job["state"] == "succeeded" and after == before + 3,
                        f"from its checkpoint to the end: {job['state']}, epochs "
                        f"{before} -> {after}")
        ok &= check(d.get(API + "/health").status == 200, "the daemon keeps serving")
        r = d.post(API + "/runs/%d/tta" % runs[1], {"n_aug": 1, "workers": 2})
        job = wait_job(d, r.json()["id"], timeout=600)
        ok &= check(job["state"] == "succeeded", f"the next job (tta, 2 workers): "
                    f"{job['state']} {job.get('result')}")
        r = d.post(API + "/runs/%d/tta" % runs[1], {"n_aug": 1, "workers": 1})
        job = wait_job(d, r.json()["id"], timeout=600)
        ok &= check("workers" not in job["params"] and job["state"] == "succeeded",
                    f"a job's own workers 1 wins over the run's 2: {job['params']} "
                    f"{job['state']}")
        r = d.post(API + "/runs/%d/fit" % runs[0], dict(fit, workers=2))
        job_id = r.json()["id"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(worker_pids(d, job_id)) < 2:
            time.sleep(0.5)
        c = d.post(API + "/jobs/%d/cancel" % job_id)
        job = wait_job(d, job_id, timeout=60)
        time.sleep(1)
        ok &= check(c.status == 202 and job["state"] == "cancelled"
                    and not worker_pids(d, job_id),
                    f"cancel stops the whole world: {job['state']}, "
                    f"{len(worker_pids(d, job_id))} ranks left")
        if not ok:
            print(d.log_text())
    return verdict("daemon", ok)


if __name__ == "__main__":
    sys.exit(main())
