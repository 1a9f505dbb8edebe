#!/usr/bin/env bash
# Side-by-side CPU throughput of netsplit and PyTorch on the same machine, in one run:
# each of MODELS (default: resnet20 resnet56 vgg11 vgg11x0.25) for 100 classes, batch 128,
# fp32, synthetic input, THREADS threads (default 2), training step and inference (netsplit
# phase::infer, PyTorch eval mode under no_grad); PyTorch's best of NCHW and channels_last.
# Models: resnet20 and resnet56 (option-A shortcuts), vgg11 (VGG11 with batch norm, GAP +
# linear head), each optionally at a width multiplier written after an x (vgg11x0.25: 16 ...
# 128 channels); the PyTorch definitions are the parity test's (scripts/pytorch_parity.py).
# Prints per model img/s, the ratio, achieved GFLOP/s and fraction of the measured FMA
# peak, and peak resident memory (each model runs in its own processes).
# The two alternate: ROUNDS rounds (default 3), each running, for every model in turn,
# netsplit then PyTorch (PyTorch first in even rounds) for WINDOWS windows (default 3) of
# STEPS steps, so the load of a shared machine, which drifts over minutes, falls on both alike
# (and the order too: on these machines the second of two back-to-back runs is often the
# faster; docs/performance.md, opening). The ratio column is the
# median over rounds of each round's ratio (its netsplit median over its PyTorch median);
# img/s are medians over all windows of all rounds.
# ISA=avx2 compares as on an AVX2-only machine (the issue's reference machine): netsplit built
# with -mavx2 -mfma instead of -march=native (in build/bench-avx2), PyTorch held to AVX2 by
# oneDNN's and ATen's own switches (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2).
# ALLOCATOR=retain (the default) runs both frameworks with glibc's malloc told to keep what it
# has (benchmarks/retain_malloc.env: no chunk of its own mapping, no heap returned to the
# kernel): PyTorch frees and allocates its
# activations every step, and with glibc's defaults each large one is a fresh mmap whose
# pages fault in again; on a virtual machine where a page fault is expensive that, not
# arithmetic, set PyTorch's training speed (2026-12-05, AMD EPYC: 1.6M page faults in a
# ResNet20 run, training 200 -> 553 img/s with retain). netsplit allocates nothing in a
# step, so the setting does not move it. ALLOCATOR=default keeps glibc's defaults (the
# figures of the earlier sessions' tables were measured so).
# Installs Debian's python3-torch if it is missing (a benchmark-only dependency).
# A bad ISA, allocator, model or count exits 2 before anything is installed or built.
set -euo pipefail
cd "$(dirname "$0")/.."
export THREADS=${THREADS:-2} WINDOWS=${WINDOWS:-3} STEPS=${STEPS:-4} ROUNDS=${ROUNDS:-3} ISA=${ISA:-native}
export ALLOCATOR=${ALLOCATOR:-retain}
MODELS=${MODELS:-resnet20 resnet56 vgg11 vgg11x0.25}
# checked before anything is installed or built
case "$ISA" in
  native) dir=build/bench isa_flags=() ;;
  avx2)
    dir=build/bench-avx2 isa_flags=(-DNETSPLIT_NATIVE=OFF "-DCMAKE_CXX_FLAGS=-mavx2 -mfma")
    export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 ;;
  *) echo "compare_pytorch.sh: ISA must be native or avx2, not '$ISA'" >&2; exit 2 ;;
esac
case "$ALLOCATOR" in
  retain) set -a; . benchmarks/retain_malloc.env; set +a ;;
  default) unset MALLOC_MMAP_MAX_ MALLOC_TRIM_THRESHOLD_ MALLOC_TOP_PAD_ MALLOC_MMAP_THRESHOLD_ ;;
  *) echo "compare_pytorch.sh: ALLOCATOR must be retain or default, not '$ALLOCATOR'" >&2; exit 2 ;;
esac
for var in THREADS WINDOWS STEPS ROUNDS; do
  [[ ${!var} =~ ^[1-9][0-9]*$ ]] || { echo "compare_pytorch.sh: $var must be a positive integer, not '${!var}'" >&2; exit 2; }
done
read -r -a models <<< "$MODELS"
[ ${#models[@]} -gt 0 ] || { echo "compare_pytorch.sh: MODELS names no model" >&2; exit 2; }
for m in "${models[@]}"; do
  # a width is a decimal in (0, 16], as netsplit's width_multiplier: 0.25, 2, .5
  [[ $m =~ ^(resnet20|resnet56|vgg11)(x([0-9]+\.?[0-9]*|\.[0-9]+))?$ ]] &&
    awk -v w="${BASH_REMATCH[3]:-1}" 'BEGIN { exit !(w + 0 > 0 && w + 0 <= 16) }' || {
    echo "compare_pytorch.sh: MODELS must list resnet20, resnet56 or vgg11, each optionally x<width> (vgg11x0.25), not '$m'" >&2
    exit 2
  }
done
py=/usr/bin/python3
if ! $py -c "import torch" 2>/dev/null; then
  bash scripts/install_deps.sh python3-torch
fi
bash scripts/install_deps.sh
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNETSPLIT_BUILD_TESTS=OFF \
  -DNETSPLIT_BUILD_EXAMPLES=OFF -DNETSPLIT_BUILD_BENCHMARKS=ON ${isa_flags[@]+"${isa_flags[@]}"} >/dev/null
cmake --build "$dir" --target netsplit_throughput -j "$(nproc)" >/dev/null
runs=()  # per round and model: netsplit's result, then PyTorch's (whichever ran first)
for round in $(seq "$ROUNDS"); do
  for m in "${models[@]}"; do
    if (( round % 2 )); then
      ours=$("$dir"/benchmarks/netsplit_throughput --model "$m" --threads "$THREADS" --windows "$WINDOWS" --steps "$STEPS")
      theirs=$($py benchmarks/pytorch_throughput.py --model "$m")
    else
      theirs=$($py benchmarks/pytorch_throughput.py --model "$m")
      ours=$("$dir"/benchmarks/netsplit_throughput --model "$m" --threads "$THREADS" --windows "$WINDOWS" --steps "$STEPS")
    fi
    runs+=("$ours" "$theirs")
  done
done
$py - "${runs[@]}" <<'PY'
import json, os, platform, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
med = statistics.median
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
layouts = ("nchw", "channels_last")
pool = lambda rs, key: [v for r in rs for v in r[key]]
models = list(dict.fromkeys(r["model"] for r in runs[0::2]))  # in MODELS order
peak = med([r["fma_peak_gflops"] for r in runs[0::2]])
first = runs[0]
rounds = len(runs) // (2 * len(models))
isa = "AVX2 only (netsplit -mavx2 -mfma; PyTorch ONEDNN_MAX_CPU_ISA=AVX2)" if os.environ["ISA"] == "avx2" else "native"
alloc = ("glibc malloc retaining its memory (MALLOC_MMAP_MAX_=0, large trim threshold and top pad)"
         if os.environ["ALLOCATOR"] == "retain" else "glibc malloc's defaults")
print(f"machine: {cpu}, {first['threads']} threads, ISA {isa}; measured FP32 FMA peak {peak:.0f} GFLOP/s (median of rounds)")
print(f"both frameworks under {alloc}")
print(f"100 classes, batch {first['batch']}, fp32; {rounds} alternating rounds of {len(first['train_img_s'])} windows "
      f"(every model, netsplit first in odd rounds, PyTorch first in even ones); ratio = median over rounds of the round's ratio")
print(f"{'':31}{'netsplit':>10}{'PyTorch':>10}{'ratio':>8}   {'netsplit GFLOP/s (% peak)':>26}   {'PyTorch GFLOP/s (% peak)':>25}   PyTorch layout")
details = []
for model in models:
    ours_r = [o for o, t in zip(runs[0::2], runs[1::2]) if o["model"] == model]
    theirs_r = [t for o, t in zip(runs[0::2], runs[1::2]) if o["model"] == model]
    assert all(t["model"] == model for t in theirs_r)
    ours = {k: pool(ours_r, k) for k in ("train_img_s", "infer_img_s")}
    theirs = {l: {k: pool([r[l] for r in theirs_r], k) for k in ("train_img_s", "infer_img_s")} for l in layouts}
    best = lambda key: max(layouts, key=lambda l: med(theirs[l][key]))
    def paired(key):  # per round: netsplit's median over PyTorch's best layout's median
        return [med(o[key]) / max(med(t[l][key]) for l in layouts) for o, t in zip(ours_r, theirs_r)]
    rows = [("training img/s", "train_img_s", ours_r[0]["train_gflop_per_image"]),
            ("inference img/s", "infer_img_s", ours_r[0]["infer_gflop_per_image"])]
    for i, (name, key, g) in enumerate(rows):
        a, layout = med(ours[key]), best(key)
        b = med(theirs[layout][key])
        label = f"{model:13}" if i == 0 else " " * 13
        print(f"{label}{name:18}{a:10.1f}{b:10.1f}{med(paired(key)):8.2f}   {a * g:14.1f} ({100 * a * g / peak:4.1f}%)"
              f"       {b * g:13.1f} ({100 * b * g / peak:4.1f}%)   {layout}")
    rss_o, rss_t = max(r["peak_rss_mb"] for r in ours_r), max(r["peak_rss_mb"] for r in theirs_r)
    print(f"{'':13}{'peak RSS MiB':18}{rss_o:10.0f}{rss_t:10.0f}{rss_o / rss_t:8.2f}   (largest of the rounds)")
    details.append(f"{model} ({ours_r[0]['architecture']}, {ours_r[0]['infer_gflop_per_image']:.4f} GFLOP per image "
                   f"forward, conv only): ratio per round: training {[round(v, 2) for v in paired('train_img_s')]} "
                   f"inference {[round(v, 2) for v in paired('infer_img_s')]}")
    details.append(f"  windows (img/s): netsplit train {[round(v) for v in ours['train_img_s']]} "
                   f"infer {[round(v) for v in ours['infer_img_s']]}")
    for l in layouts:
        details.append(f"                   pytorch {l} train {[round(v) for v in theirs[l]['train_img_s']]} "
                       f"infer {[round(v) for v in theirs[l]['infer_img_s']]}")
print("\n".join(details))
PY
