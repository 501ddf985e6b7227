"""test_bf16.py: a bf16 run's data-parallel jobs train in bf16 through the real daemon
(started with --max-workers 2) over HTTP. On the small Fashion-MNIST subset of
test_worker.py: the same bf16 fit in the daemon (workers 1) and on 2 workers (a second run
with the same seed) both succeed and end within the accuracy tolerance test_daemon.py
allows fp32 (0.08: the worlds differ only in the order of floating-point sums, which
training amplifies; bf16 rounds the same operands the same way on every rank); and every
rank of the world reports that its net trained in bf16 with the bf16 kernels the run
recorded (the daemon's log has each world report as a `world: {...}` line). Skipped (77)
where the CPU has no native bf16, as POST /runs refuses bf16 there.

usage: /usr/bin/python3 test_bf16.py SGDRD_BIN
"""
import json
import os
import sys

os.environ["SGDRD_BIN"] = os.path.abspath(sys.argv[1])
sys.path.insert(0, os.path.dirname(__file__))
from daemon_world import (API, check, daemon_world, last_accuracy, new_run,  # noqa: E402
                          register_fm, verdict, wait_job)

SKIP = 77


def world_reports(log_path):
    """The world reports the daemon logged, oldest first."""
    out = []
    with open(log_path, errors="replace") as f:
        for line in f:
            at = line.find("world: {")
            if at >= 0:
                out.append(json.loads(line[at + len("world: "):]))
    return out


def main():
    ok = True
    with daemon_world("sgdrd-bf16-", ["--worker-timeout", "120"]) as d:
        if not d.get(API + "/health").json()["bf16"]["supported"]:
            print("skip: no native bf16 on this CPU")
            return SKIP
        register_fm(d)

        runs = [new_run(d, 5, precision="bf16"), new_run(d, 5, precision="bf16")]
        configs = [d.get(API + "/runs/%d" % run).json()["config"] for run in runs]
        ok &= check(all(c.get("precision") == "bf16" and c.get("bf16_kernels") in
                        ("onednn", "fp32") for c in configs),
                    f"both runs are bf16 with their kernels recorded: "
                    f"{[(c.get('precision'), c.get('bf16_kernels')) for c in configs]}")
        fit = {"lrs": 0.05, "n_cycle": 1, "cycle_len": 2}
        jobs = []
        for run, workers in zip(runs, (1, 2)):
            r = d.post(API + "/runs/%d/fit" % run, dict(fit, workers=workers))
            ok &= check(r.status == 202, f"bf16 fit with workers {workers} queued")
            jobs.append(wait_job(d, r.json()["id"], timeout=900))
        ok &= check(all(j["state"] == "succeeded" for j in jobs),
                    f"both fits succeeded: {[j['state'] for j in jobs]} "
                    f"{[j.get('error') for j in jobs]}")
        acc = [last_accuracy(d, run) for run in runs]
        ok &= check(acc[0][1] == 2 and acc[1][1] == 2, f"2 epochs recorded each: {acc}")
        if acc[0][0] is not None and acc[1][0] is not None:
            ok &= check(acc[0][0] > 0.5 and acc[1][0] > 0.5, "both learn (accuracy above 0.5)")
            ok &= check(abs(acc[0][0] - acc[1][0]) <= 0.08,
                        f"bf16 accuracy on 1 and 2 workers within 0.08: "
                        f"{acc[0][0]} {acc[1][0]}")

        # Only the second run's fit ran as a world: every report is of its 2 ranks.
        reports = world_reports(d.log.name)
        ranks = [r for w in reports for r in w.get("ranks", [])]
        want = configs[1].get("bf16_kernels")
        ok &= check(reports and all(w.get("size") == 2 for w in reports)
                    and all(r.get("precision") == "bf16" and r.get("bf16_kernels") == want
                            for r in ranks),
                    f"every rank trained in bf16 with the run's kernels ({want}): "
                    f"{[(r.get('rank'), r.get('precision'), r.get('bf16_kernels')) for r in ranks]}")
        if not ok:
            print(d.log_text())
    return verdict("bf16", ok)


if __name__ == "__main__":
    sys.exit(main())
