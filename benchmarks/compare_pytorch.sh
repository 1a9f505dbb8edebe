#!/usr/bin/env bash
# Side-by-side CPU throughput of netsplit and PyTorch on the same machine, in one run:
# ResNet20 for 100 classes, batch 128, fp32, synthetic input, THREADS threads (default 2),
# training step and inference; PyTorch's best of NCHW and channels_last. Prints img/s,
# the ratio, achieved GFLOP/s and fraction of the measured FMA peak, and peak resident
# memory. Each figure is the median of WINDOWS windows (default 5) of STEPS steps.
# Installs Debian's python3-torch if it is missing (a benchmark-only dependency).
set -euo pipefail
cd "$(dirname "$0")/.."
export THREADS=${THREADS:-2} WINDOWS=${WINDOWS:-5} STEPS=${STEPS:-4}
py=/usr/bin/python3
if ! $py -c "import torch" 2>/dev/null; then
  bash scripts/install_deps.sh python3-torch
fi
bash scripts/install_deps.sh
cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DNETSPLIT_BUILD_TESTS=OFF \
  -DNETSPLIT_BUILD_EXAMPLES=OFF -DNETSPLIT_BUILD_BENCHMARKS=ON >/dev/null
cmake --build build/bench --target netsplit_throughput -j "$(nproc)" >/dev/null
ours=$(build/bench/benchmarks/netsplit_throughput --threads "$THREADS" --windows "$WINDOWS" --steps "$STEPS")
theirs=$($py benchmarks/pytorch_throughput.py)
$py - "$ours" "$theirs" <<'PY'
import json, platform, subprocess, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
best = lambda key: max(("nchw", "channels_last"), key=lambda l: theirs[l][key])
tb, ib = best("train_median"), best("infer_median")
peak = ours["fma_peak_gflops"]
rows = [
    ("training img/s", ours["train_median"], theirs[tb]["train_median"], tb, ours["train_gflop_per_image"]),
    ("inference img/s", ours["infer_median"], theirs[ib]["infer_median"], ib, ours["infer_gflop_per_image"]),
]
print(f"machine: {cpu}, {ours['threads']} threads; measured FP32 FMA peak {peak:.0f} GFLOP/s")
print(f"ResNet20, 100 classes, batch {ours['batch']}, fp32; median of {len(ours['train_img_s'])} windows")
print(f"{'':18}{'netsplit':>10}{'PyTorch':>10}{'ratio':>8}   {'netsplit GFLOP/s (% peak)':>26}   {'PyTorch GFLOP/s (% peak)':>25}   PyTorch layout")
for name, a, b, layout, g in rows:
    print(f"{name:18}{a:10.1f}{b:10.1f}{a / b:8.2f}   {a * g:14.1f} ({100 * a * g / peak:4.1f}%)       {b * g:13.1f} ({100 * b * g / peak:4.1f}%)   {layout}")
print(f"{'peak RSS MiB':18}{ours['peak_rss_mb']:10.0f}{theirs['peak_rss_mb']:10.0f}{ours['peak_rss_mb'] / theirs['peak_rss_mb']:8.2f}")
print("windows (img/s): netsplit train", [round(v) for v in ours["train_img_s"]], "infer", [round(v) for v in ours["infer_img_s"]])
for l in ("nchw", "channels_last"):
    print(f"                 pytorch {l} train", [round(v) for v in theirs[l]["train_img_s"]], "infer", [round(v) for v in theirs[l]["infer_img_s"]])
PY
