#!/usr/bin/env python3
"""PyTorch side of compare_pytorch.sh: ResNet20 (100 classes, option A), batch 128, fp32,
synthetic input, N threads; training step (forward + CE + backward + SGD) and inference,
NCHW and channels_last; prints one JSON object with per-window img/s, medians and peak RSS."""
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from pytorch_parity import ResNet  # noqa: E402  the independent reference ResNet20


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


def main():
    threads = int(os.environ.get("THREADS", "2"))
    batch, windows, steps = 128, int(os.environ.get("WINDOWS", "5")), int(os.environ.get("STEPS", "4"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    result = {"framework": "pytorch " + torch.__version__, "threads": threads, "batch": batch}
    for layout in ("nchw", "channels_last"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        model = ResNet([3, 3, 3], 100, "A").to(memory_format=fmt)
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
