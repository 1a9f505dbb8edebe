#!/usr/bin/env bash
# Side-by-side CPU throughput of netsplit and PyTorch on the same machine, in one run:
# ResNet20 for 100 classes, batch 128, fp32, synthetic input, THREADS threads (default 2),
# training step and inference (netsplit phase::infer, PyTorch eval mode under no_grad);
# PyTorch's best of NCHW and channels_last. Prints img/s, the ratio, achieved GFLOP/s and
# fraction of the measured FMA peak, and peak resident memory.
# The two alternate: ROUNDS rounds (default 3), each running netsplit then PyTorch for
# WINDOWS windows (default 3) of STEPS steps, so the load of a shared machine, which drifts
# over minutes, falls on both alike. The ratio column is the median over rounds of each
# round's ratio (its netsplit median over its PyTorch median); img/s are medians over all
# windows of all rounds.
# ISA=avx2 compares as on an AVX2-only machine (the issue's reference machine): netsplit built
# with -mavx2 -mfma instead of -march=native (in build/bench-avx2), PyTorch held to AVX2 by
# oneDNN's and ATen's own switches (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2).
# Installs Debian's python3-torch if it is missing (a benchmark-only dependency).
set -euo pipefail
cd "$(dirname "$0")/.."
export THREADS=${THREADS:-2} WINDOWS=${WINDOWS:-3} STEPS=${STEPS:-4} ROUNDS=${ROUNDS:-3} ISA=${ISA:-native}
# checked before anything is installed or built
case "$ISA" in
  native) dir=build/bench isa_flags=() ;;
  avx2)
    dir=build/bench-avx2 isa_flags=(-DNETSPLIT_NATIVE=OFF "-DCMAKE_CXX_FLAGS=-mavx2 -mfma")
    export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 ;;
  *) echo "compare_pytorch.sh: ISA must be native or avx2, not '$ISA'" >&2; exit 2 ;;
esac
py=/usr/bin/python3
if ! $py -c "import torch" 2>/dev/null; then
  bash scripts/install_deps.sh python3-torch
fi
bash scripts/install_deps.sh
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNETSPLIT_BUILD_TESTS=OFF \
  -DNETSPLIT_BUILD_EXAMPLES=OFF -DNETSPLIT_BUILD_BENCHMARKS=ON ${isa_flags[@]+"${isa_flags[@]}"} >/dev/null
cmake --build "$dir" --target netsplit_throughput -j "$(nproc)" >/dev/null
runs=()
for _ in $(seq "$ROUNDS"); do
  runs+=("$("$dir"/benchmarks/netsplit_throughput --threads "$THREADS" --windows "$WINDOWS" --steps "$STEPS")")
  runs+=("$($py benchmarks/pytorch_throughput.py)")
done
$py - "${runs[@]}" <<'PY'
import json, platform, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
ours_r, theirs_r = runs[0::2], runs[1::2]
med = statistics.median
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
layouts = ("nchw", "channels_last")
pool = lambda rs, key: [v for r in rs for v in r[key]]
ours = {k: pool(ours_r, k) for k in ("train_img_s", "infer_img_s")}
theirs = {l: {k: pool([r[l] for r in theirs_r], k) for k in ("train_img_s", "infer_img_s")} for l in layouts}
best = lambda key: max(layouts, key=lambda l: med(theirs[l][key]))
tb, ib = best("train_img_s"), best("infer_img_s")
peak = med([r["fma_peak_gflops"] for r in ours_r])
first = ours_r[0]
def paired(key):  # per round: netsplit's median over PyTorch's best layout's median
    return [med(o[key]) / max(med(t[l][key]) for l in layouts) for o, t in zip(ours_r, theirs_r)]
rows = [
    ("training img/s", med(ours["train_img_s"]), med(theirs[tb]["train_img_s"]), paired("train_img_s"), tb,
     first["train_gflop_per_image"]),
    ("inference img/s", med(ours["infer_img_s"]), med(theirs[ib]["infer_img_s"]), paired("infer_img_s"), ib,
     first["infer_gflop_per_image"]),
]
import os
isa = "AVX2 only (netsplit -mavx2 -mfma; PyTorch ONEDNN_MAX_CPU_ISA=AVX2)" if os.environ["ISA"] == "avx2" else "native"
print(f"machine: {cpu}, {first['threads']} threads, ISA {isa}; measured FP32 FMA peak {peak:.0f} GFLOP/s (median of rounds)")
print(f"ResNet20, 100 classes, batch {first['batch']}, fp32; {len(ours_r)} alternating rounds of "
      f"{len(first['train_img_s'])} windows; ratio = median over rounds of the round's ratio")
print(f"{'':18}{'netsplit':>10}{'PyTorch':>10}{'ratio':>8}   {'netsplit GFLOP/s (% peak)':>26}   {'PyTorch GFLOP/s (% peak)':>25}   PyTorch layout")
for name, a, b, ratios, layout, g in rows:
    print(f"{name:18}{a:10.1f}{b:10.1f}{med(ratios):8.2f}   {a * g:14.1f} ({100 * a * g / peak:4.1f}%)       {b * g:13.1f} ({100 * b * g / peak:4.1f}%)   {layout}")
rss_o, rss_t = max(r["peak_rss_mb"] for r in ours_r), max(r["peak_rss_mb"] for r in theirs_r)
print(f"{'peak RSS MiB':18}{rss_o:10.0f}{rss_t:10.0f}{rss_o / rss_t:8.2f}   (largest of the rounds)")
print("ratio per round: training", [round(v, 2) for v in rows[0][3]], "inference", [round(v, 2) for v in rows[1][3]])
print("windows (img/s): netsplit train", [round(v) for v in ours["train_img_s"]], "infer", [round(v) for v in ours["infer_img_s"]])
for l in layouts:
    print(f"                 pytorch {l} train", [round(v) for v in theirs[l]["train_img_s"]], "infer",
          [round(v) for v in theirs[l]["infer_img_s"]])
PY
