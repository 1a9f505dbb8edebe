#!/usr/bin/env python3
"""PyTorch parity check of netsplit's ResNet20.

Replays one training step exported by tests/parity_export on an independent PyTorch ResNet20
(the standard CIFAR definition of akamaster/pytorch_resnet_cifar10: 3x3 convs without bias,
BatchNorm, option-A shortcut F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes//4, planes//4)) or
option-B 1x1 conv + BatchNorm, global average pooling, linear) and compares:
  logits, loss, every parameter gradient, and the BatchNorm running statistics after the
  train-mode forward (momentum 0.1, eps 1e-5, unbiased running variance).

The reference runs in float64 from the exported values (float32 weights widen exactly), so
the measured error is netsplit's own rounding plus any formula difference. Error measure per
tensor:  rel = max_i |netsplit_i - torch_i| / max(max_i |torch_i|, 1e-30)
i.e. the largest absolute difference relative to the tensor's largest reference magnitude
(element-wise relative error is meaningless for gradients near zero).
Pass: float64 exports rel <= 1e-9 for every tensor; float32 exports rel <= 1e-4 for the
outputs and running statistics and <= 0.1 for gradients (--tol overrides all). Why float32
gradients are held only to gross errors: a training step's gradient is discontinuous where a
ReLU input crosses zero, and with ~3 million ReLU inputs per batch-16 step some lie within
float rounding of zero. Measured: scaling the direct engine's conv weights by (1 + 1e-7 * noise)
changes logits by 3e-7 but some weight gradients by 1.4e-2 and 3.0e-2 (one flipped ReLU
moves a weight gradient whose batch-norm-projected sum nearly cancels); F(4x4, 3x3)'s
rounding (about 1e-6) flips such units too. The float64 runs, whose rounding is far from
any kink, check every gradient formula at 1e-9 with each convolution algorithm
(direct, winograd_2x2, winograd_4x4), and tests/test_conv_kernels checks each float
convolution against a double reference.

Usage:
  pytorch_parity.py EXPORT.safetensors [...]          check existing exports
  pytorch_parity.py --exporter PATH --workdir DIR      run parity_export for shortcut A/B: f32 with
                                                       the default conv algorithm, f64 with each
                                                       of direct, winograd_2x2, winograd_4x4
Exit status: 0 all agree, 1 disagreement, 2 usage or file error, 77 torch/numpy unavailable.
The file is read with a minimal safetensors reader here (json + numpy), which also checks
netsplit's "netsplit.crc32" content checksum, re-implemented independently with zlib.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import zlib

SKIP = 77

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - depends on the machine
    print(f"SKIP: PyTorch parity needs torch and numpy ({exc}); interpreter {sys.executable}")
    sys.exit(SKIP)

DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1"}


# ---- minimal safetensors reader ---------------------------------------------------------------
def read_safetensors(path):
    with open(path, "rb") as fh:
        blob = fh.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError(f"{path}: header length {n} runs past the end")
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    buf = memoryview(blob)[8 + n :]
    meta = header.pop("__metadata__", {})
    tensors, spans = {}, []
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = np.dtype(DTYPES[e["dtype"]])
        count = int(np.prod(e["shape"], dtype=np.int64)) if e["shape"] else 1
        if end - b != count * dt.itemsize or end > len(buf):
            raise ValueError(f"{path}: bad data_offsets for {name}")
        arr = np.frombuffer(buf[b:end], dtype=dt).reshape(e["shape"]).copy()
        tensors[name] = (e["dtype"], arr, bytes(buf[b:end]))
        spans.append((b, end))
    spans.sort()
    pos = 0
    for b, end in spans:
        if b != pos:
            raise ValueError(f"{path}: data buffer has a hole or overlap at {pos}")
        pos = end
    if pos != len(buf):
        raise ValueError(f"{path}: trailing bytes in the data buffer")
    if "netsplit.crc32" in meta:
        verify_checksum(path, meta, tensors)
    return meta, {k: v[1] for k, v in tensors.items()}


def verify_checksum(path, meta, tensors):
    """netsplit's content checksum: CRC-32 of length-prefixed metadata and tensors, sorted."""
    u64 = lambda v: struct.pack("<Q", v)
    s = lambda t: u64(len(t.encode())) + t.encode()
    others = sorted((k for k in meta if k != "netsplit.crc32"), key=lambda k: k.encode())
    crc = zlib.crc32(u64(len(others)))
    for k in others:
        crc = zlib.crc32(s(k) + s(meta[k]), crc)
    crc = zlib.crc32(u64(len(tensors)), crc)
    for name in sorted(tensors, key=lambda k: k.encode()):
        dtype, arr, raw = tensors[name]
        part = s(name) + s(dtype) + u64(arr.ndim) + b"".join(struct.pack("<q", d) for d in arr.shape)
        crc = zlib.crc32(part + u64(len(raw)) + raw, crc)
    if f"{crc:08x}" != meta["netsplit.crc32"]:
        raise ValueError(f"{path}: checksum mismatch ({crc:08x} vs {meta['netsplit.crc32']})")


# ---- the reference network (akamaster/pytorch_resnet_cifar10, written out here) -----------------
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
                self.shortcut = LambdaLayer(
                    lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
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
    def __init__(self, num_blocks, num_classes, option):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks[0], 1, option)
        self.layer2 = self._make_layer(32, num_blocks[1], 2, option)
        self.layer3 = self._make_layer(64, num_blocks[2], 2, option)
        self.linear = nn.Linear(64, num_classes)

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


def torch_name(netsplit_name):
    """netsplit's option-B shortcut is named shortcut.conv / shortcut.bn; PyTorch's Sequential
    numbers them shortcut.0 / shortcut.1. Every other name is the same."""
    return netsplit_name.replace(".shortcut.conv.", ".shortcut.0.").replace(".shortcut.bn.", ".shortcut.1.")


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
    option = meta["shortcut"]
    scalar = meta["dtype"]
    conv = meta.get("conv", "fastest")
    if tol is not None:
        tols = {"output": tol, "gradient": tol, "running stat": tol}
    elif scalar == "F32":
        tols = {"output": 1e-4, "gradient": 1e-1, "running stat": 1e-4}
    else:
        tols = {"output": 1e-9, "gradient": 1e-9, "running stat": 1e-9}
    classes = int(meta["classes"])
    torch.manual_seed(0)
    model = ResNet([3, 3, 3], classes, option).double()
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
    logits = model(x)
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

    ok = all(r[2][0] <= tols[r[1]] for r in rows)
    print(f"{os.path.basename(path)}: resnet20 shortcut {option}, {scalar}, conv {conv}, batch {meta['batch']}, "
          f"loss netsplit {float(t['loss'][0]):.10f} torch {loss.item():.10f}")
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="exports written by parity_export")
    ap.add_argument("--exporter", help="path of parity_export; runs it for f32/f64 x shortcut A/B")
    ap.add_argument("--workdir", default=".", help="where --exporter writes its files")
    ap.add_argument("--tol", type=float, help="override the relative tolerance")
    ap.add_argument("--verbose", action="store_true", help="print every tensor")
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = list(args.files)
    if args.exporter:
        os.makedirs(args.workdir, exist_ok=True)
        runs = [("f32", "fastest"), ("f64", "direct"), ("f64", "winograd_2x2"), ("f64", "winograd_4x4")]
        for dt, conv in runs:
            for sc in ("a", "b"):
                out = os.path.join(args.workdir, f"parity_{dt}_{conv}_{sc}.safetensors")
                r = subprocess.run([args.exporter, out, "--dtype", dt, "--shortcut", sc, "--conv", conv])
                if r.returncode != 0:
                    print(f"parity_export failed with status {r.returncode}")
                    return 2
                files.append(out)
    if not files:
        ap.error("give export files or --exporter")
    ok = True
    for f in files:
        try:
            ok = check(f, args.tol, args.verbose) and ok
        except (OSError, ValueError, KeyError) as exc:
            print(f"{f}: cannot check: {exc}")
            return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
