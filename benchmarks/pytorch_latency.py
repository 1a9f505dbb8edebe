#!/usr/bin/env python3
"""PyTorch side of compare_latency.sh: batch-1 inference latency of the parity test's
ResNet20 (or --model resnet56|vgg11[x<width>]) for 100 classes in eval() under no_grad:
--images single images (default 1000) timed one by one after --warmup (default 50), on
--threads threads. Prints one JSON object (p50, p90, p99, mean, max in microseconds)."""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from pytorch_parity import build_model  # noqa: E402  the independent reference definitions


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args()
    name, _, width = args.model.partition("x")
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = build_model(name, 100, float(width) if width else 1.0).eval()
    images = [torch.randn(1, 3, 32, 32) for _ in range(min(args.images, 64))]
    us = []
    with torch.no_grad():
        for i in range(args.warmup):
            model(images[i % len(images)])
        for i in range(args.images):
            t0 = time.perf_counter()
            model(images[i % len(images)])
            us.append((time.perf_counter() - t0) * 1e6)
    q = lambda p: float(np.quantile(us, p))
    print(json.dumps({"framework": "pytorch", "torch": torch.__version__, "model": name, "width": float(width or 1),
                      "threads": args.threads, "images": args.images, "p50_us": round(q(0.5), 1),
                      "p90_us": round(q(0.9), 1), "p99_us": round(q(0.99), 1), "mean_us": round(float(np.mean(us)), 1),
                      "max_us": round(max(us), 1)}))


if __name__ == "__main__":
    main()
