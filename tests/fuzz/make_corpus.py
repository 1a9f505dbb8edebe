#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/ (committed; rerun to regenerate).

Each seed is small and in the input layout its target documents (see fuzz_<target>.cpp):
valid inputs first, so the fuzzer starts from files the readers accept, then a few typical
defects. Usage: python3 tests/fuzz/make_corpus.py
"""
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def image(seed):
    return bytes((seed * 31 + i * 7) % 256 for i in range(3072))


def u16(n):
    return struct.pack("<H", n)


# ---- CIFAR-10: flags, u16 meta length, meta, data ---------------------------------------
def cifar10(flags, meta, body):
    return bytes([flags]) + u16(len(meta)) + meta + body


meta10 = ("\n".join(CIFAR10_NAMES) + "\n\n").encode()
rec10 = lambda label, seed: bytes([label]) + image(seed)
put("cifar10", "train_1_record", cifar10(0x00, meta10, rec10(3, 1)))
put("cifar10", "test_2_records", cifar10(0x01 | (1 << 1), meta10, rec10(0, 2) + rec10(9, 3)))
put("cifar10", "train_chunked_5_files", cifar10(0x40, meta10, b"".join(rec10(i, i) for i in range(5))))
put("cifar10", "crlf_names", cifar10(0x01, ("\r\n".join(CIFAR10_NAMES) + "\r\n").encode(), rec10(5, 4)))
put("cifar10", "label_out_of_range", cifar10(0x01, meta10, rec10(10, 5)))
put("cifar10", "truncated", cifar10(0x01, meta10, rec10(1, 6)[:3000]))
put("cifar10", "nine_names", cifar10(0x01, ("\n".join(CIFAR10_NAMES[:9])).encode(), rec10(1, 7)))

# ---- CIFAR-100: flags, u16 fine length, u16 coarse length, fine, coarse, data ----------
def cifar100(flags, fine, coarse, body):
    return bytes([flags]) + u16(len(fine)) + u16(len(coarse)) + fine + coarse + body


fine = ("\n".join("fine%02d" % i for i in range(100)) + "\n").encode()
coarse = ("\n".join("coarse%02d" % i for i in range(20)) + "\n").encode()
rec100 = lambda c, f, seed: bytes([c, f]) + image(seed)
put("cifar100", "train_1_record", cifar100(0x00, fine, coarse, rec100(4, 40, 1)))
put("cifar100", "test_2_records", cifar100(0x01 | (1 << 1), fine, coarse, rec100(0, 0, 2) + rec100(19, 99, 3)))
put("cifar100", "fine_label_out_of_range", cifar100(0x01, fine, coarse, rec100(1, 100, 4)))
put("cifar100", "coarse_label_out_of_range", cifar100(0x01, fine, coarse, rec100(20, 1, 5)))
put("cifar100", "official_count_required", cifar100(0x81, fine, coarse, rec100(1, 1, 6)))
put("cifar100", "short_name_list", cifar100(0x01, fine[: len(fine) // 2], coarse, rec100(1, 1, 7)))


# ---- safetensors: whole files -----------------------------------------------------------
def crc_fields(metadata, tensors):
    """netsplit's content checksum (io::detail::content_checksum), see safetensors.hpp."""
    out = bytearray()
    s = lambda b: struct.pack("<Q", len(b)) + b
    meta = {k: v for k, v in metadata.items() if k != "netsplit.crc32"}
    out += struct.pack("<Q", len(meta))
    for k in sorted(meta):
        out += s(k.encode()) + s(meta[k].encode())
    out += struct.pack("<Q", len(tensors))
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        out += s(name.encode()) + s(dtype.encode()) + struct.pack("<Q", len(shape))
        out += b"".join(struct.pack("<q", d) for d in shape) + struct.pack("<Q", len(data)) + data
    return "%08x" % (zlib.crc32(bytes(out)) & 0xFFFFFFFF)


def safetensors(metadata, tensors, checksum=True, pad=True):
    meta = dict(metadata)
    if checksum:
        meta["netsplit.crc32"] = crc_fields(metadata, tensors)
    header, buf = {}, b""
    if meta:
        header["__metadata__"] = meta
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(buf), len(buf) + len(data)]}
        buf += data
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + buf


f32 = lambda *v: struct.pack("<%df" % len(v), *v)
checkpoint_like = {
    "param/conv1.weight": ("F32", [2, 1, 1, 2], f32(0.5, -1.0, 2.0, 0.25)),
    "buffer/bn1.running_var": ("F32", [2], f32(1.0, 1.0)),
    "momentum/conv1.weight": ("F32", [2, 1, 1, 2], f32(0, 0, 0, 0)),
}
put("safetensors", "checkpoint_like",
    safetensors({"netsplit.format": "netsplit-checkpoint-1", "netsplit.iteration": "3",
                 "netsplit.architecture": "resnet20 classes=10 shortcut=A scalar=f32"}, checkpoint_like))
put("safetensors", "every_dtype", safetensors({"k": "v"}, {
    "a": ("F64", [2], struct.pack("<2d", 1.5, float("inf"))),
    "b": ("I64", [1], struct.pack("<q", -7)),
    "c": ("I32", [3], struct.pack("<3i", 1, 2, 3)),
    "d": ("U8", [2, 2], bytes([0, 1, 2, 255])),
    "e": ("F32", [], f32(float("nan"))),
    "z": ("F32", [0, 3], b""),
}))
put("safetensors", "other_tool_no_checksum",
    safetensors({}, {"w": ("F32", [2], f32(1, 2))}, checksum=False, pad=False))
put("safetensors", "empty_header", struct.pack("<Q", 2) + b"{}")
escaped = b'{"__metadata__":{"n\\u00e9":"\\"q\\"\\n"}, "t\\ud83d\\ude00" : {"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
put("safetensors", "escapes_and_whitespace", struct.pack("<Q", len(escaped)) + escaped + b"\x07")
good = safetensors({"netsplit.iteration": "1"}, {"w": ("F32", [2], f32(1, 2))})
put("safetensors", "truncated", good[:-3])
bad = bytearray(good)
bad[-1] ^= 0x40
put("safetensors", "checksum_mismatch", bytes(bad))
put("safetensors", "header_past_end", struct.pack("<Q", 1000) + b"{}")

# ---- command line: argv[1..] joined by NUL ----------------------------------------------
def argv(*a):
    return b"\0".join(x.encode() for x in a)


put("cli", "smoke_run", argv("--dataset", "cifar10", "--data-dir", "/data", "--preset", "smoke", "--train-limit", "256",
                             "--test-limit", "100", "--batch-size", "32", "--max-iter", "6", "--snapshot-every", "3",
                             "--out-dir", "/tmp/o", "--threads", "2", "--no-progress"))
put("cli", "equals_forms", argv("--preset=seed", "--lr-schedule=multistep 0.1 0.1 32000 48000", "--nesterov=off",
                                "--momentum=0.9", "--weight-decay=1e-4", "--seed=18446744073709551615"))
put("cli", "cosine_and_lists", argv("--lr-schedule", "cosine 0.1 5 30 0", "--snapshot-at", "1,5,10",
                                    "--shortcut", "B", "--resume", "ckpt.safetensors", "--test-interval", "0"))
put("cli", "constant_lr", argv("--lr-schedule", "constant 1e9", "--help"))
put("cli", "study", argv("--mode", "study", "--preset", "smoke", "--tpm", "grad_disagreement", "--tpm-window", "10:20",
                         "--split-at", "20", "--splits", "4", "--strategy", "gradient_direction", "--split-eps", "0.01",
                         "--select", "capped_top_k", "--select-cap", "2", "--split-sites", "inner", "--seeds", "1,2",
                         "--controls", "random,static"))
put("cli", "split_in_train", argv("--preset=smoke", "--split-at=25", "--tpm-window=5:25", "--select=threshold",
                                  "--select-threshold=0.5", "--from-snapshot=s.safetensors", "--tpm-curve=off"))
put("cli", "window_outside_run", argv("--preset", "smoke", "--split-at", "40", "--tpm-window", "30:35"))
put("cli", "bad_flags", argv("--max-iter", "5x", "--bogus"))
put("cli", "missing_value", argv("--preset"))
