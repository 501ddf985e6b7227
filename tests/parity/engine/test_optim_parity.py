"""Parity: sgd_step and adam_step against torch.optim.SGD (momentum, nesterov, weight
decay), torch.optim.Adam and torch.optim.AdamW over several steps with the same
gradients; and the optim object with a momentum (beta1) that changes every step, as
1cycle moves it, against torch with the param group's momentum (betas[0]) rewritten
before each step (what torch's OneCycleLR does)."""
import subprocess
import sys

import numpy as np
import torch

DUMP = sys.argv[1]
N, STEPS = 70000, 6   # large enough for the threaded path
rng = np.random.default_rng(7)

# 1cycle's momentums over the six steps: down from 0.95 towards 0.85 and back up.
MOMS = [0.95, 0.91, 0.87, 0.85, 0.9, 0.95]

CASES = [  # name, kind, lr, a (a list: one per step), b, wd, decoupled
    ("sgd", "sgd", 0.1, 0.0, 0, 0.0, 0),
    ("sgd momentum", "sgd", 0.05, 0.9, 0, 0.0, 0),
    ("sgd momentum wd", "sgd", 0.05, 0.9, 0, 1e-2, 0),
    ("sgd nesterov wd", "sgd", 0.03, 0.9, 1, 5e-4, 0),
    ("sgd decoupled wd", "sgd", 0.05, 0.9, 0, 1e-2, 1),
    ("adam", "adam", 1e-3, 0.9, 0.999, 0.0, 0),
    ("adam wd", "adam", 3e-3, 0.9, 0.99, 1e-2, 0),
    ("adamw", "adam", 3e-3, 0.9, 0.999, 1e-1, 1),
    ("sgd 1cycle moms", "sgd", 0.05, MOMS, 0, 1e-2, 0),
    ("sgd nesterov moms", "sgd", 0.05, MOMS, 1, 5e-4, 0),
    ("adam 1cycle beta1", "adam", 3e-3, MOMS, 0.99, 1e-2, 0),
]

worst_all = 0.0
for name, kind, lr, a, b, wd, dec in CASES:
    p0 = rng.standard_normal(N).astype(np.float32)
    gs = (rng.standard_normal((STEPS, N)) * 0.5).astype(np.float32)
    inp = p0.tobytes() + gs.tobytes()
    sched = isinstance(a, list)
    arg_a = ",".join(repr(m) for m in a) if sched else repr(a)
    a0 = a[0] if sched else a
    out = subprocess.run([DUMP, kind, repr(lr), arg_a, repr(b), repr(wd), str(dec),
                          str(STEPS), str(N)], input=inp, capture_output=True, check=True)
    ours = np.frombuffer(out.stdout, dtype=np.float32).reshape(STEPS, N)

    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    if kind == "sgd" and dec:
        opt = torch.optim.SGD([p], lr=lr, momentum=a0)
    elif kind == "sgd":
        opt = torch.optim.SGD([p], lr=lr, momentum=a0, nesterov=bool(b), weight_decay=wd)
    elif dec:
        opt = torch.optim.AdamW([p], lr=lr, betas=(a0, b), eps=1e-8, weight_decay=wd)
    else:
        opt = torch.optim.Adam([p], lr=lr, betas=(a0, b), eps=1e-8, weight_decay=wd)
    worst = 0.0
    for k in range(STEPS):
        if sched and kind == "sgd":
            opt.param_groups[0]["momentum"] = a[k]
        elif sched:
            opt.param_groups[0]["betas"] = (a[k], b)
        p.grad = torch.from_numpy(gs[k].copy())
        if kind == "sgd" and dec:  # fast.ai 0.7 Stepper: decay the weights, then step
            with torch.no_grad():
                p.data = p.data.add(p.data, alpha=-wd * lr)
        opt.step()
        ref = p.detach().numpy()
        # Parameters are O(1): differences are judged against that scale (torch fuses
        # multiply-adds, so values that cancel to near zero differ in their last bits).
        err = np.max(np.abs(ours[k] - ref) / np.maximum(np.abs(ref), 1.0))
        worst = max(worst, float(err))
    print(f"{name:18s} {STEPS} steps, max difference (relative, floor 1) {worst:.2e}")
    worst_all = max(worst_all, worst)
    if worst > 1e-6:
        sys.exit(f"{name}: differs from torch by {worst:.3g}")
print(f"optimizers match torch.optim within {worst_all:.2e}")
