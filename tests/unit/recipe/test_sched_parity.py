"""Parity: sgdr (warm-up off) against torch.optim.lr_scheduler.CosineAnnealingWarmRestarts,
stepped once per batch, for every iteration of several plans."""
import subprocess
import sys

import torch

DUMP = sys.argv[1]
PLANS = [  # lr0, batches per epoch, n_cycle, cycle_len, cycle_mult
    (0.1, 10, 3, 1, 2),
    (0.01, 7, 4, 2, 1),
    (1.0, 3, 3, 1, 3),
    (0.05, 25, 2, 3, 2),
]

worst = 0.0
for lr0, bpe, n_cycle, cycle_len, cycle_mult in PLANS:
    out = subprocess.run([DUMP, str(lr0), str(bpe), str(n_cycle), str(cycle_len),
                          str(cycle_mult)], check=True, capture_output=True, text=True)
    ours = [float(x) for x in out.stdout.split()]
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr0)
    sch = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        opt, T_0=bpe * cycle_len, T_mult=cycle_mult, eta_min=0.0)
    total = bpe * cycle_len * sum(cycle_mult ** i for i in range(n_cycle))
    assert len(ours) == total, (len(ours), total)
    for t in range(total):
        theirs = opt.param_groups[0]["lr"]
        err = abs(ours[t] - theirs) / max(abs(theirs), 1e-12 * lr0)
        worst = max(worst, err)
        if err > 1e-9:
            sys.exit(f"plan {lr0, bpe, n_cycle, cycle_len, cycle_mult}: iteration {t}: "
                     f"ours {ours[t]!r} torch {theirs!r}")
        opt.step()
        sch.step()
print(f"sgdr vs CosineAnnealingWarmRestarts: {len(PLANS)} plans, worst relative error {worst:.3g}")
