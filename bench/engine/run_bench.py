"""run_bench.py: the engine against PyTorch on the same models, in one invocation.

usage: /usr/bin/python3 bench/engine/run_bench.py build/bench/engine/bench_engine [--quick]

For each case it runs the engine (bench_engine, one process per case so that peak RSS is
the case's own) and PyTorch with torch.set_num_threads(2) in its default and its
channels_last memory format (one process each), then prints images per second, the ratio
to the faster PyTorch, peak resident memory of both, and the engine's GFLOP/s beside a
cblas_sgemm peak measured in the same run. The same model definitions as the parity tests.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PARITY = os.path.join(HERE, "..", "..", "tests", "parity", "models")

# name, arch, head, c_in, size, batch, mode
CASES = [
    ("resnet_small 28x28x1 bs128 train", "resnet_small", "plain", 1, 28, 128, "train"),
    ("resnet18 64x64x3 bs64 train", "resnet18", "plain", 3, 64, 64, "train"),
    ("resnet18 64x64x3 bs64 eval", "resnet18", "plain", 3, 64, 64, "eval"),
    ("resnet34 64x64x3 bs64 head-only", "resnet34", "fastai", 3, 64, 64, "head"),
]

TORCH_CASE = r"""
import json, resource, sys, time
sys.path.insert(0, {parity!r})
import torch, torch.nn as nn
import parity_models as pm
torch.set_num_threads(2)
torch.manual_seed(1)
arch, head, c_in, size, bs, mode, iters, cl = {args!r}
model = (pm.SmallResNet(c_in, 10, head) if arch == "resnet_small"
         else pm.TvResNet(arch, c_in, 10, head))
x = torch.randn(bs, c_in, size, size)
y = torch.randint(0, 10, (bs,))
if cl:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
params = [p for n, p in model.named_parameters()
          if mode != "head" or n.startswith("head.") or n.startswith("fc.")]
if mode == "head":
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith("head.") or n.startswith("fc."))
opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
def step():
    if mode == "eval":
        with torch.no_grad():
            return nn.functional.cross_entropy(model(x), y)
    if mode == "head":  # fast.ai freeze: the body's BatchNorm runs in eval mode
        model.train()
        for n, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss
if mode == "eval":
    model.eval()
else:
    model.train()
for _ in range(2):
    step()
t0 = time.perf_counter()
for _ in range(iters):
    step()
dt = time.perf_counter() - t0
print(json.dumps({{"img_per_s": bs * iters / dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def torch_case(arch, head, c_in, size, bs, mode, iters, channels_last):
    code = TORCH_CASE.format(parity=PARITY,
                             args=(arch, head, c_in, size, bs, mode, iters, channels_last))
    return run_json(["/usr/bin/python3", "-c", code])


def main():
    exe = sys.argv[1]
    quick = "--quick" in sys.argv
    iters = 3 if quick else 8
    peak = run_json([exe, "sgemm", "1024" if quick else "2048"])
    print(f"cblas_sgemm peak: {peak['gflops']:.1f} GFLOP/s ({peak['sgemm_n']}^3, OpenBLAS core "
          f"{peak['blas_core']}, {peak['threads']} threads)")
    print("PyTorch: torch.set_num_threads(2); the faster of its default (NCHW) and "
          "channels_last layouts counts.\n")
    hdr = (f"{'case':34s} {'engine img/s':>12s} {'torch img/s':>11s} {'(NCHW/CL)':>13s} "
           f"{'ratio':>6s} {'engine MB':>9s} {'torch MB':>8s} {'mem ratio':>9s} "
           f"{'GFLOP/s':>8s} {'% sgemm':>7s}")
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for name, arch, head, c_in, size, bs, mode in CASES:
        e = run_json([exe, arch, head, str(c_in), str(size), str(bs), mode, str(iters)])
        t_nchw = torch_case(arch, head, c_in, size, bs, mode, iters, False)
        t_cl = torch_case(arch, head, c_in, size, bs, mode, iters, True)
        t_best = max(t_nchw["img_per_s"], t_cl["img_per_s"])
        t_mem = max(t_nchw["peak_rss_mb"], t_cl["peak_rss_mb"])
        ratio = e["img_per_s"] / t_best
        mem_ratio = e["peak_rss_mb"] / t_mem
        rows.append((name, ratio, mem_ratio))
        print(f"{name:34s} {e['img_per_s']:12.1f} {t_best:11.1f} "
              f"{t_nchw['img_per_s']:6.0f}/{t_cl['img_per_s']:<6.0f} {ratio:5.2f}x "
              f"{e['peak_rss_mb']:9.0f} {t_mem:8.0f} {mem_ratio:8.2f}x "
              f"{e['gflops']:8.1f} {100 * e['gflops'] / peak['gflops']:6.0f}%", flush=True)
    print("\ntargets: throughput ratio >= 1.0x on every case (goal 1.5x); memory ratio <= 0.33x")
    for name, ratio, mem_ratio in rows:
        print(f"  {name:34s} speed {'met' if ratio >= 1.0 else 'NOT met'} ({ratio:.2f}x), "
              f"memory {'met' if mem_ratio <= 1 / 3 else 'NOT met'} ({mem_ratio:.2f}x)")


if __name__ == "__main__":
    main()
