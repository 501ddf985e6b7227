"""parity_models.py: the engine's resnet18, resnet34, resnet_small and resnet_small_silu
(fast.ai head and plain head) against PyTorch on the same weights and batch: logits, loss, every parameter
gradient and the BatchNorm running statistics after one training forward, with and
without the body frozen; eval-mode logits of a torchvision resnet18 state dict.

usage: /usr/bin/python3 parity_models.py PARITY_MODEL_EXE WORKDIR
Exit status 0 when every comparison is within tolerance.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
import st  # noqa: E402

# Tolerances, relative to the largest magnitude of the reference tensor: float32 GEMMs in
# a different summation order (OpenBLAS vs oneDNN) through up to 34 layers of BatchNorm.
# PyTorch runs with the engine's ReLU on/off pattern and max positions: among millions of
# activations a few lie within rounding of zero, and one of them taking the other side of
# the kink changes a gradient by far more than any tolerance; the forward values still
# come from PyTorch's own arithmetic, so the logits check is unaffected.
TOL = {"logits": 1e-4, "loss": 1e-5, "grad": 5e-4, "stat": 1e-4, "step": 1e-3}
# Three SGD steps with momentum 0.9, L2 weight decay and differential learning rates
# (one per layer group), each after a fresh forward and backward. Their tolerance is the
# loosest: each step feeds the previous step's rounding differences through the whole net
# (through BatchNorm1d over 16 samples in the head, most of all).
STEPS, LRS, WD = 3, (0.01, 0.03, 0.1), 1e-3


class AdaptiveConcatPool2d(nn.Module):
    def forward(self, x):
        return torch.cat([nn.functional.adaptive_max_pool2d(x, 1),
                          nn.functional.adaptive_avg_pool2d(x, 1)], 1)


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


def fastai_head(nf, n_classes, xtra_fc=512):
    # fastai 0.7 ConvLearner head with ps = 0 (no Dropout modules).
    return nn.Sequential(AdaptiveConcatPool2d(), Flatten(),
                         nn.BatchNorm1d(2 * nf), nn.Linear(2 * nf, xtra_fc), nn.ReLU(),
                         nn.BatchNorm1d(xtra_fc), nn.Linear(xtra_fc, n_classes))


class SmallResNet(nn.Module):
    """resnet_small: conv3x3 stem (32), no max pool, stages 32/64/128 of two blocks;
    resnet_small_silu: the same with nn.SiLU for every ReLU of the body."""

    def __init__(self, c_in, n_classes, head, silu=False):
        super().__init__()
        block = torchvision.models.resnet.BasicBlock
        self.conv1 = nn.Conv2d(c_in, 32, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = 32

        def stage(planes, stride):
            down = None
            if stride != 1 or self.inplanes != planes:
                down = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                     nn.BatchNorm2d(planes))
            layers = [block(self.inplanes, planes, stride, down), block(planes, planes)]
            self.inplanes = planes
            return nn.Sequential(*layers)

        self.layer1 = stage(32, 1)
        self.layer2 = stage(64, 2)
        self.layer3 = stage(128, 2)
        if silu:
            self.relu = nn.SiLU()
            for block in [*self.layer1, *self.layer2, *self.layer3]:
                block.relu = nn.SiLU()
        self.head_kind = head
        if head == "plain":
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(128, n_classes)
        else:
            self.head = fastai_head(128, n_classes)

    def body(self, x):
        return self.layer3(self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x))))))

    def forward(self, x):
        x = self.body(x)
        if self.head_kind == "plain":
            return self.fc(torch.flatten(self.avgpool(x), 1))
        return self.head(x)


class TvResNet(nn.Module):
    """torchvision resnet18/34 body with either its own fc or the fast.ai head."""

    def __init__(self, arch, c_in, n_classes, head):
        super().__init__()
        tv = getattr(torchvision.models, arch)(num_classes=n_classes)
        assert c_in == 3
        for name in ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                     "layer4"]:
            setattr(self, name, getattr(tv, name))
        self.head_kind = head
        if head == "plain":
            self.avgpool, self.fc = tv.avgpool, tv.fc
        else:
            self.head = fastai_head(512, n_classes)

    def body(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        x = self.body(x)
        if self.head_kind == "plain":
            return self.fc(torch.flatten(self.avgpool(x), 1))
        return self.head(x)


class MaskedReLU(nn.Module):
    """ReLU whose on/off pattern is the engine's (call by call, in forward order)."""

    def __init__(self, masks):
        super().__init__()
        self.masks = masks

    def forward(self, x):
        return x * self.masks.pop(0).reshape(x.shape)


class ChosenMaxPool(nn.Module):
    """Max pooling that takes the engine's argmax (flat NHWC input index per output)."""

    def __init__(self, argmaxes, pool):
        super().__init__()
        self.argmaxes, self.pool = argmaxes, pool

    def forward(self, x):
        n, c, h, w = x.shape
        ho = (h + 2 * self.pool.padding - self.pool.kernel_size) // self.pool.stride + 1
        wo = (w + 2 * self.pool.padding - self.pool.kernel_size) // self.pool.stride + 1
        idx = torch.from_numpy(self.argmaxes.pop(0))
        flat = x.permute(0, 2, 3, 1).reshape(-1)
        return flat[idx].reshape(n, ho, wo, c).permute(0, 3, 1, 2)


class ChosenConcatPool(nn.Module):
    """AdaptiveConcatPool2d whose maxima are at the engine's spatial positions."""

    def __init__(self, argmaxes):
        super().__init__()
        self.argmaxes = argmaxes

    def forward(self, x):
        n, c, h, w = x.shape
        idx = torch.from_numpy(self.argmaxes.pop(0)).reshape(n, 1, c)
        mx = x.permute(0, 2, 3, 1).reshape(n, h * w, c).gather(1, idx).reshape(n, c, 1, 1)
        return torch.cat([mx, nn.functional.adaptive_avg_pool2d(x, 1)], 1)


def use_engine_choices(model, out):
    """Replaces ReLUs and max pools with ones that follow the engine's decisions."""
    masks, argmaxes = [], []
    p = 0
    while f"f{p}.relu.0" in out:
        i = 0
        while f"f{p}.relu.{i}" in out:
            masks.append(torch.from_numpy(out[f"f{p}.relu.{i}"] > 0).permute(0, 3, 1, 2)
                         .float())
            i += 1
        i = 0
        while f"f{p}.argmax.{i}" in out:
            argmaxes.append(out[f"f{p}.argmax.{i}"])
            i += 1
        p += 1
    relu = MaskedReLU(masks)
    for mod in list(model.modules()):
        for name, child in mod.named_children():
            if isinstance(child, nn.ReLU):
                setattr(mod, name, relu)
            elif isinstance(child, nn.MaxPool2d):
                setattr(mod, name, ChosenMaxPool(argmaxes, child))
            elif isinstance(child, AdaptiveConcatPool2d):
                setattr(mod, name, ChosenConcatPool(argmaxes))
    return masks, argmaxes


def group_of(arch, name):
    """Layer group of a parameter name, as the engine defines them."""
    if name.startswith("head.") or name.startswith("fc."):
        return 2
    later = ("layer2.", "layer3.") if arch.startswith("resnet_small") else \
        ("layer3.", "layer4.")
    return 1 if name.startswith(later) else 0


def randomise_bn(model, g):
    # Non-trivial BatchNorm parameters and statistics, so their handling is tested.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)


def rel_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def run_case(exe, work, arch, head, c_in, n_classes, size, batch, freeze_to, mode, seed):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    if arch.startswith("resnet_small"):
        model = SmallResNet(c_in, n_classes, head, silu=arch == "resnet_small_silu")
    else:
        model = TvResNet(arch, c_in, n_classes, head)
    randomise_bn(model, g)
    sd = {k: v.detach().numpy().astype(np.float32) if v.dtype == torch.float32
          else v.detach().numpy().astype(np.int64) for k, v in model.state_dict().items()}
    x = torch.randn(batch, c_in, size, size, generator=g)
    y = torch.randint(0, n_classes, (batch,), generator=g)
    tag = f"{arch}-{head}-f{freeze_to}-{mode}"
    wpath = os.path.join(work, tag + "-w.st")
    bpath = os.path.join(work, tag + "-b.st")
    opath = os.path.join(work, tag + "-out.st")
    st.save(wpath, sd)
    st.save(bpath, {"x": x.permute(0, 2, 3, 1).contiguous().numpy(),
                    "y": y.numpy().astype(np.int64)})
    steps = STEPS if mode == "train" else 0
    subprocess.run([exe, arch, head, str(c_in), str(n_classes), str(freeze_to), mode,
                    str(steps), wpath, bpath, opath], check=True)
    out = st.load(opath)

    # PyTorch reference: frozen groups have no gradients and their BatchNorms run in eval.
    if mode == "train":
        model.train()
        for name, m in model.named_modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and \
                    group_of(arch, name + ".weight") < freeze_to:
                m.eval()
        for name, p in model.named_parameters():
            p.requires_grad_(group_of(arch, name) >= freeze_to)
    else:
        model.eval()
    masks, argmaxes = use_engine_choices(model, out)
    n_masks = len(masks)
    params = dict(model.named_parameters())
    groups = [[p for n, p in params.items() if group_of(arch, n) == g and p.requires_grad]
              for g in range(3)]
    opt = torch.optim.SGD([{"params": ps, "lr": lr} for ps, lr in zip(groups, LRS) if ps],
                          lr=LRS[0], momentum=0.9, weight_decay=WD)
    for step in range(max(steps, 1)):
        opt.zero_grad()
        lg = model(x)
        ls = nn.functional.cross_entropy(lg, y)
        if mode == "train":
            ls.backward()
        if step == 0:
            logits, loss = lg.detach(), ls.item()
            first = {k: v.clone() for k, v in model.state_dict().items()}
            grads = {n: p.grad.clone() for n, p in params.items() if p.grad is not None}
        if step < steps:
            opt.step()
    assert not masks, f"{tag}: {len(masks)} of {n_masks} ReLU masks unused"
    assert n_masks > 0 or (arch == "resnet_small_silu" and head == "plain"), \
        f"{tag}: the engine reported no ReLU"
    assert not argmaxes, f"{tag}: {len(argmaxes)} max-pool choices unused"

    errs = {"logits": rel_err(out["logits"], logits.numpy()),
            "loss": rel_err(out["loss"], [loss])}
    worst = {"grad": (0.0, ""), "stat": (0.0, ""), "step": (0.0, "")}

    def note(kind, name, e):
        worst[kind] = max(worst[kind], (e, name))

    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if "running_" in name:
            note("stat", name, rel_err(out[name], first[name].numpy()))
        elif mode == "train" and group_of(arch, name) >= freeze_to:
            note("grad", name, rel_err(out["grad." + name], grads[name].numpy()))
        elif mode == "train":
            assert "grad." + name not in out, f"{tag}: frozen {name} has a gradient"
        if steps:
            note("step", name, rel_err(out["after." + name], t.numpy()))
    ok = errs["logits"] <= TOL["logits"] and errs["loss"] <= TOL["loss"] and \
        all(worst[k][0] <= TOL[k] for k in worst)
    print(f"{'ok  ' if ok else 'FAIL'} {tag:34s} logits {errs['logits']:.1e} "
          f"loss {errs['loss']:.1e} grad {worst['grad'][0]:.1e} ({worst['grad'][1]}) "
          f"bn-stats {worst['stat'][0]:.1e} after {steps} SGD steps "
          f"{worst['step'][0]:.1e} ({worst['step'][1]})", flush=True)
    return ok


def main():
    exe = sys.argv[1]
    torch.set_num_threads(2)
    cases = [
        # arch, head, c_in, classes, size, batch, freeze_to, mode
        ("resnet_small", "fastai", 1, 10, 28, 8, 0, "train"),
        ("resnet_small", "fastai", 3, 5, 32, 6, 2, "train"),
        ("resnet_small", "plain", 1, 10, 28, 8, 1, "train"),
        ("resnet_small_silu", "plain", 1, 10, 28, 8, 0, "train"),
        ("resnet_small_silu", "fastai", 3, 5, 32, 6, 1, "train"),
        ("resnet18", "fastai", 3, 7, 64, 16, 0, "train"),
        ("resnet18", "fastai", 3, 7, 64, 16, 2, "train"),
        ("resnet18", "plain", 3, 10, 64, 4, 0, "train"),
        ("resnet18", "plain", 3, 1000, 64, 2, 0, "eval"),
        ("resnet34", "fastai", 3, 4, 64, 16, 0, "train"),
        ("resnet34", "fastai", 3, 4, 64, 16, 1, "train"),
    ]
    with tempfile.TemporaryDirectory() as work:
        results = [run_case(exe, work, *c, seed=i + 1) for i, c in enumerate(cases)]
    print(f"{sum(results)} of {len(results)} model parity cases within tolerance "
          f"(logits {TOL['logits']}, loss {TOL['loss']}, gradients {TOL['grad']}, "
          f"BN statistics {TOL['stat']}, parameters after {STEPS} SGD steps "
          f"{TOL['step']}; relative to the reference's max magnitude)")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
