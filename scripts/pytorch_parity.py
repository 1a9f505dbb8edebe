#!/usr/bin/env python3
"""PyTorch parity check of netsplit's models: ResNet20, ResNet56 and VGG11 with batch norm.

Replays one training step exported by tests/parity_export on an independent PyTorch
definition of the same net and compares:
  logits, loss, every parameter gradient, and the BatchNorm running statistics after the
  train-mode forward (momentum 0.1, eps 1e-5, unbiased running variance).
The definitions, written out here (not imported from netsplit or torchvision):
  ResNet 6n+2: the standard CIFAR definition of akamaster/pytorch_resnet_cifar10: 3x3 convs
    without bias, BatchNorm, option-A shortcut F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))
    with p = (planes - in_planes) / 2 (planes // 4 at the published widths) or option-B
    1x1 conv + BatchNorm, global average pooling, linear.
  VGG 11/13/16/19 with batch norm for 32x32 inputs: the channel lists of Simonyan &
    Zisserman 2015 (table 1, columns A, B, D, E), each 3x3 conv (no bias) followed by
    BatchNorm and ReLU, 2x2 max pooling (stride 2) closing each of the five groups, as an
    nn.Sequential named `features` (torchvision's numbering); then global average pooling
    over the 1x1 map and one Linear named `classifier` (the CIFAR head of
    kuangliu/pytorch-cifar).
  A width multiplier m gives every conv round(width * m) filters, rounding halves up, at
  least 1 (netsplit's rule; Python's round() would round halves to even).
Counts: for every export the script also computes the model's parameter count
(sum of numel over parameters) and its convolution multiply-adds per image (forward hooks on
every nn.Conv2d: output elements x in_channels / groups x kernel area; the classifier is
not counted, as in netsplit) and fails unless they equal the `parameters` and
`conv_mult_adds` that netsplit wrote into the export's metadata. --pinned FILE checks every
`expect_counts` line of tests/test_models.cpp the same way (those counts are pinned there).

The reference runs in float64 from the exported values (float32 weights widen exactly), so
the measured error is netsplit's own rounding plus any formula difference. Error measure per
tensor:  rel = max_i |netsplit_i - torch_i| / max(max_i |torch_i|, 1e-30)
i.e. the largest absolute difference relative to the tensor's largest reference magnitude
(element-wise relative error is meaningless for gradients near zero).
Pass: float64 exports rel <= 1e-9 for every tensor; float32 exports rel <= 1e-4 for the
outputs and running statistics and <= 0.25 for gradients (--tol overrides all). Why float32
gradients are held only to gross errors: a training step's gradient is discontinuous where a
ReLU input crosses zero, and with ~3 million ReLU inputs per batch-16 step some lie within
float rounding of zero. Measured: scaling the direct engine's conv weights by (1 + 1e-7 * noise)
changes logits by 3e-7 but some weight gradients by 1.4e-2 and 3.0e-2 (one flipped ReLU
moves a weight gradient whose batch-norm-projected sum nearly cancels); F(4x4, 3x3)'s
rounding (about 1e-6) flips such units too. (Max pooling adds the same kind of kink: two
window elements within rounding of each other.) One flip moves every gradient upstream of it:
full-width VGG11 read 1.6e-5 until its batch norms took their statistics from the
convolutions (2026-12-06: the same sums in another order; logits 1.0e-5 and running
statistics 7e-7 as before), then 1.0e-1 in every layer before features.17 and 1e-5 after it,
one flip near there; so the bound for gross errors is 0.25, not the 0.1 it had been. The float64 runs, whose rounding is far
from any kink, check every gradient formula at 1e-9 with each convolution algorithm
(direct, winograd_2x2, winograd_4x4; VGG's 2x2 and 4x4 maps included), and
tests/test_conv_kernels checks each float convolution against a double reference.

Usage:
  pytorch_parity.py EXPORT.safetensors [...]          check existing exports
  pytorch_parity.py --exporter PATH --workdir DIR      run parity_export for the runs in RUNS
                    [--models resnet20,vgg11]          (all models unless --models) and check them
  pytorch_parity.py --pinned tests/test_models.cpp     check the counts pinned there
Exit status: 0 all agree, 1 disagreement, 2 usage or file error, 77 torch/numpy unavailable.
The file is read with python/netsplit_torch.py's safetensors reader (json + numpy), which also
checks netsplit's "netsplit.crc32" content checksum, re-implemented independently with zlib.
"""

import argparse
import os
import re
import subprocess
import sys
import time

SKIP = 77

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    # the safetensors reader with netsplit's checksum: python/netsplit_torch.py's
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    from netsplit_torch import read_safetensors
except ImportError as exc:  # pragma: no cover - depends on the machine
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        # in CI a skipped parity test would pass silently: it is a failure there
        print(f"FAIL: CI=true and PyTorch parity cannot run: torch and numpy are missing ({exc}); "
              f"interpreter {sys.executable} (scripts/test.sh installs Debian's python3-torch)")
        sys.exit(1)
    print(f"SKIP: PyTorch parity needs torch and numpy ({exc}); interpreter {sys.executable}")
    sys.exit(SKIP)

# ---- the reference networks (written out here) ---------------------------------------------------
def scaled(width, m):
    """round(width * m), halves up, at least 1."""
    return max(1, int(width * m + 0.5))


class LambdaLayer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, option):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                lo = (planes - in_planes) // 2  # akamaster's planes // 4 when planes = 2 in_planes
                hi = planes - in_planes - lo
                self.shortcut = LambdaLayer(
                    lambda x: F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, lo, hi), "constant", 0)
                )
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    """CIFAR ResNet of depth 6n+2 for num_blocks = [n, n, n], at a width multiplier."""

    def __init__(self, num_blocks, num_classes, option, width=1.0):
        super().__init__()
        w16, w32, w64 = scaled(16, width), scaled(32, width), scaled(64, width)
        self.in_planes = w16
        self.conv1 = nn.Conv2d(3, w16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w16)
        self.layer1 = self._make_layer(w16, num_blocks[0], 1, option)
        self.layer2 = self._make_layer(w32, num_blocks[1], 2, option)
        self.layer3 = self._make_layer(w64, num_blocks[2], 2, option)
        self.linear = nn.Linear(w64, num_classes)

    def _make_layer(self, planes, n, stride, option):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s, option))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


# Simonyan & Zisserman 2015, table 1: columns A (11), B (13), D (16), E (19); "M" a max pooling.
VGG_CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG with batch norm for 32x32 inputs: five pooled groups down to 1x1, one Linear."""

    def __init__(self, config, num_classes, width=1.0):
        super().__init__()
        layers, channels = [], 3
        for v in VGG_CONFIGS[config]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = scaled(v, width)
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(out),
                           nn.ReLU(inplace=True)]
                channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(out, 1))


def build_model(model, classes, width=1.0, shortcut="A"):
    """The reference net for one of netsplit's model names (resnet<6n+2>, vgg11/13/16/19)."""
    m = re.fullmatch(r"resnet(\d+)|vgg(\d+)", model)
    if m and m.group(1) and (int(m.group(1)) - 2) % 6 == 0 and int(m.group(1)) >= 8:
        n = (int(m.group(1)) - 2) // 6
        return ResNet([n, n, n], classes, shortcut, width)
    if m and m.group(2) and int(m.group(2)) in VGG_CONFIGS:
        return VGG(int(m.group(2)), classes, width)
    raise ValueError(f"unknown model '{model}'")


def torch_name(netsplit_name):
    """netsplit's option-B shortcut is named shortcut.conv / shortcut.bn; PyTorch's Sequential
    numbers them shortcut.0 / shortcut.1. Every other name is the same (VGG's included)."""
    return netsplit_name.replace(".shortcut.conv.", ".shortcut.0.").replace(".shortcut.bn.", ".shortcut.1.")


def counts(model, x):
    """(parameters, convolution multiply-adds per image) of `model` on input batch x, the
    latter from forward hooks on every Conv2d; runs one forward (in the model's mode).
    Returns the forward's output too."""
    macs = [0]

    def hook(m, _inp, out):
        kh, kw = m.kernel_size
        macs[0] += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        y = model(x)
    finally:
        for h in handles:
            h.remove()
    return sum(p.numel() for p in model.parameters()), macs[0], y


# ---- comparison ---------------------------------------------------------------------------------
def rel_error(ours, ref):
    ours = np.asarray(ours, dtype=np.float64).reshape(-1)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    if ours.shape != ref.shape:
        return float("inf"), float("inf"), 0.0
    diff = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return diff / max(scale, 1e-30), diff, scale


def check(path, tol=None, verbose=False):
    meta, t = read_safetensors(path)
    model_name = meta.get("model", "resnet20")  # exports before VGG/ResNet56 were ResNet20's
    width = float(meta.get("width", "1"))
    option = meta.get("shortcut", "A")
    scalar = meta["dtype"]
    conv = meta.get("conv", "fastest")
    if tol is not None:
        tols = {"output": tol, "gradient": tol, "running stat": tol}
    elif scalar == "F32":
        tols = {"output": 1e-4, "gradient": 0.25, "running stat": 1e-4}
    else:
        tols = {"output": 1e-9, "gradient": 1e-9, "running stat": 1e-9}
    classes = int(meta["classes"])
    torch.manual_seed(0)
    model = build_model(model_name, classes, width, option).double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.momentum == 0.1 and m.eps == 1e-5

    # Load every parameter and buffer by name; both sides must have exactly the same set.
    state = model.state_dict()
    exported = {k for k in t if not k.startswith(("grad.", "updated.")) and k not in ("input", "labels", "logits", "loss")}
    expected = {k for k in state if not k.endswith("num_batches_tracked")}
    mapped = {torch_name(k): k for k in exported}
    missing, extra = expected - set(mapped), set(mapped) - expected
    if missing or extra:
        print(f"{path}: name mismatch; missing in export: {sorted(missing)}; unknown: {sorted(extra)}")
        return False
    with torch.no_grad():
        for tname, nname in mapped.items():
            src = torch.from_numpy(t[nname].astype(np.float64))
            if tuple(src.shape) != tuple(state[tname].shape):
                print(f"{path}: {nname} has shape {tuple(src.shape)}, torch expects {tuple(state[tname].shape)}")
                return False
            state[tname].copy_(src)

    model.train()
    x = torch.from_numpy(t["input"].astype(np.float64))
    labels = torch.from_numpy(t["labels"].astype(np.int64))
    params_torch, macs_torch, logits = counts(model, x)
    loss = F.cross_entropy(logits, labels)
    model.zero_grad()
    loss.backward()

    rows = [("logits", "output", rel_error(t["logits"], logits.detach().numpy())),
            ("loss", "output", rel_error(t["loss"], [loss.item()]))]
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    for nname in sorted(exported):
        tname = torch_name(nname)
        if tname in params:
            rows.append(("grad." + nname, "gradient", rel_error(t["grad." + nname], params[tname].grad.numpy())))
        elif tname in buffers:
            rows.append(("updated." + nname, "running stat", rel_error(t["updated." + nname], buffers[tname].numpy())))

    # The counts netsplit reports (tests/test_models.cpp pins them) against this definition's.
    params_ns, macs_ns = int(meta.get("parameters", -1)), int(meta.get("conv_mult_adds", -1))
    counts_ok = params_ns == params_torch and macs_ns == macs_torch
    ok = counts_ok and all(r[2][0] <= tols[r[1]] for r in rows)
    shown = model_name + (f" x{width:g}" if width != 1 else "") + (f" shortcut {option}" if "shortcut" in meta else "")
    print(f"{os.path.basename(path)}: {shown}, {scalar}, conv {conv}, batch {meta['batch']}, "
          f"loss netsplit {float(t['loss'][0]):.10f} torch {loss.item():.10f}")
    print(f"  counts        parameters {params_ns} (torch {params_torch}), conv multiply-adds per image "
          f"{macs_ns} (torch {macs_torch}){'' if counts_ok else '  <-- FAIL (missing or different)'}")
    for kind in ("output", "gradient", "running stat"):
        sel = [r for r in rows if r[1] == kind]
        worst = max(sel, key=lambda r: r[2][0])
        print(f"  {kind:13s} {len(sel):3d} tensors, worst rel {worst[2][0]:.3e}  ({worst[0]}), "
              f"tolerance {tols[kind]:g}")
    if verbose or not ok:
        print(f"  {'tensor':48s} {'max|torch|':>11s} {'max|diff|':>11s} {'rel':>10s}")
        for name, kind, (rel, diff, scale) in rows:
            flag = "" if rel <= tols[kind] else "  <-- FAIL"
            print(f"  {name:48s} {scale:11.4e} {diff:11.4e} {rel:10.3e}{flag}")
    print("  " + ("PASS" if ok else "FAIL"))
    return ok


def check_pinned(path):
    """Every `{ <model><cpu, classes[, scalar, shortcut]> n[(width_multiplier{m})]; expect_counts(n,
    P, M); }` line of tests/test_models.cpp against the PyTorch definition's counts."""
    pattern = re.compile(
        r"\{\s*(resnet\d+|vgg\d+)<cpu,\s*(\d+)(?:,\s*\w+)?(?:,\s*shortcut_([ab]))?>\s*n"
        r"(?:\(width_multiplier\{([0-9.]+)\}\))?;\s*expect_counts\(n,\s*([0-9+\- ]+),\s*([0-9+\- ]+)\);\s*\}")
    evaluate = lambda e: sum(int(a) * (-1 if sign == "-" else 1) for sign, a in re.findall(r"([+-]?)\s*(\d+)", e))
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    found = pattern.findall(text)
    calls = text.count("expect_counts(n,")
    if not found or len(found) != calls:
        print(f"{path}: {calls} expect_counts calls, {len(found)} in the form this check reads")
        return False
    ok = True
    for model, classes, shortcut, width, p_text, m_text in found:
        net = build_model(model, int(classes), float(width or 1), (shortcut or "a").upper()).eval()
        with torch.no_grad():
            p, m, _ = counts(net, torch.zeros(1, 3, 32, 32))
        pinned = (evaluate(p_text), evaluate(m_text))
        good = pinned == (p, m)
        ok = ok and good
        label = f"{model} classes={classes}" + (f" shortcut {shortcut.upper()}" if shortcut else "") + (
            f" x{width}" if width else "")
        print(f"  pinned {label:36s} parameters {pinned[0]:9d} (torch {p:9d}), conv multiply-adds "
              f"{pinned[1]:10d} (torch {m:10d})  {'ok' if good else '<-- FAIL'}")
    print(f"{os.path.basename(path)}: {len(found)} pinned counts " + ("agree" if ok else "DISAGREE"))
    return ok


# The exports the test runs: (model, width, dtype, conv algorithm, shortcut, batch). ResNet20 with
# every convolution algorithm in float64; ResNet56 (no shapes ResNet20 lacks, but 27 blocks
# deep) with both shortcuts in float64 and option A in float32 (option B's float32 gradients
# measured 6.3e-2 against the 0.1 the gross-error bound then was: 27 blocks of ReLU kinks, too
# close to hold on other machines' rounding); VGG11: x0.25 and full width in float32 with the
# default algorithm, x0.125 (8..64 channels: every map down to 2x2 at the least cost) in
# float64 with each algorithm forced, so F(4x4) and F(2x2) tiles that overhang 2x2 and
# 4x4 maps are checked at 1e-9.
RUNS = (
    [("resnet20", 1.0, "f32", "fastest", sc, 16) for sc in "ab"]
    + [("resnet20", 1.0, "f64", conv, sc, 16) for conv in ("direct", "winograd_2x2", "winograd_4x4") for sc in "ab"]
    + [("resnet56", 1.0, "f32", "fastest", "a", 16)]
    + [("resnet56", 1.0, "f64", "direct", sc, 16) for sc in "ab"]
    + [("vgg11", 0.25, "f32", "fastest", "a", 16), ("vgg11", 1.0, "f32", "fastest", "a", 16)]
    + [("vgg11", 0.125, "f64", conv, "a", 16) for conv in ("direct", "winograd_2x2", "winograd_4x4")]
)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="exports written by parity_export")
    ap.add_argument("--exporter", help="path of parity_export; runs it for every run in RUNS")
    ap.add_argument("--workdir", default=".", help="where --exporter writes its files")
    ap.add_argument("--models", help="comma-separated models of RUNS to export (default: all)")
    ap.add_argument("--pinned", help="tests/test_models.cpp: check its pinned parameter and MAC counts")
    ap.add_argument("--tol", type=float, help="override the relative tolerance")
    ap.add_argument("--verbose", action="store_true", help="print every tensor")
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = list(args.files)
    ok = True
    if args.pinned:
        try:
            ok = check_pinned(args.pinned)
        except (OSError, ValueError) as exc:
            print(f"{args.pinned}: cannot check: {exc}")
            return 2
    if args.exporter:
        wanted = set(args.models.split(",")) if args.models else {r[0] for r in RUNS}
        unknown = wanted - {r[0] for r in RUNS}
        if unknown:
            ap.error(f"--models: no runs for {sorted(unknown)}; known: {sorted({r[0] for r in RUNS})}")
        os.makedirs(args.workdir, exist_ok=True)
        for model, width, dt, conv, sc, batch in RUNS:
            if model not in wanted:
                continue
            out = os.path.join(args.workdir, f"parity_{model}x{width:g}_{dt}_{conv}_{sc}.safetensors")
            t0 = time.perf_counter()
            r = subprocess.run([args.exporter, out, "--model", model, "--width", f"{width:g}", "--dtype", dt,
                                "--shortcut", sc, "--conv", conv, "--batch", str(batch)])
            if r.returncode != 0:
                print(f"parity_export failed with status {r.returncode}")
                return 2
            print(f"  (export took {time.perf_counter() - t0:.1f} s)")
            files.append(out)
    if not files and not args.pinned:
        ap.error("give export files, --exporter or --pinned")
    for f in files:
        try:
            t0 = time.perf_counter()
            ok = check(f, args.tol, args.verbose) and ok
            print(f"  (check took {time.perf_counter() - t0:.1f} s)")
        except (OSError, ValueError, KeyError) as exc:
            print(f"{f}: cannot check: {exc}")
            return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
