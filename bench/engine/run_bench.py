"""run_bench.py: the engine against PyTorch on the same models, in both precisions, in one
invocation.

usage: /usr/bin/python3 bench/engine/run_bench.py build/bench/engine/bench_engine [--quick]
       [--precision fp32|bf16|both]

For each case and precision it runs the engine (bench_engine, one process per case so that
peak RSS is the case's own) and PyTorch with torch.set_num_threads(2) in its default and
its channels_last memory format (one process each; bf16 is torch.autocast('cpu',
dtype=torch.bfloat16)), then prints images per second, the ratio to the faster PyTorch,
peak resident memory of both, the engine's GFLOP/s against the peak of that precision
measured in the same run (cblas_sgemm for fp32, oneDNN's bf16 matmul for bf16), which
oneDNN ISA each side dispatched to and whether bf16 kernels ran (oneDNN's verbose output
of one warm-up step), and MET / NOT MET per case: speed >= 1.0x and memory <= 1/3 of
PyTorch's. Speed is images per second of wall-clock time; images per CPU-second (all
threads of the process) are printed beside it, as the steadier figure on a loaded host, and
both sides run with OMP_WAIT_POLICY=passive (the engine sets it for itself; PyTorch gets it
unless the environment says otherwise) so that no spinning thread counts as work. A case is never MET when a side was capped: OPENBLAS_CORETYPE or
ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA set in the environment, or, in bf16, a side that ran
no bf16 kernels. The engine's bf16 may run on its fp32 kernels with operands rounded to bf16
(bench_engine's "bf16_kernels": "fp32", the same arithmetic; SGDRD_BF16_KERNELS forces
either): that counts as bf16 ("r" in the "bf16 ran" column) and its GFLOP/s are set against
the sgemm peak. PyTorch gets the OpenBLAS core the engine chose (OPENBLAS_CORETYPE), so
that both sides' BLAS calls run the same kernels.
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
    ("resnet_small_silu 28x28x1 bs128 train", "resnet_small_silu", "plain", 1, 28, 128,
     "train"),
    ("resnet18 64x64x3 bs64 train", "resnet18", "plain", 3, 64, 64, "train"),
    ("resnet18 64x64x3 bs64 eval", "resnet18", "plain", 3, 64, 64, "eval"),
    ("resnet34 64x64x3 bs64 head-only", "resnet34", "fastai", 3, 64, 64, "head"),
]
CAP_VARS = ("OPENBLAS_CORETYPE", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")

TORCH_CASE = r"""
import json, resource, sys, time
sys.path.insert(0, {parity!r})
import torch, torch.nn as nn
import parity_models as pm
torch.set_num_threads(2)
torch.manual_seed(1)
arch, head, c_in, size, bs, mode, iters, cl, bf16 = {args!r}
model = (pm.SmallResNet(c_in, 10, head, silu=arch == "resnet_small_silu")
         if arch.startswith("resnet_small") else pm.TvResNet(arch, c_in, 10, head))
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
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if mode == "eval":
            with torch.no_grad():
                return nn.functional.cross_entropy(model(x), y)
        if mode == "head":  # fast.ai freeze: the body's BatchNorm runs in eval mode
            model.train()
            for n, m in model.named_modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss
if mode == "eval":
    model.eval()
else:
    model.train()
with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
    step()
sys.stdout.flush()
step()
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(iters):
    step()
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({{"img_per_s": bs * iters / dt, "img_per_cpu_s": bs * iters / cpu,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_json(cmd, env=None):
    """The command's last stdout line as JSON, and its oneDNN verbose lines before it."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    lines = out.strip().splitlines()
    verbose = [ln for ln in lines if ln.startswith(("onednn_verbose,", "dnnl_verbose,"))]
    return json.loads(lines[-1]), verbose


def kernels(verbose):
    """(ISA line, whether a bf16 convolution / matmul / inner product ran, kernel count)."""
    isa = next((ln.split("isa:", 1)[1] for ln in verbose if ",isa:" in ln), "-")
    execs = [ln.split(",") for ln in verbose if ",exec," in ln]
    gemms = [f for f in execs if len(f) > 6 and f[3] in ("convolution", "matmul",
                                                         "inner_product")]
    bf16 = any("bf16" in f[4] and "src_bf16" in ",".join(f) for f in gemms)
    return isa, bf16, len(gemms)


def torch_case(args, channels_last, bf16, env):
    code = TORCH_CASE.format(parity=PARITY, args=args + (channels_last, bf16))
    return run_json(["/usr/bin/python3", "-c", code], env)


def peaks(exe, quick):
    n = "1024" if quick else "2048"
    sg, _ = run_json([exe, "sgemm", n])
    print(f"fp32 peak: cblas_sgemm {sg['gflops']:.1f} GFLOP/s ({n}^3, OpenBLAS core "
          f"{sg['blas_core']}, {sg['threads']} threads)")
    try:
        bf, _ = run_json([exe, "gemm-bf16", n])
    except subprocess.CalledProcessError:
        # A CPU without bf16 (or oneDNN capped below it): the fp32 table still stands.
        print("bf16 peak: none (oneDNN has no bf16 kernels on this CPU or under this cap)")
        return sg, {"fp32": sg["gflops"], "bf16": float("nan")}
    print(f"bf16 peak: oneDNN matmul {bf['gflops']:.1f} GFLOP/s ({n}^3, {bf['impl']}, oneDNN "
          f"ISA {bf['onednn_isa']})")
    return sg, {"fp32": sg["gflops"], "bf16": bf["gflops"]}


def main():
    exe = sys.argv[1]
    quick = "--quick" in sys.argv
    precs = ["fp32", "bf16"]
    if "--precision" in sys.argv:
        p = sys.argv[sys.argv.index("--precision") + 1]
        precs = precs if p == "both" else [p]
    iters = 3 if quick else 8
    capped = [f"{v}={os.environ[v]}" for v in CAP_VARS if v in os.environ]
    sg, peak = peaks(exe, quick)
    env = dict(os.environ)
    env.setdefault("OPENBLAS_CORETYPE", sg["blas_core"])
    env.setdefault("OMP_WAIT_POLICY", "passive")
    print(f"PyTorch: torch.set_num_threads(2), OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}, "
          f"OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']}; "
          "the faster of its default (NCHW) and channels_last layouts counts; bf16 is "
          "torch.autocast('cpu', dtype=torch.bfloat16).")
    if capped:
        print("capped by the environment (no case can be MET): " + ", ".join(capped))
    print()
    hdr = (f"{'case':34s} {'prec':4s} {'engine img/s':>12s} {'torch img/s':>11s} "
           f"{'(NCHW/CL)':>13s} {'ratio':>6s} {'engine MB':>9s} {'torch MB':>8s} "
           f"{'mem ratio':>9s} {'GFLOP/s':>8s} {'% peak':>6s} {'bf16 ran e/t':>12s} "
           f"{'img/cpu-s e/t':>13s} {'cpu ratio':>9s}")
    print(hdr)
    print("-" * len(hdr))
    rows, isas = [], {}
    for prec in precs:
        for name, arch, head, c_in, size, bs, mode in CASES:
            e, ev = run_json([exe, arch, head, str(c_in), str(size), str(bs), mode,
                              str(iters), prec])
            targs = (arch, head, c_in, size, bs, mode, iters)
            t_nchw, tv = torch_case(targs, False, prec == "bf16", env)
            t_cl, tv_cl = torch_case(targs, True, prec == "bf16", env)
            t_best = max(t_nchw["img_per_s"], t_cl["img_per_s"])
            t_cpu = max(t_nchw["img_per_cpu_s"], t_cl["img_per_cpu_s"])
            t_mem = max(t_nchw["peak_rss_mb"], t_cl["peak_rss_mb"])
            ratio = e["img_per_s"] / t_best
            mem_ratio = e["peak_rss_mb"] / t_mem
            e_isa, e_bf16, _ = kernels(ev)
            t_isa, t_bf16, _ = kernels(tv + tv_cl)
            rounded = prec == "bf16" and e.get("bf16_kernels") == "fp32"
            e_peak = peak["fp32" if rounded else prec]
            # Without oneDNN's kernels the engine never loads oneDNN (its verbose lines are
            # absent); the JSON still names the ISA oneDNN would dispatch to.
            isas[f"engine {prec}"] = (e_isa if ev else "- (no oneDNN kernels: OpenBLAS" +
                                      (" on bf16-rounded operands" if rounded else "") +
                                      f"; oneDNN would run {e.get('onednn_isa', '?')})")
            isas[f"PyTorch {prec}"] = t_isa
            e_ran = "r" if rounded else "y" if e_bf16 else "n"
            ran = f"{e_ran}/{'y' if t_bf16 else 'n'}" if prec == "bf16" else "-"
            why = list(capped)
            if prec == "bf16" and not ((e_bf16 or rounded) and t_bf16):
                why.append("a side ran no bf16 kernels")
            met = ratio >= 1.0 and mem_ratio <= 1 / 3 and not why
            rows.append((name, prec, ratio, mem_ratio, met, why))
            print(f"{name:34s} {prec:4s} {e['img_per_s']:12.1f} {t_best:11.1f} "
                  f"{t_nchw['img_per_s']:6.0f}/{t_cl['img_per_s']:<6.0f} {ratio:5.2f}x "
                  f"{e['peak_rss_mb']:9.0f} {t_mem:8.0f} {mem_ratio:8.2f}x "
                  f"{e['gflops']:8.1f} {100 * e['gflops'] / e_peak:5.0f}% {ran:>12s} "
                  f"{e['img_per_cpu_s']:6.0f}/{t_cpu:<6.0f} {e['img_per_cpu_s'] / t_cpu:8.2f}x",
                  flush=True)
    print("\noneDNN ISA dispatched to:")
    for k, v in isas.items():
        print(f"  {k:13s} {v}")
    print("\ntargets: throughput ratio >= 1.0x on every case in each precision (goal 1.5x); "
          "memory ratio <= 0.33x")
    for name, prec, ratio, mem_ratio, met, why in rows:
        print(f"  {name:34s} {prec}  {'MET' if met else 'NOT MET'}: speed {ratio:.2f}x, "
              f"memory {mem_ratio:.2f}x" + (f" (refused: {'; '.join(why)})" if why else ""))


if __name__ == "__main__":
    main()
