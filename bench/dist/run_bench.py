"""run_bench.py: data-parallel training throughput on this machine. For resnet_small and
resnet18 it runs bench_dist as 1 rank x 2 threads and as 2 ranks x 1 thread (the same
global batch), alternating the two in rounds because a shared host's speed drifts, and
prints img/s side by side with their ratio (target: 2 ranks keep >= 90% of 1 rank), the
gradient bytes summed per step, one sum's time alone, the part not hidden behind backward
and the share hidden; then the scaling projected for 2-64 machines from the measured
one-machine step time, the bytes and a stated network bandwidth, with a ring allreduce's
2 (N-1)/N x bytes / bandwidth, of which the measured hidden share overlaps backward.

usage: /usr/bin/python3 bench/dist/run_bench.py build/bench/dist/bench_dist [ROUNDS]
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "dist"))
from mpirun import ENV, mpirun  # noqa: E402

# (arch, size, channels, global batch, steps per round inside one launch)
CASES = [("resnet_small", 28, 1, 128, 4), ("resnet18", 64, 3, 64, 3)]
BANDWIDTHS = [("10 Gbit/s", 1.25e9), ("100 Gbit/s", 12.5e9)]
MACHINES = [2, 4, 8, 16, 32, 64]


def launch(exe, ranks, threads, case):
    arch, sz, c, batch, steps = case
    ENV["OMP_NUM_THREADS"] = ENV["OPENBLAS_NUM_THREADS"] = str(threads)
    p = mpirun(ranks, [exe, arch, str(sz), str(c), str(batch), str(steps), "2"])
    if p.returncode != 0:
        sys.exit(f"bench_dist {arch} np={ranks}: exit {p.returncode}\n{p.stderr}")
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    return {r["overlap"]: r for r in rows}


def project(one, two, bw):
    """img/s and efficiency on N machines, each running one's batch in one's step time."""
    t_c, batch = one["step_s"], one["batch"]
    hidden = two[1]["hidden"]
    out = []
    for n in MACHINES:
        ar = 2 * (n - 1) / n * two[1]["allreduce_bytes_per_step"] / bw
        step = t_c + (1 - hidden) * ar
        out.append((n, n * batch / step, t_c / step, ar))
    return out


def main():
    exe = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for case in CASES:
        ones, twos = [], []
        for _ in range(rounds):
            ones.append(launch(exe, 1, 2, case)[1])
            twos.append(launch(exe, 2, 1, case))
        one = max(ones, key=lambda r: r["img_per_s"])
        two = {ov: max((t[ov] for t in twos), key=lambda r: r["img_per_s"]) for ov in (0, 1)}
        print(f"\n{case[0]} {case[1]}x{case[1]}x{case[2]}, global batch {case[3]} "
              f"(best of {rounds} launches each)")
        print("| world | img/s | vs 1x2 | step s | sum bytes/step | sum alone s | "
              "exposed s | hidden |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| 1 rank x 2 threads | {one['img_per_s']:.1f} | 1.00 | {one['step_s']:.3f} "
              f"| - | - | - | - |")
        for ov, name in ((1, "overlap"), (0, "sums after backward")):
            r = two[ov]
            print(f"| 2 ranks x 1 thread, {name} | {r['img_per_s']:.1f} | "
                  f"{r['img_per_s'] / one['img_per_s']:.2f} | {r['step_s']:.3f} | "
                  f"{r['allreduce_bytes_per_step']:.0f} | {r['allreduce_s']:.4f} | "
                  f"{r['exposed_s']:.4f} | {r['hidden']:.2f} |")
        for bw_name, bw in BANDWIDTHS:
            print(f"\nprojected, {bw_name}, each machine {case[3]} images per step in "
                  f"{one['step_s']:.3f} s, {two[1]['hidden']:.2f} of the sum hidden")
            print("| machines | img/s | efficiency | ring allreduce s |")
            print("|---:|---:|---:|---:|")
            for n, ips, eff, ar in project(one, two, bw):
                print(f"| {n} | {ips:.0f} | {eff:.2f} | {ar:.4f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
