#!/usr/bin/env python3
"""netsplit checkpoints in PyTorch: rebuild any network netsplit trained or grew, export it.

    import netsplit_torch
    model = netsplit_torch.load("runs/x/derived/resnet20_iter_3910.safetensors")  # eval mode
    logits = model(netsplit_torch.normalize(images_uint8, model.netsplit_normalization))

Command line (exit status 0 done, 2 a bad checkpoint or usage, 1 any other failure):

    python3 python/netsplit_torch.py info CKPT
    python3 python/netsplit_torch.py export CKPT [--onnx OUT.onnx] [--state-dict OUT.pt]

`load` reads the checkpoint itself (safetensors: json + numpy; netsplit's content checksum
"netsplit.crc32" is verified, so a damaged file is refused) and builds the network its
"netsplit.architecture" names -- ResNet 6n+2 with option-A or option-B shortcuts, VGG
11/13/16/19 with batch norm -- at the widths its tensors have. A grown network (filters split
by netsplit) is rebuilt exactly: every convolution, batch norm and the classifier take their
widths from the checkpoint's tensors, and an option-A shortcut's channel map (after splits a
general scatter: output channel dst += coef * input channel src) is a fixed 1x1 convolution
whose weight is a buffer, built from "netsplit.channel_maps". Parameter and buffer names are
netsplit's (which are PyTorch's: conv1.weight, layer2.0.bn1.running_mean, features.3.weight,
...), so the module's state_dict is the checkpoint's param/ and buffer/ tensors.

Semantics are netsplit's phase::eval: batch norm with the running statistics and eps 1e-5,
ReLU, 2x2 max pooling, global average pooling, one linear layer. The input is a float batch
[N, 3, 32, 32] normalised with the training set's per-channel statistics, which the trainer
records as "netsplit.normalization" (`normalize` applies them to 8-bit images as torchvision's
ToTensor + Normalize do). The optimizer's momentum and the trainer's state are not loaded.

Needs Debian's python3-torch and python3-numpy; the ONNX export needs python3-onnx for its
check (torch.onnx.export writes the file; onnx.checker validates it).
"""

import argparse
import json
import re
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-5
DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1"}


class CheckpointError(ValueError):
    """The file is not a netsplit checkpoint this module can rebuild (damaged, truncated,
    another model, missing tensors); the message names the file and the reason."""


# ---- safetensors with netsplit's checksum ----------------------------------------------------
def read_safetensors(path):
    """(metadata dict, {name: numpy array}) of a safetensors file; raises CheckpointError on a
    malformed file or, when the file carries "netsplit.crc32", a checksum mismatch."""
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(blob) < 8:
        raise CheckpointError(f"{path}: shorter than 8 bytes: not a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise CheckpointError(f"{path}: header length {n} runs past the end of the file (truncated?)")
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: the header is not valid JSON ({exc}): damaged file") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header is not a JSON object")
    buf = memoryview(blob)[8 + n :]
    meta = header.pop("__metadata__", {})
    tensors, spans = {}, []
    for name, e in header.items():
        try:
            b, end = e["data_offsets"]
            dt = np.dtype(DTYPES[e["dtype"]])
            shape = [int(d) for d in e["shape"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: bad header entry for '{name}'") from exc
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if end > len(buf):
            raise CheckpointError(f"{path}: tensor '{name}' runs past the end of the file (truncated?)")
        if end - b != count * dt.itemsize or b < 0:
            raise CheckpointError(f"{path}: bad data_offsets for '{name}'")
        raw = bytes(buf[b:end])
        tensors[name] = (e["dtype"], np.frombuffer(raw, dtype=dt).reshape(shape).copy(), raw)
        spans.append((b, end))
    spans.sort()
    pos = 0
    for b, end in spans:
        if b != pos:
            raise CheckpointError(f"{path}: data buffer has a hole or overlap at byte {pos}")
        pos = end
    if pos != len(buf):
        raise CheckpointError(f"{path}: trailing bytes in the data buffer")
    if "netsplit.crc32" in meta:
        _verify_checksum(path, meta, tensors)
    return meta, {k: v[1] for k, v in tensors.items()}


def _verify_checksum(path, meta, tensors):
    """netsplit's content checksum (io/safetensors.hpp): CRC-32 over the length-prefixed
    metadata entries (sorted by key, the checksum itself excluded), then the tensors sorted by
    name (name, dtype, rank, shape, byte count, bytes)."""
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
        raise CheckpointError(f"{path}: checksum mismatch (content {crc:08x}, recorded {meta['netsplit.crc32']}): "
                              f"the file is damaged")


# ---- the modules -------------------------------------------------------------------------------
class ChannelScatter(nn.Module):
    """netsplit's generalised option-A shortcut: subsample by the stride, then output channel
    dst[k] += coef[k] * input channel src[k] -- a fixed 1x1 convolution (weight a buffer, not a
    parameter), which ONNX exports as a Conv node."""

    def __init__(self, in_channels, out_channels, stride, src, dst, coef, dtype):
        super().__init__()
        self.stride = stride
        w = torch.zeros(out_channels, in_channels, 1, 1, dtype=torch.float64)
        for s_, d_, c_ in zip(src, dst, coef):
            w[d_, s_, 0, 0] += c_
        self.register_buffer("scatter_weight", w.to(dtype))

    def forward(self, x):
        return F.conv2d(x, self.scatter_weight, stride=self.stride)


class ShortcutB(nn.Module):
    """Option B: 1x1 convolution with the stride, batch norm (names shortcut.conv, shortcut.bn)."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x):
        return self.bn(self.conv(x))


class Block(nn.Module):
    def __init__(self, in_channels, mid, out_channels, stride, shortcut):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.conv2 = nn.Conv2d(mid, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet 6n+2 at the widths of a (possibly grown) checkpoint."""

    def __init__(self, depth, classes, shortcut, shapes, maps, dtype):
        super().__init__()
        n = (depth - 2) // 6
        width = lambda name: shapes[f"param/{name}.weight"][0]
        self.conv1 = nn.Conv2d(3, width("conv1"), 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width("conv1"), eps=BN_EPS)
        stream = width("conv1")
        for stage in (1, 2, 3):
            blocks = []
            for b in range(n):
                name = f"layer{stage}.{b}"
                stride = 2 if stage > 1 and b == 0 else 1
                mid, out = width(f"{name}.conv1"), width(f"{name}.conv2")
                sc = None
                if shortcut == "B" and f"param/{name}.shortcut.conv.weight" in shapes:
                    sc = ShortcutB(stream, out, stride)
                elif f"{name}.shortcut" in maps:
                    m = maps[f"{name}.shortcut"]
                    if (m["in"], m["out"], m["stride"]) != (stream, out, stride):
                        raise CheckpointError(f"channel map of {name}.shortcut is {m['in']} -> {m['out']} stride "
                                              f"{m['stride']}, the tensors give {stream} -> {out} stride {stride}")
                    sc = ChannelScatter(stream, out, stride, m["src"], m["dst"], m["coef"], dtype)
                elif stream != out or stride != 1:
                    raise CheckpointError(f"{name} changes {stream} -> {out} channels (stride {stride}) but the "
                                          f"checkpoint has no shortcut for it")
                blocks.append(Block(stream, mid, out, stride, sc))
                stream = out
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.linear = nn.Linear(stream, classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


# Simonyan & Zisserman 2015, table 1: columns A (11), B (13), D (16), E (19); "M" a 2x2 max pooling.
VGG_LAYOUTS = {
    11: [1, "M", 1, "M", 2, "M", 2, "M", 2, "M"],
    13: [2, "M", 2, "M", 2, "M", 2, "M", 2, "M"],
    16: [2, "M", 2, "M", 3, "M", 3, "M", 3, "M"],
    19: [2, "M", 2, "M", 4, "M", 4, "M", 4, "M"],
}


class VGG(nn.Module):
    """VGG with batch norm for 32x32 inputs (netsplit's models/vgg.hpp): `features` numbered as
    torchvision numbers them (conv i, BN i+1, ReLU i+2, pooling), global average pooling over
    the final 1x1 map, one Linear `classifier`; widths from the checkpoint."""

    def __init__(self, config, classes, shapes):
        super().__init__()
        layers, channels = [], 3
        for item in VGG_LAYOUTS[config]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            for _ in range(item):
                key = f"param/features.{len(layers)}.weight"
                if key not in shapes:
                    raise CheckpointError(f"a vgg{config} checkpoint must hold '{key}'")
                out = shapes[key][0]
                layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out, eps=BN_EPS),
                           nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x):
        out = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.classifier(out)


# ---- loading -----------------------------------------------------------------------------------
def parse_architecture(text):
    """'resnet20 classes=10 shortcut=A scalar=f32 width=0.5' -> dict(model=..., depth=..., ...)."""
    words = text.split()
    if not words:
        raise CheckpointError("empty architecture")
    fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    m = re.fullmatch(r"(resnet|vgg)(\d+)", words[0])
    if not m:
        raise CheckpointError(f"architecture '{text}' names no model this module knows (resnet<6n+2>, vgg11/13/16/19)")
    family, depth = m.group(1), int(m.group(2))
    if family == "resnet" and (depth < 8 or (depth - 2) % 6):
        raise CheckpointError(f"architecture '{text}': a CIFAR ResNet has depth 6n+2")
    if family == "vgg" and depth not in VGG_LAYOUTS:
        raise CheckpointError(f"architecture '{text}': VGG comes in 11, 13, 16 and 19")
    try:
        classes = int(fields["classes"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"architecture '{text}' has no classes=N") from exc
    scalar = fields.get("scalar", "f32")
    if scalar not in ("f32", "f64"):
        raise CheckpointError(f"architecture '{text}': unknown scalar type '{scalar}'")
    return {"family": family, "depth": depth, "classes": classes, "shortcut": fields.get("shortcut", "A"),
            "dtype": torch.float64 if scalar == "f64" else torch.float32, "model": words[0]}


def _channel_maps(meta, arch, shapes, path):
    """The option-A shortcut maps by layer name; for files written before netsplit recorded
    them, the unsplit padding map (input c -> output c + (out - in) / 2) where no split
    history exists, and an error for a grown one."""
    if "netsplit.channel_maps" in meta:
        try:
            return json.loads(meta["netsplit.channel_maps"])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: netsplit.channel_maps is not valid JSON") from exc
    if arch["family"] != "resnet" or arch["shortcut"] != "A":
        return {}
    if meta.get("netsplit.splits", "").strip():
        raise CheckpointError(f"{path}: a grown option-A ResNet written before netsplit recorded its shortcut channel "
                              f"maps; load it with netsplit and save it again to export it")
    maps, n = {}, (arch["depth"] - 2) // 6
    stream = shapes["param/conv1.weight"][0]
    for stage in (1, 2, 3):
        for b in range(n):
            out = shapes[f"param/layer{stage}.{b}.conv2.weight"][0]
            if stream != out:
                stride = 2 if b == 0 else 1
                maps[f"layer{stage}.{b}.shortcut"] = {"in": stream, "out": out, "stride": stride,
                                                      "src": list(range(stream)),
                                                      "dst": [c + (out - stream) // 2 for c in range(stream)],
                                                      "coef": [1.0] * stream}
            stream = out
    return maps


def load(path, train=False):
    """The nn.Module a netsplit checkpoint describes, with its parameters and batch-norm
    statistics, in eval mode (train=True: train mode). Attributes: netsplit_architecture
    (the file's string), netsplit_normalization ({"mean": [...], "std": [...]} or None for
    files written before the trainer recorded it), netsplit_iteration (or None)."""
    meta, tensors = read_safetensors(path)
    if meta.get("netsplit.format") != "netsplit-checkpoint-1":
        raise CheckpointError(f"{path}: not a netsplit checkpoint (netsplit.format is "
                              f"{meta.get('netsplit.format', 'missing')!r})")
    if "netsplit.architecture" not in meta:
        raise CheckpointError(f"{path}: no netsplit.architecture in the metadata")
    try:
        arch = parse_architecture(meta["netsplit.architecture"])
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    try:
        if arch["family"] == "resnet":
            model = ResNet(arch["depth"], arch["classes"], arch["shortcut"], shapes,
                           _channel_maps(meta, arch, shapes, path), arch["dtype"])
        else:
            model = VGG(arch["depth"], arch["classes"], shapes)
    except KeyError as exc:
        raise CheckpointError(f"{path}: lacks tensor {exc} that a {arch['model']} needs") from None
    model = model.to(arch["dtype"])
    state = {}
    expected = model.state_dict()
    for name, value in expected.items():
        if name.endswith(("num_batches_tracked", "scatter_weight")):
            # PyTorch's BN counter (netsplit has none: momentum is fixed at 0.1) and the
            # option-A maps, built from netsplit.channel_maps
            state[name] = value
            continue
        kind = "buffer" if name.endswith(("running_mean", "running_var")) else "param"
        key = f"{kind}/{name}"
        if key not in tensors:
            raise CheckpointError(f"{path}: lacks tensor '{key}' that a {arch['model']} needs")
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{path}: tensor '{key}' has shape {list(tensors[key].shape)}, the network built "
                                  f"from the file's other tensors needs {list(value.shape)}")
        state[name] = torch.from_numpy(tensors[key]).to(arch["dtype"])
    unused = sorted(k for k in tensors if k.split("/", 1)[0] in ("param", "buffer")
                    and k.split("/", 1)[1] not in state)
    if unused:
        raise CheckpointError(f"{path}: tensors {unused[:4]} have no place in a {arch['model']} "
                              f"({len(unused)} unused)")
    model.load_state_dict(state)
    model.netsplit_architecture = meta["netsplit.architecture"]
    model.netsplit_normalization = json.loads(meta["netsplit.normalization"]) if "netsplit.normalization" in meta else None
    model.netsplit_iteration = int(meta["netsplit.iteration"]) if "netsplit.iteration" in meta else None
    return model.train(train)


def normalize(images, normalization):
    """uint8 images [N, 3, 32, 32] (or [3, 32, 32]) -> the float input netsplit trained on:
    (v / 255 - mean[c]) / std[c], in float32 as torchvision's ToTensor + Normalize compute it."""
    x = torch.as_tensor(np.asarray(images)).to(torch.float32).div(255)
    mean = torch.tensor(normalization["mean"], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(normalization["std"], dtype=torch.float32).view(3, 1, 1)
    return (x - mean) / std


def export_onnx(model, out, opset=13):
    """Writes `model` as ONNX (input "image" [N, 3, 32, 32], output "logits", N dynamic) and
    validates the file with onnx.checker."""
    import onnx  # Debian's python3-onnx

    dtype = next(model.parameters()).dtype
    torch.onnx.export(model.eval(), torch.zeros(1, 3, 32, 32, dtype=dtype), out, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=opset)
    onnx.checker.check_model(onnx.load(out))


def _summary(model):
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    params = sum(p.numel() for p in model.parameters())
    return (f"{model.netsplit_architecture}: {params} parameters, {len(convs)} convolutions, "
            f"iteration {model.netsplit_iteration}, normalisation {model.netsplit_normalization}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="exit status: 0 done, 2 bad checkpoint or usage, 1 other failure")
    sub = ap.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print what the checkpoint holds")
    info.add_argument("checkpoint")
    ex = sub.add_parser("export", help="write the network as ONNX and/or a PyTorch state_dict")
    ex.add_argument("checkpoint")
    ex.add_argument("--onnx", metavar="OUT.onnx", help="ONNX file (validated with onnx.checker)")
    ex.add_argument("--state-dict", metavar="OUT.pt", help="torch.save of the module's state_dict")
    args = ap.parse_args(argv)
    if args.command == "export" and not (args.onnx or args.state_dict):
        ap.error("export: give --onnx OUT.onnx and/or --state-dict OUT.pt")
    try:
        model = load(args.checkpoint)
    except CheckpointError as exc:
        print(f"netsplit_torch: {exc}", file=sys.stderr)
        return 2
    print(_summary(model))
    if args.command == "export":
        if args.state_dict:
            torch.save(model.state_dict(), args.state_dict)
            print(f"state_dict -> {args.state_dict}")
        if args.onnx:
            export_onnx(model, args.onnx)
            print(f"ONNX -> {args.onnx} (onnx.checker passed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
