#!/usr/bin/python3
"""torch_recipe.py: the recipe's fixed-length Fashion-MNIST run in PyTorch, as an
independent reference for its accuracy and a quick place to try a lever before the engine
gets it. bench_recipe --budget 0 runs the engine's side (bench/README.md, "The recipe on
Fashion-MNIST in 20 minutes").

What it replicates: resnet_small (conv3x3 stem, stages of two torchvision BasicBlocks at
widths w, 2w, 4w, no max pool) with the plain head (average pool, linear); random
horizontal flips; batch 128; AdamW (betas: the 1cycle's momentum, 0.99; weight decay
0.01); label smoothing 0.1; fast.ai 0.7's 1cycle over all epochs (lr/10 up to lr over 45%
of the iterations, back down over 45%, then towards lr/1000; momentum 0.95 to 0.85 and
back); progressive resizing (--small epochs at 16 px, then --full at 28); TTA as the mean
of the centre and the flipped image's probabilities. The learning rate is given (--lr),
not swept: pass the engine's pick. Images are normalised by the training set's mean and
standard deviation; the 16-px ones are area-resampled (antialiased bilinear).

Levers, each off by default: --se R (squeeze-and-excitation in every block, hidden
channels C/R), --act silu (SiLU for every ReLU), --ema D[,D...] (besides the trained
weights, also evaluates exponential moving averages of the weights and BatchNorm statistics
with those decays, updated after every step; training is unchanged).

Usage: /usr/bin/python3 bench/recipe/torch_recipe.py [--lr 0.012] [--small 6] [--full 5]
       [--threads 1] [--seed 42] [--width 32] [--se R] [--act relu|silu] [--ema D,...]
       [--limit BATCHES] [--data DIR]
Prints one line per epoch (training loss, validation accuracy at the epoch's size) and the
final centre-crop and TTA accuracies. Debian's torch; the data as Debian's
dataset-fashion-mnist ships it.
"""
import argparse
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import idx_subset  # this directory: the IDX reader (gzipped or not)

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's training pixels, scaled to [0, 1]
BS, WD, SMOOTH = 128, 0.01, 0.1
MOM_HI, MOM_LO, BETA2 = 0.95, 0.85, 0.99


def read_idx(data, prefix):
    b = idx_subset.read(os.path.join(data, prefix))
    nd = b[3]
    dims = struct.unpack(">" + "I" * nd, b[4:4 + 4 * nd])
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


def images(data, prefix):
    x = read_idx(data, prefix + "-images-idx3-ubyte")
    y = read_idx(data, prefix + "-labels-idx1-ubyte")
    x = (torch.tensor(x, dtype=torch.float32) / 255 - MEAN) / STD
    return x.unsqueeze(1), torch.tensor(y, dtype=torch.long)


def resized(x, sz):
    if sz == x.shape[-1]:
        return x
    return F.interpolate(x, size=(sz, sz), mode="bilinear", antialias=True,
                         align_corners=False)


class SqueezeExcite(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, max(c // r, 1)), nn.Linear(max(c // r, 1), c)

    def forward(self, x):
        s = self.fc2(F.relu(self.fc1(x.mean((2, 3)))))
        return x * torch.sigmoid(s)[:, :, None, None]


class Block(nn.Module):
    """torchvision's BasicBlock, with an optional gate and activation."""

    def __init__(self, c_in, c, stride, se, act):
        super().__init__()
        self.act = act
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.se = SqueezeExcite(c, se) if se else None
        self.down = None
        if stride != 1 or c_in != c:
            self.down = nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False),
                                      nn.BatchNorm2d(c))

    def forward(self, x):
        h = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        if self.se is not None:
            h = self.se(h)
        return self.act(h + (x if self.down is None else self.down(x)))


def resnet_small(w, se, act):
    layers = [nn.Conv2d(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
              nn.SiLU() if act is F.silu else nn.ReLU()]
    c_in = w
    for c, stride in ((w, 1), (2 * w, 2), (4 * w, 2)):
        layers += [Block(c_in, c, stride, se, act), Block(c, c, 1, se, act)]
        c_in = c
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net.to(memory_format=torch.channels_last)


def one_cycle(t, total, lr):
    """fast.ai 0.7's 1cycle (div 10, pct 10): lr and momentum at iteration t."""
    cnb = int(total * 0.9 / 2)
    if t > 2 * cnb:
        q = (t - 2 * cnb) / (total - 2 * cnb)
        return lr / 10 * (1 + q * (1 - 100) / 100), MOM_HI
    q = t / cnb if t <= cnb else 1 - (t - cnb) / cnb
    return lr / 10 * (1 + q * 9), MOM_HI + q * (MOM_LO - MOM_HI)


def accuracy(net, x, y, tta):
    net.eval()
    probs = []
    with torch.no_grad():
        for i in range(0, len(x), 500):
            b = x[i:i + 500].contiguous(memory_format=torch.channels_last)
            p = F.softmax(net(b), 1)
            if tta:
                p = (p + F.softmax(net(b.flip(3)), 1)) / 2
            probs.append(p)
    net.train()
    return 100.0 * (torch.cat(probs).argmax(1) == y).float().mean().item()


class Averages:
    """Exponential moving averages of a net's floating-point state, one per decay."""

    def __init__(self, net, decays):
        self.net, self.decays = net, decays
        self.avgs = [{k: v.detach().clone() for k, v in net.state_dict().items()
                      if v.dtype.is_floating_point} for _ in decays]

    def update(self):
        with torch.no_grad():
            sd = self.net.state_dict()
            for d, avg in zip(self.decays, self.avgs):
                for k, v in avg.items():
                    v.mul_(d).add_(sd[k], alpha=1 - d)

    def accuracies(self, x, y, tta):
        now = {k: v.clone() for k, v in self.net.state_dict().items()}
        out = []
        for d, avg in zip(self.decays, self.avgs):
            self.net.load_state_dict({**now, **avg})
            out.append((d, accuracy(self.net, x, y, tta)))
        self.net.load_state_dict(now)
        return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lr", type=float, default=0.012)
    p.add_argument("--small", type=int, default=6, help="epochs at 16 px")
    p.add_argument("--full", type=int, default=5, help="epochs at 28 px")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--se", type=int, default=0, help="SE reduction; 0: none")
    p.add_argument("--act", choices=("relu", "silu"), default="relu")
    p.add_argument("--ema", default="", help="decays, comma-separated")
    p.add_argument("--limit", type=int, default=0, help="batches per epoch (a smoke test)")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = images(a.data, "train")
    xva, yva = images(a.data, "t10k")
    small_tr, small_va = resized(xtr, 16), resized(xva, 16)
    net = resnet_small(a.width, a.se, F.silu if a.act == "silu" else F.relu)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, betas=(MOM_HI, BETA2), weight_decay=WD)
    ema = Averages(net, [float(d) for d in a.ema.split(",") if d]) if a.ema else None
    nb = a.limit or len(xtr) // BS
    epochs = a.small + a.full
    print(f"torch {torch.__version__}, {a.threads} thread(s), {vars(a)}", flush=True)
    t, t0 = 0, time.time()
    for e in range(epochs):
        x, xv = (small_tr, small_va) if e < a.small else (xtr, xva)
        perm = torch.randperm(len(x))
        total = 0.0
        for b in range(nb):
            idx = perm[b * BS:(b + 1) * BS]
            xb = x[idx].clone()
            flip = torch.rand(len(idx)) < 0.5
            xb[flip] = xb[flip].flip(3)
            lr, mom = one_cycle(t, epochs * nb, a.lr)
            t += 1
            for g in opt.param_groups:
                g["lr"], g["betas"] = lr, (mom, BETA2)
            loss = F.cross_entropy(net(xb.contiguous(memory_format=torch.channels_last)),
                                   ytr[idx], label_smoothing=SMOOTH)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if ema:
                ema.update()
            total += loss.item()
        line = f"epoch {e + 1}: loss {total / nb:.4f} accuracy {accuracy(net, xv, yva, False):.2f}%"
        if ema and e >= a.small:
            line += " (averages: " + ", ".join(
                f"{d} {acc:.2f}%" for d, acc in ema.accuracies(xv, yva, False)) + ")"
        print(f"{line}, {time.time() - t0:.0f} s", flush=True)
    print(f"final: centre {accuracy(net, xva, yva, False):.2f}%, "
          f"TTA {accuracy(net, xva, yva, True):.2f}%", flush=True)
    if ema:
        for (d, c), (_, tta) in zip(ema.accuracies(xva, yva, False),
                                    ema.accuracies(xva, yva, True)):
            print(f"average {d}: centre {c:.2f}%, TTA {tta:.2f}%", flush=True)


if __name__ == "__main__":
    main()
