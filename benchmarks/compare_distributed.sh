#!/usr/bin/env bash
# Data-parallel throughput on this machine, side by side in one run: the trainer program
# (built with NETSPLIT_ENABLE_MPI) training ResNet20 on the shared CIFAR-10 as
#   1 process x 2 threads   and   2 processes (mpirun) x 1 thread   [and --sync-bn],
# same global batch (128), same iterations. Prints images/s (median over the iterations
# after the first 10) and, for the 2-process runs, the time per step spent in collectives
# (the gradient sum, the loss/stop agreement, the buffer broadcast or the sync-BN sums;
# waiting for the other process included) from metrics.jsonl.
# Usage: benchmarks/compare_distributed.sh [ITERATIONS] [MODEL]   (default 60 resnet20)
# Env: NETSPLIT_BUILD (default build/release when it has the MPI component, as scripts/test.sh
# leaves it, else build/mpi-bench), MPIRUN (default mpirun).
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-60}
model=${2:-resnet20}
default_build=build/mpi-bench
grep -q '^NETSPLIT_ENABLE_MPI:BOOL=ON' build/release/CMakeCache.txt 2>/dev/null && default_build=build/release
build=${NETSPLIT_BUILD:-$default_build}
mpirun_bin=${MPIRUN:-mpirun}
bash scripts/install_deps.sh libopenmpi-dev openmpi-bin
# an existing build folder with the MPI component is used as it is (e.g. build/release of scripts/test.sh)
if ! grep -q '^NETSPLIT_ENABLE_MPI:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNETSPLIT_ENABLE_MPI=ON -DNETSPLIT_BUILD_TESTS=OFF \
    -DNETSPLIT_BUILD_BENCHMARKS=OFF >/dev/null
fi
cmake --build "$build" --target cifar100_resnet20 -j "$(nproc)"
prog="$build/examples/cifar100_resnet20"
data=../shared/data/cifar10-jpeg/cifar-10-batches-bin
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--dataset cifar10 --data-dir "$data" --model "$model" --max-iter "$iters" --batch-size 128 --test-limit 128
        --test-interval 0 --no-progress --seed 1 --lr-schedule "constant 0.1")
summary() {  # metrics.jsonl -> "img/s comm_ms"
  /usr/bin/python3 - "$1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"type":"train"' in l]
rows = rows[10:] if len(rows) > 20 else rows
ips = statistics.median(r["img_per_s"] for r in rows)
comm = [r.get("comm_s", 0.0) for r in rows]
print("%.0f %.2f" % (ips, 1000 * statistics.median(comm)))
PY
}
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "CPU: $cpu ($(nproc) cores); $model, global batch 128, $iters iterations"
"$prog" "${common[@]}" --threads 2 --out-dir "$out/one" >/dev/null
read -r one_ips _ < <(summary "$out/one/metrics.jsonl")
"$mpirun_bin" --oversubscribe --allow-run-as-root -np 2 --bind-to core "$prog" "${common[@]}" --threads 1 \
  --out-dir "$out/two" >/dev/null
read -r two_ips two_comm < <(summary "$out/two/metrics.jsonl")
"$mpirun_bin" --oversubscribe --allow-run-as-root -np 2 --bind-to core "$prog" "${common[@]}" --threads 1 --sync-bn on \
  --out-dir "$out/sync" >/dev/null
read -r sync_ips sync_comm < <(summary "$out/sync/metrics.jsonl")
printf '| layout | img/s | collectives per step (ms) |\n|---|---:|---:|\n'
printf '| 1 process x 2 threads | %s | - |\n' "$one_ips"
printf '| 2 processes x 1 thread | %s | %s |\n' "$two_ips" "$two_comm"
printf '| 2 processes x 1 thread, --sync-bn | %s | %s |\n' "$sync_ips" "$sync_comm"
