"""test_recipe.py: the recipe on 2 workers through the real daemon (--max-workers 2), against
the same recipe in the daemon. Two runs with the same seed and settings on a small
Fashion-MNIST subset (1024 training, 256 validation images), the second with workers 2
as its default; each runs the recipe with max_epochs 2. Both must succeed, record their
epochs and LR sweeps, and end with TTA accuracies within TOLERANCE of each other.

Why TOLERANCE is 0.10: the two worlds compute the same sums in a different order, so
their weights part by rounding, which training amplifies; the recipe also picks its
learning rates from its sweeps, and a rounding-sized change in a sweep's smoothed loss can
move a pick by one sweep step, which moves the fit further than a fixed rate would. On
256 validation images one image is 0.004, and the binomial noise of an accuracy near 0.7
is about 0.03 per run, so two runs that differ this way land within about 0.08 of each
other (2 standard deviations of the difference); 0.10 leaves a margin for a moved pick,
while a broken world (wrong shards, missing gradient sums, unsynchronized BatchNorm)
trains far worse or not at all. The fit tests use 0.08 with a fixed rate.

usage: /usr/bin/python3 test_recipe.py SGDRD_BIN
"""
import os
import sys

os.environ["SGDRD_BIN"] = os.path.abspath(sys.argv[1])
sys.path.insert(0, os.path.dirname(__file__))
from daemon_world import (API, check, daemon_world, items, new_run, register_fm,  # noqa: E402
                          verdict, wait_job)

TOLERANCE = 0.10
RECIPE = {"max_epochs": 2, "n_aug": 2}


def main():
    ok = True
    with daemon_world("sgdrd-recipe-", ["--worker-timeout", "300"]) as d:
        register_fm(d)
        results, worlds = [], []
        for workers in (1, 2):
            run = new_run(d, 7, workers=workers)
            r = d.post(API + "/runs/%d/recipe" % run, RECIPE)
            ok &= check(r.status == 202, f"recipe on {workers} worker(s) queued")
            job = wait_job(d, r.json()["id"], timeout=900)
            epochs = items(d.get(API + "/runs/%d/epochs" % run))
            sweeps = items(d.get(API + "/runs/%d/lr-finds" % run))
            res = job.get("result") or {}
            # The daemon writes a world's spec beside the run's files, for mpirun's ranks.
            worlds.append(os.path.exists(os.path.join(d.data, "runs", str(run),
                                                      "world-%d.json" % job["id"])))
            ok &= check(job["state"] == "succeeded" and epochs and sweeps
                        and res.get("tta_accuracy") is not None,
                        f"recipe on {workers} worker(s): {job['state']} {job.get('error')}, "
                        f"{len(epochs)} epochs, {len(sweeps)} sweeps, result {res}")
            results.append(res.get("tta_accuracy"))
        ok &= check(worlds == [False, True],
                    f"the first recipe ran in the daemon, the second as a world: {worlds}")
        if None not in results:
            ok &= check(min(results) > 0.5, f"both learn: {results}")
            ok &= check(abs(results[0] - results[1]) <= TOLERANCE,
                        f"TTA accuracy on 1 and 2 workers within {TOLERANCE}: {results}")
        if not ok:
            print(d.log_text()[-20000:])
    return verdict("recipe", ok)


if __name__ == "__main__":
    sys.exit(main())
