#!/usr/bin/env python3
"""PyTorch side of compare_pytorch.sh: one model for 100 classes, batch 128, fp32, synthetic
input, THREADS threads; training step (forward + CE + backward + SGD) and inference (eval
under no_grad), NCHW and channels_last; prints one JSON object with per-window img/s,
medians and peak RSS.

  pytorch_throughput.py [--model resnet20|resnet56|vgg11[x<width>]]     (default resnet20)

The models are the parity test's independent definitions (scripts/pytorch_parity.py):
ResNets with option-A shortcuts, VGG11 with batch norm; x<width> is a width multiplier
(vgg11x0.25), spelled as netsplit_throughput's --model. WINDOWS and STEPS (environment)
set the windows and the steps per window."""
import argparse
import json
import os
import re
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from pytorch_parity import build_model  # noqa: E402  the independent reference definitions


def measure(step, batch, windows, steps):
    step()
    step()
    out = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        out.append(batch * steps / (time.perf_counter() - t0))
    return out


def parse_model(token):
    """(name, width) of resnet20 | resnet56 | vgg11, optionally followed by x<width>."""
    m = re.fullmatch(r"(resnet20|resnet56|vgg11)(?:x([0-9]*\.?[0-9]+))?", token)
    if not m or (m.group(2) is not None and not 0 < float(m.group(2)) <= 16):
        raise argparse.ArgumentTypeError(f"model must be resnet20, resnet56 or vgg11, optionally x<width>, not '{token}'")
    return m.group(1), float(m.group(2) or 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20", help="resnet20, resnet56 or vgg11, optionally x<width>")
    args = ap.parse_args()
    try:
        name, width = parse_model(args.model)
    except argparse.ArgumentTypeError as exc:
        ap.error(str(exc))
    threads = int(os.environ.get("THREADS", "2"))
    batch, windows, steps = 128, int(os.environ.get("WINDOWS", "5")), int(os.environ.get("STEPS", "4"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    result = {"framework": "pytorch " + torch.__version__, "model": args.model, "width": width, "threads": threads,
              "batch": batch}
    for layout in ("nchw", "channels_last"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        model = build_model(name, 100, width, "A").to(memory_format=fmt)
        x = torch.randn(batch, 3, 32, 32).to(memory_format=fmt)
        y = torch.randint(0, 100, (batch,))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

        def train_step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        model.train()
        train = measure(train_step, batch, windows, steps)
        model.eval()
        with torch.no_grad():
            infer = measure(lambda: model(x), batch, windows, steps)
        result[layout] = {"train_img_s": train, "train_median": statistics.median(train),
                          "infer_img_s": infer, "infer_median": statistics.median(infer)}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
