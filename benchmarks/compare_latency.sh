#!/usr/bin/env bash
# Batch-1 inference latency, netsplit beside PyTorch on the same machine in one run: ResNet20
# (MODEL, default resnet20) for 100 classes, IMAGES single images (default 1000) each timed
# alone, for THREADS in "1 2" (default); netsplit under phase::infer, PyTorch eval() under
# no_grad (NCHW). ROUNDS rounds (default 3) alternate the two so a shared machine's drifting
# load falls on both; each cell is the median over rounds. Prints a table of p50 and p99 (us).
# ALLOCATOR=retain (the default) or default: glibc's malloc keeping its memory for both, or
# glibc's defaults, as in compare_pytorch.sh (which says why).
# Installs Debian's python3-torch if it is missing (a benchmark-only dependency).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-resnet20} IMAGES=${IMAGES:-1000} ROUNDS=${ROUNDS:-3} THREADS=${THREADS:-"1 2"}
ALLOCATOR=${ALLOCATOR:-retain}
case "$ALLOCATOR" in
  retain) set -a; . benchmarks/retain_malloc.env; set +a ;;
  default) unset MALLOC_MMAP_MAX_ MALLOC_TRIM_THRESHOLD_ MALLOC_TOP_PAD_ MALLOC_MMAP_THRESHOLD_ ;;
  *) echo "compare_latency.sh: ALLOCATOR must be retain or default, not '$ALLOCATOR'" >&2; exit 2 ;;
esac
for var in IMAGES ROUNDS; do
  [[ ${!var} =~ ^[1-9][0-9]*$ ]] || { echo "compare_latency.sh: $var must be a positive integer, not '${!var}'" >&2; exit 2; }
done
[[ $MODEL =~ ^(resnet20|resnet56|vgg11)(x[0-9.]+)?$ ]] || { echo "compare_latency.sh: MODEL must be resnet20, resnet56 or vgg11[x<width>], not '$MODEL'" >&2; exit 2; }
py=/usr/bin/python3
$py -c "import torch" 2>/dev/null || bash scripts/install_deps.sh python3-torch
bash scripts/install_deps.sh
cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DNETSPLIT_BUILD_TESTS=OFF \
  -DNETSPLIT_BUILD_EXAMPLES=OFF -DNETSPLIT_BUILD_BENCHMARKS=ON >/dev/null
cmake --build build/bench --target netsplit_latency -j "$(nproc)" >/dev/null
runs=()
for _ in $(seq "$ROUNDS"); do
  for t in $THREADS; do
    runs+=("$(build/bench/benchmarks/netsplit_latency --model "$MODEL" --threads "$t" --images "$IMAGES")")
    runs+=("$($py benchmarks/pytorch_latency.py --model "$MODEL" --threads "$t" --images "$IMAGES")")
  done
done
$py - "${runs[@]}" <<'PY'
import json, os, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
torch_version = next(r["torch"] for r in runs if r["framework"] == "pytorch")
r0 = runs[0]
rounds = len(runs) // (2 * len({r["threads"] for r in runs}))
print(f"machine: {cpu}; {r0['model']}{'' if r0['width'] == 1 else 'x%g' % r0['width']}, 100 classes, batch 1, "
      f"{r0['images']} images per run, median over {rounds} alternating rounds; PyTorch {torch_version} eval() under no_grad; "
      f"glibc malloc {'retaining its memory' if os.environ.get('MALLOC_MMAP_MAX_') == '0' else 'with its defaults'}")
print(f"{'threads':>8} {'netsplit p50':>13} {'p99':>8} {'PyTorch p50':>12} {'p99':>8} {'p50 ratio':>10}   (microseconds)")
for t in sorted({r["threads"] for r in runs}):
    med = lambda fw, key: statistics.median(r[key] for r in runs if r["framework"] == fw and r["threads"] == t)
    a50, a99, b50, b99 = med("netsplit", "p50_us"), med("netsplit", "p99_us"), med("pytorch", "p50_us"), med("pytorch", "p99_us")
    print(f"{t:>8} {a50:>13.0f} {a99:>8.0f} {b50:>12.0f} {b99:>8.0f} {b50 / a50:>9.2f}x")
PY
