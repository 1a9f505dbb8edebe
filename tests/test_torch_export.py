#!/usr/bin/env python3
"""Test of python/netsplit_torch.py: netsplit checkpoints rebuilt in PyTorch and exported.

Runs tests/torch_export_fixture (short seeded runs on the real CIFAR-10: a ResNet20
baseline, ResNet20s grown by splits with option-A and option-B shortcuts, a grown VGG11 x0.25)
and checks, per checkpoint:
  * the module that netsplit_torch.load builds gives netsplit's phase::eval logits on 256
    test images to 1e-5 (max |difference| relative to the largest logit);
  * normalize() applied to the raw test images with the checkpoint's recorded normalisation
    gives netsplit's input bit for bit, and the top-1 class of every one of the 10,000 test
    images is netsplit's;
  * the command `export --onnx --state-dict` exits 0, the ONNX file passes onnx.checker and
    the state_dict is the module's;
and that a damaged or truncated checkpoint is refused by the command with exit 2 and a
message naming the cause.
Usage: test_torch_export.py FIXTURE CIFAR10_DIR WORKDIR
Exit: 0 pass, 1 fail, 77 torch/numpy/onnx missing (a failure when CI=true).
"""

import os
import shutil
import subprocess
import sys
import time

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "..", "python", "netsplit_torch.py")

try:
    import numpy as np
    import onnx  # the export's checker
    import torch

    sys.path.insert(0, os.path.join(HERE, "..", "python"))
    import netsplit_torch
except ImportError as exc:  # pragma: no cover - depends on the machine
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        print(f"FAIL: CI=true and the export test cannot run: {exc}; interpreter {sys.executable} "
              f"(scripts/test.sh installs Debian's python3-torch and python3-onnx)")
        sys.exit(1)
    print(f"SKIP: the export test needs torch, numpy and onnx ({exc}); interpreter {sys.executable}")
    sys.exit(SKIP)

KINDS = ["resnet20_baseline", "resnet20_grown_a", "resnet20_grown_b", "vgg11_grown"]
TOL = 1e-5


def cifar10_test(folder):
    raw = np.fromfile(os.path.join(folder, "test_batch.bin"), dtype=np.uint8).reshape(10000, 3073)
    return raw[:, 1:].reshape(10000, 3, 32, 32), raw[:, 0].astype(np.int64)


def run_tool(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    fixture, data, work = sys.argv[1:]
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, onnx {onnx.__version__}, numpy {np.__version__}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    t0 = time.perf_counter()
    r = subprocess.run([fixture, data, work])
    if r.returncode != 0:
        print(f"FAIL: torch_export_fixture exited {r.returncode}")
        return 1
    print(f"(fixture took {time.perf_counter() - t0:.1f} s)")
    images, labels = cifar10_test(data)
    ok = True

    def expect(cond, what):
        nonlocal ok
        print(("ok    " if cond else "FAIL  ") + what)
        ok = ok and bool(cond)

    for kind in KINDS:
        t0 = time.perf_counter()
        ckpt = os.path.join(work, f"{kind}.safetensors")
        _, exp = netsplit_torch.read_safetensors(os.path.join(work, f"{kind}.expected.safetensors"))
        model = netsplit_torch.load(ckpt)
        norm = model.netsplit_normalization
        expect(norm is not None, f"{kind}: the checkpoint records its input normalisation")
        with torch.no_grad():
            logits = model(torch.from_numpy(exp["images"])).numpy()
            rel = float(np.max(np.abs(logits - exp["logits"])) / np.max(np.abs(exp["logits"])))
            expect(rel <= TOL, f"{kind}: eval logits on 256 test images agree, rel {rel:.2e} (<= {TOL:g})")
            x = netsplit_torch.normalize(images, norm)
            expect(torch.equal(x[:256], torch.from_numpy(exp["images"])),
                   f"{kind}: normalize() with the recorded statistics gives netsplit's input bit for bit")
            top1 = torch.cat([model(x[i : i + 1000]).argmax(1) for i in range(0, 10000, 1000)]).numpy()
        theirs = exp["predictions"].astype(np.int64)
        differ = int(np.sum(top1 != theirs))
        expect(differ == 0, f"{kind}: top-1 of all 10000 test images identical ({differ} differ; "
                            f"accuracy {np.mean(top1 == labels):.4f})")
        onnx_path, pt_path = os.path.join(work, f"{kind}.onnx"), os.path.join(work, f"{kind}.pt")
        r = run_tool("export", ckpt, "--onnx", onnx_path, "--state-dict", pt_path)
        expect(r.returncode == 0 and os.path.getsize(onnx_path) > 0,
               f"{kind}: export --onnx --state-dict exits 0 and onnx.checker passes ({r.stdout.strip()} {r.stderr.strip()[-300:]})")
        if r.returncode == 0:
            sd = torch.load(pt_path)
            same = sd.keys() == model.state_dict().keys() and all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
            expect(same, f"{kind}: the exported state_dict is the module's")
        print(f"  ({kind} took {time.perf_counter() - t0:.1f} s)")

    # damaged files: the command refuses them with exit 2 and says why
    ckpt = os.path.join(work, "resnet20_grown_a.safetensors")
    blob = bytearray(open(ckpt, "rb").read())
    damaged = os.path.join(work, "damaged.safetensors")
    blob[-100] ^= 0x01  # one bit of a tensor
    open(damaged, "wb").write(blob)
    r = run_tool("info", damaged)
    expect(r.returncode == 2 and "checksum mismatch" in r.stderr, f"a flipped bit: exit {r.returncode}, '{r.stderr.strip()}'")
    truncated = os.path.join(work, "truncated.safetensors")
    open(truncated, "wb").write(blob[: len(blob) // 2])
    r = run_tool("export", truncated, "--onnx", os.path.join(work, "t.onnx"))
    expect(r.returncode == 2 and "truncated" in r.stderr,
           f"a truncated file: exit {r.returncode}, '{r.stderr.strip()}'")
    r = run_tool("export", ckpt)
    expect(r.returncode == 2, f"export without an output is a usage error: exit {r.returncode}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
