"""test_bf16_parity.py: the bf16 mixed-precision convolutions and linear layers against
PyTorch, forward and backward.

Two references per tensor, both from the same float32 inputs:
- exact: PyTorch in float64 on the inputs rounded to bfloat16 (x, w and dy, as
  autocast rounds them; the bias stays float32). The engine multiplies the same bf16
  values and only accumulates in float32, so it must match this as closely as the fp32
  ops match float64: max|engine - ref| / max|ref| <= 1e-4 (test_ops_parity.py's bound).
- autocast: torch.autocast('cpu', dtype=torch.bfloat16) itself, whose outputs and
  gradients are rounded to bf16 (relative step 2^-8) where the engine keeps float32:
  max|engine - autocast| / max|autocast| <= 1e-2, a few bf16 steps of the tensor's scale.
The harness runs each backward twice (the gradients it writes are doubled): proof that the
bf16 backward adds into the gradients as every op must.

Both kernels of the bf16 mode are held to both bounds, each forced by SGDRD_BF16_KERNELS:
oneDNN's bf16 kernels, and the fp32 kernels on operands rounded to bf16 (which run the
larger shapes below in chunks of images). oneDNN's kernels run twice, each weight gradient
forced through SGDRD_ONEDNN_WEIGHT_GRAD onto one of its two paths: columns and a matmul,
and oneDNN's backward-weights convolution (which the engine picks on AMX for some shapes).
oneDNN's half is skipped on a CPU without native bf16 (the harness's --bf16-supported);
the rounded-operand half runs on any CPU.

usage: test_bf16_parity.py HARNESS
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_ops_parity import Cases, f32, from_nhwc  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import st  # noqa: E402

TOL_EXACT = 1e-4
TOL_AUTOCAST = 1e-2
OP_CONV_BF16, OP_LINEAR_BF16 = 12, 13


def bf16(t):
    return t.float().bfloat16().double()


def add_case(c, cs, fn, x, w, b, cfg, autocast):
    """fn(x, w, b) in float64; inputs float32-representable, held in float64."""
    xb, wb = bf16(x).requires_grad_(), bf16(w).requires_grad_()
    bb = b.clone().requires_grad_() if b is not None else None
    y = fn(xb, wb, bb)
    dy = f32(*y.shape)
    y.backward(bf16(dy))
    c.cfg(cs, *cfg)
    c.add_in(cs, "x", x)
    c.add_in(cs, "w", w, layout=False)
    if b is not None:
        c.add_in(cs, "b", b, layout=False)
    c.add_in(cs, "dy", dy)
    grads = {"dx": xb.grad, "dw": wb.grad}
    if b is not None:
        grads["db"] = dy.sum(dim=[d for d in range(dy.dim()) if d != 1])
    c.want(cs, "y", y)
    for k, g in grads.items():
        c.want(cs, k, 2 * g, layout=(k == "dx"))
    # autocast: float32 leaves, bf16 compute.
    xa = x.float().requires_grad_()
    wa = w.float().requires_grad_()
    ba = b.float().requires_grad_() if b is not None else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya = fn(xa, wa, ba)
    ya.float().backward(dy.float())
    autocast[f"{cs}.y"] = ya.double()
    autocast[f"{cs}.dx"] = 2 * xa.grad.double()
    autocast[f"{cs}.dw"] = 2 * wa.grad.double()
    if b is not None:
        autocast[f"{cs}.db"] = 2 * ba.grad.double()


def conv_case(c, autocast, cs, n, cin, h, w, cout, k, stride, pad, bias):
    x = f32(n, cin, h, w)
    wt = f32(cout, cin, k, k, scale=(2.0 / (cin * k * k)) ** 0.5)
    b = f32(cout) if bias else None
    add_case(c, cs, lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=pad), x, wt, b,
             (OP_CONV_BF16, stride, pad, int(bias)), autocast)


def linear_case(c, autocast, cs, n, in_f, out_f, bias):
    x, w = f32(n, in_f), f32(out_f, in_f, scale=in_f ** -0.5)
    b = f32(out_f) if bias else None
    add_case(c, cs, F.linear, x, w, b, (OP_LINEAR_BF16, int(bias)), autocast)


def build():
    torch.manual_seed(0)
    c, autocast = Cases(), {}
    # The shapes of the ResNets: stems, 3x3 stride 1 and 2, 1x1 downsamples, late stages
    # where the weights outweigh the image, odd sizes, one input channel.
    conv_case(c, autocast, "conv_7x7_s2_p3", 2, 3, 32, 32, 16, 7, 2, 3, False)
    conv_case(c, autocast, "conv_3x3_cin1", 3, 1, 28, 28, 32, 3, 1, 1, False)
    conv_case(c, autocast, "conv_3x3_s1_p1", 2, 64, 16, 16, 64, 3, 1, 1, False)
    conv_case(c, autocast, "conv_3x3_s2_p1", 2, 64, 15, 15, 128, 3, 2, 1, False)
    conv_case(c, autocast, "conv_1x1_s2", 2, 64, 16, 16, 128, 1, 2, 0, False)
    conv_case(c, autocast, "conv_1x1_s1_bias", 2, 24, 9, 7, 40, 1, 1, 0, True)
    conv_case(c, autocast, "conv_3x3_late", 4, 256, 2, 2, 512, 3, 1, 1, False)
    conv_case(c, autocast, "conv_3x3_odd_bias", 3, 20, 13, 11, 24, 3, 1, 1, True)
    linear_case(c, autocast, "linear_bias", 16, 512, 10, True)
    linear_case(c, autocast, "linear", 5, 12, 7, False)
    # Large enough that the rounded-operand kernels split the batch into chunks (with a
    # smaller last one): Winograd, and a stem on im2col.
    conv_case(c, autocast, "conv_3x3_chunks", 5, 64, 64, 64, 64, 3, 1, 1, True)
    conv_case(c, autocast, "conv_7x7_s2_chunks", 3, 3, 224, 224, 64, 7, 2, 3, False)
    return c, autocast


def compare(name, g, ref, tol):
    abs_err = (g - ref).abs().max().item()
    rel = abs_err / max(ref.abs().max().item(), 1e-12)
    ok = rel <= tol
    print(f"{name:30s} {rel:11.3e} {'ok' if ok else 'FAIL'}", end="")
    return ok


def check(harness, kind, c, autocast, inp, tmp):
    """Failures of one kind of kernels ("fp32", or "onednn/PATH" with the weight
    gradient's path) against both references."""
    kernels, _, path = kind.partition("/")
    outp = os.path.join(tmp, f"out_{kernels}_{path}.safetensors")
    env = dict(os.environ, SGDRD_BF16_KERNELS=kernels, SGDRD_ONEDNN_WEIGHT_GRAD=path)
    subprocess.run([harness, inp, outp], check=True, env=env)
    got = st.load(outp)
    failures = 0
    print(f"kernels {kind}")
    print(f"{'tensor':30s} {'rel exact':>11s}      {'rel autocast':>12s}  (tolerances "
          f"{TOL_EXACT:g} and {TOL_AUTOCAST:g} of max |ref|)")
    for name, (ref, layout) in c.expect.items():
        if name not in got:
            print(f"{name:30s} MISSING from the harness output")
            failures += 1
            continue
        g = from_nhwc(got[name]) if layout else torch.from_numpy(got[name].astype(np.float64))
        if tuple(g.shape) != tuple(ref.shape):
            print(f"{name:30s} shape {tuple(g.shape)} != torch {tuple(ref.shape)}")
            failures += 1
            continue
        ok = compare(name, g, ref, TOL_EXACT)
        abs_err = (g - autocast[name]).abs().max().item()
        rel = abs_err / max(autocast[name].abs().max().item(), 1e-12)
        ok_a = rel <= TOL_AUTOCAST
        print(f"  {rel:12.3e} {'ok' if ok_a else 'FAIL'}")
        failures += not (ok and ok_a)
    print(f"{kind}: {len(c.expect) - failures} of {len(c.expect)} tensors within tolerance")
    return failures


def main():
    harness = sys.argv[1]
    kinds = ["fp32"]
    if subprocess.run([harness, "--bf16-supported"]).returncode == 0:
        kinds[:0] = ["onednn/matmul", "onednn/native"]
    else:
        print("oneDNN's half skipped: this CPU has no native bf16 (AVX512_BF16) for oneDNN")
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(2)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in.safetensors")
        c, autocast = build()
        st.save(inp, c.inputs)
        for kernels in kinds:
            failures += check(harness, kernels, c, autocast, inp, tmp)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
