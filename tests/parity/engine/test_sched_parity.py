"""Parity: sgdr (warm-up off) against torch.optim.lr_scheduler.CosineAnnealingWarmRestarts,
stepped once per batch, for every iteration of several plans; 1cycle (LR and momentum)
against torch.optim.lr_scheduler.OneCycleLR."""
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

# 1cycle against torch's three-phase OneCycleLR (linear annealing, cycle_momentum on):
# with pct_start = (cycle_nb + 1) / T the phases end at fast.ai's cycle_nb and 2 cycle_nb;
# fast.ai's annihilation spans T - 2 cycle_nb steps towards lr0/div/100 but stops one
# short, which is torch's last phase of T - 1 - 2 cycle_nb steps with the final_div_factor
# below. Every iteration's LR and momentum must agree.
ONE = [  # lr0, batches per epoch, cycle_len, div, pct, mom_hi, mom_lo
    (0.1, 10, 1, 10.0, 10.0, 0.95, 0.85),
    (0.5, 50, 2, 10.0, 10.0, 0.95, 0.85),
    (0.03, 7, 3, 25.0, 20.0, 0.9, 0.8),
    (1.0, 33, 1, 10.0, 5.0, 0.99, 0.5),
]
worst_lr = worst_mom = 0.0
for lr0, bpe, cycle_len, div, pct, hi, lo in ONE:
    out = subprocess.run([DUMP, "1cycle", str(lr0), str(bpe), str(cycle_len), str(div),
                          str(pct), str(hi), str(lo)], check=True, capture_output=True,
                         text=True)
    rows = [tuple(float(x) for x in line.split()) for line in out.stdout.splitlines()]
    T = bpe * cycle_len
    assert len(rows) == T, (len(rows), T)
    cnb = int(T * (1 - pct / 100) / 2)
    ann = T - 2 * cnb
    final_div = 1.0 / (1.0 - 0.99 * (ann - 1) / ann) if ann > 1 else 1.0
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr0, momentum=hi)
    sch = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr0, total_steps=T, pct_start=(cnb + 1) / T, anneal_strategy="linear",
        cycle_momentum=True, base_momentum=lo, max_momentum=hi, div_factor=div,
        final_div_factor=final_div, three_phase=True)
    for t in range(T):
        lr_t, mom_t = opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]
        e_lr = abs(rows[t][0] - lr_t) / lr0
        e_mom = abs(rows[t][1] - mom_t)
        worst_lr, worst_mom = max(worst_lr, e_lr), max(worst_mom, e_mom)
        if e_lr > 1e-9 or e_mom > 1e-9:
            sys.exit(f"1cycle {lr0, bpe, cycle_len, div, pct, hi, lo}: iteration {t}: ours "
                     f"{rows[t]!r} torch {(lr_t, mom_t)!r}")
        opt.step()
        sch.step()
print(f"1cycle vs OneCycleLR(three_phase): {len(ONE)} plans, worst error lr {worst_lr:.3g} "
      f"(relative to lr0), momentum {worst_mom:.3g}")
