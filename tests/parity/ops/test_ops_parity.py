"""test_ops_parity.py: every op of engine/ops against PyTorch, forward and backward.

Builds random inputs (fixed seed) in PyTorch's NCHW layout, hands them to the C harness
in NHWC (weights stay OIHW), and compares the harness's outputs and gradients with
PyTorch's computed in float64 from the same float32 inputs.

Tolerance, per tensor: max|engine - torch| / max|torch| <= 1e-4 (relative to the tensor's
scale, so that elements near zero do not divide by ~0); the loss values likewise.

usage: test_ops_parity.py HARNESS [WORKDIR]
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import st  # noqa: E402

TOL = 1e-4
OP_CONV, OP_BN, OP_RELU, OP_MAXPOOL, OP_AVG, OP_GMAX, OP_CONCAT = 1, 2, 3, 4, 5, 6, 7
OP_LINEAR, OP_XENT, OP_BCE, OP_ADD = 8, 9, 10, 11
OP_SILU = 14


def nhwc(t):
    """torch (N,C,H,W) or (N,C) -> numpy NHWC float32."""
    t = t.detach()
    if t.dim() == 4:
        t = t.permute(0, 2, 3, 1)
    return t.contiguous().float().numpy()


def from_nhwc(a):
    t = torch.from_numpy(a.astype(np.float64))
    if t.dim() == 4:
        t = t.permute(0, 3, 1, 2)
    return t.contiguous()


def f32(*shape, scale=1.0):
    """A float32-representable tensor, held in float64 for the reference computation."""
    return (torch.randn(*shape) * scale).float().double()


class Cases:
    def __init__(self):
        self.inputs = {}
        self.expect = {}  # name -> (float64 tensor in torch's layout, engine uses NHWC)

    def add_in(self, cs, field, t, layout=True):
        if t.dtype == torch.int64:
            self.inputs[f"{cs}.{field}"] = t.numpy()
        else:
            self.inputs[f"{cs}.{field}"] = nhwc(t) if layout else t.detach().float().numpy()

    def cfg(self, cs, *vals):
        self.inputs[f"{cs}.cfg"] = np.array(vals, dtype=np.int64)

    def want(self, cs, field, t, layout=True):
        """layout: the engine holds this tensor in NHWC (activations), not as torch does."""
        self.expect[f"{cs}.{field}"] = (t.detach(), layout)


def conv_case(c, cs, n, cin, h, w, cout, k, stride, pad, bias):
    x = f32(n, cin, h, w).requires_grad_()
    wt = f32(cout, cin, k, k, scale=(2.0 / (cin * k * k)) ** 0.5).requires_grad_()
    b = f32(cout).requires_grad_() if bias else None
    y = F.conv2d(x, wt, b, stride=stride, padding=pad)
    dy = f32(*y.shape)
    y.backward(dy)
    c.cfg(cs, OP_CONV, stride, pad, int(bias))
    c.add_in(cs, "x", x)
    c.add_in(cs, "w", wt, layout=False)
    if bias:
        c.add_in(cs, "b", b, layout=False)
    c.add_in(cs, "dy", dy)
    c.want(cs, "y", y)
    c.want(cs, "dx", x.grad)
    c.want(cs, "dw", wt.grad, layout=False)
    if bias:
        c.want(cs, "db", b.grad)


def bn_case(c, cs, shape, training):
    ch = shape[1]
    x = (f32(*shape) * 2 + f32(1, ch, *([1] * (len(shape) - 2)))).float().double()
    x.requires_grad_()
    g = f32(ch).requires_grad_()
    b = f32(ch).requires_grad_()
    rm = f32(ch)
    rv = (f32(ch).abs() + 0.5).float().double()
    c.cfg(cs, OP_BN, int(training))
    c.add_in(cs, "x", x)
    c.add_in(cs, "gamma", g, layout=False)
    c.add_in(cs, "beta", b, layout=False)
    c.add_in(cs, "rm", rm, layout=False)
    c.add_in(cs, "rv", rv, layout=False)
    rm2, rv2 = rm.clone(), rv.clone()
    y = F.batch_norm(x, rm2, rv2, g, b, training=training, momentum=0.1, eps=1e-5)
    dy = f32(*y.shape)
    y.backward(dy)
    c.add_in(cs, "dy", dy)
    c.want(cs, "y", y)
    c.want(cs, "dx", x.grad)
    c.want(cs, "dgamma", g.grad)
    c.want(cs, "dbeta", b.grad)
    c.want(cs, "rm", rm2)
    c.want(cs, "rv", rv2)


def simple_case(c, cs, op, x, fn, cfg=()):
    x = x.requires_grad_()
    y = fn(x)
    dy = f32(*y.shape)
    y.backward(dy)
    c.cfg(cs, op, *cfg)
    c.add_in(cs, "x", x)
    c.add_in(cs, "dy", dy)
    c.want(cs, "y", y)
    c.want(cs, "dx", x.grad)


def concat_pool(x):
    return torch.cat([F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)], 1).flatten(1)


def build():
    torch.manual_seed(0)
    c = Cases()
    conv_case(c, "conv_1x1_s1_bias", 2, 8, 9, 9, 16, 1, 1, 0, True)
    conv_case(c, "conv_1x1_s2", 2, 8, 9, 9, 16, 1, 2, 0, False)
    conv_case(c, "conv_3x3_s1_p1", 2, 16, 12, 12, 16, 3, 1, 1, False)
    conv_case(c, "conv_3x3_s2_p1", 2, 16, 13, 13, 32, 3, 2, 1, False)
    conv_case(c, "conv_7x7_s2_p3", 2, 3, 32, 32, 8, 7, 2, 3, False)
    conv_case(c, "conv_3x3_chunked_bias", 4, 32, 40, 40, 8, 3, 1, 1, True)
    conv_case(c, "conv_3x3_cin1", 3, 1, 28, 28, 32, 3, 1, 1, False)
    # Winograd path (3x3 stride 1, >= 16 channels): odd sizes cut tiles, uneven parts.
    conv_case(c, "conv_wino_odd_bias", 3, 32, 15, 13, 24, 3, 1, 1, True)
    conv_case(c, "conv_wino_7x7", 5, 64, 7, 7, 64, 3, 1, 1, False)
    conv_case(c, "conv_wino_pad0", 2, 16, 10, 9, 16, 3, 1, 0, False)
    bn_case(c, "bn2d_train", (4, 8, 5, 5), True)
    bn_case(c, "bn2d_eval", (4, 8, 5, 5), False)
    bn_case(c, "bn2d_train_big", (8, 40, 14, 14), True)
    bn_case(c, "bn1d_train", (16, 24), True)
    bn_case(c, "bn1d_eval", (16, 24), False)
    simple_case(c, "relu", OP_RELU, f32(2, 4, 5, 5), F.relu)
    simple_case(c, "silu", OP_SILU, f32(2, 4, 5, 5, scale=4.0), F.silu)
    # Past the clamps of its exponential (|x| > 87), and around the derivative's zero.
    simple_case(c, "silu_extremes", OP_SILU,
                torch.tensor([-300.0, -100.0, -88.5, -20.0, -1.2785, 0.0, 1e-3, 20.0, 89.0,
                              300.0], dtype=torch.float64).reshape(1, 10, 1, 1), F.silu)
    simple_case(c, "maxpool_3_2_1", OP_MAXPOOL, f32(2, 4, 9, 9),
                lambda x: F.max_pool2d(x, 3, 2, 1), (3, 2, 1))
    simple_case(c, "maxpool_3_2_1_even", OP_MAXPOOL, f32(2, 5, 16, 16),
                lambda x: F.max_pool2d(x, 3, 2, 1), (3, 2, 1))
    simple_case(c, "maxpool_2_2_0", OP_MAXPOOL, f32(2, 4, 8, 8),
                lambda x: F.max_pool2d(x, 2, 2, 0), (2, 2, 0))
    simple_case(c, "avgpool", OP_AVG, f32(3, 6, 4, 4),
                lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1))
    simple_case(c, "maxpool_global", OP_GMAX, f32(3, 6, 4, 4),
                lambda x: F.adaptive_max_pool2d(x, 1).flatten(1))
    simple_case(c, "concatpool", OP_CONCAT, f32(3, 6, 7, 7), concat_pool)

    for cs, bias in (("linear_bias", True), ("linear", False)):
        x = f32(5, 12).requires_grad_()
        w = f32(7, 12).requires_grad_()
        b = f32(7).requires_grad_() if bias else None
        y = F.linear(x, w, b)
        dy = f32(*y.shape)
        y.backward(dy)
        c.cfg(cs, OP_LINEAR, int(bias))
        c.add_in(cs, "x", x)
        c.add_in(cs, "w", w, layout=False)
        if bias:
            c.add_in(cs, "b", b, layout=False)
        c.add_in(cs, "dy", dy)
        c.want(cs, "y", y)
        c.want(cs, "dx", x.grad)
        c.want(cs, "dw", w.grad)
        if bias:
            c.want(cs, "db", b.grad)

    a, b = f32(2, 3, 4, 5).requires_grad_(), f32(2, 3, 4, 5).requires_grad_()
    y = a + b
    dy = f32(*y.shape)
    y.backward(dy)
    c.cfg("add", OP_ADD)
    c.add_in("add", "a", a)
    c.add_in("add", "b", b)
    c.add_in("add", "dy", dy)
    c.want("add", "y", y)
    c.want("add", "da", a.grad)
    c.want("add", "db", b.grad)

    for name, eps in (("xent", 0.0), ("xent_smooth", 0.1)):
        logits = f32(6, 10, scale=3.0).requires_grad_()
        labels = torch.randint(0, 10, (6,))
        loss = F.cross_entropy(logits, labels, label_smoothing=eps)
        loss.backward()
        c.cfg(name, OP_XENT)
        c.add_in(name, "logits", logits)
        c.add_in(name, "labels", labels)
        c.add_in(name, "eps", torch.tensor([eps], dtype=torch.float64), layout=False)
        c.want(name, "loss", loss)
        c.want(name, "dlogits", logits.grad)

    logits = f32(4, 5, scale=3.0).requires_grad_()
    targets = (torch.rand(4, 5) < 0.3).double()
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    loss.backward()
    c.cfg("bce", OP_BCE)
    c.add_in("bce", "logits", logits)
    c.add_in("bce", "targets", targets, layout=False)
    c.want("bce", "loss", loss)
    c.want("bce", "dlogits", logits.grad)
    return c


def main():
    harness = sys.argv[1]
    torch.set_default_dtype(torch.float64)
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
        c = build()
        st.save(inp, c.inputs)
        subprocess.run([harness, inp, outp], check=True)
        got = st.load(outp)
    failures = 0
    print(f"{'tensor':34s} {'max abs err':>12s} {'max rel err':>12s}  (tolerance {TOL:g} "
          "relative to max |torch|)")
    for name, (ref, layout) in c.expect.items():
        if name not in got:
            print(f"{name:34s} MISSING from the harness output")
            failures += 1
            continue
        g = from_nhwc(got[name]) if layout else torch.from_numpy(got[name].astype(np.float64))
        if tuple(g.shape) != tuple(ref.shape):
            print(f"{name:34s} shape {tuple(g.shape)} != torch {tuple(ref.shape)}")
            failures += 1
            continue
        abs_err = (g - ref).abs().max().item() if ref.numel() else 0.0
        scale = max(ref.abs().max().item() if ref.numel() else 0.0, 1e-12)
        rel = abs_err / scale
        ok = rel <= TOL
        failures += not ok
        print(f"{name:34s} {abs_err:12.3e} {rel:12.3e}  {'ok' if ok else 'FAIL'}")
    extra = sorted(set(got) - set(c.expect))
    if extra:
        print("unexpected outputs:", ", ".join(extra))
        failures += 1
    print(f"{len(c.expect) - failures} of {len(c.expect)} tensors within tolerance")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
