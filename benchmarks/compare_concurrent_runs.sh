#!/usr/bin/env bash
# A study's wall time on this machine, side by side in one run: the trainer program in study
# mode one run at a time with all threads, and with --concurrent-runs N (the threads shared
# among N runs at once), alternated ROUNDS times. Whole program wall time (data loading and
# the report included). Default: ResNet20 on the shared CIFAR-10, preset quick cut to 300
# iterations, seeds 1,2, random control (6 runs), 2 threads, N = 2.
# Usage: benchmarks/compare_concurrent_runs.sh [ITERATIONS] [SEEDS] [N]   (default 300 1,2 2)
# Env: NETSPLIT_BUILD (default build/release), ROUNDS (default 2), THREADS (default: the cores).
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-300}
seeds=${2:-1,2}
n=${3:-2}
rounds=${ROUNDS:-2}
threads=${THREADS:-$(nproc)}
build=${NETSPLIT_BUILD:-build/release}
[ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target cifar100_resnet20 -j "$(nproc)"
prog="$build/examples/cifar100_resnet20"
data=../shared/data/cifar10-jpeg/cifar-10-batches-bin
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--dataset cifar10 --data-dir "$data" --preset quick --max-iter "$iters" --test-interval 0 --mode study
        --seeds "$seeds" --controls random --no-progress --threads "$threads")
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $threads threads; study: $iters iterations, seeds $seeds"
declare -A total=([1]=0 [$n]=0)
for r in $(seq "$rounds"); do
  for c in 1 "$n"; do
    d="$out/r${r}_c$c"
    s=$(date +%s.%N)
    "$prog" "${common[@]}" --concurrent-runs "$c" --out-dir "$d" >"$d.out" 2>&1 || { tail -5 "$d.out"; exit 1; }
    e=$(date +%s.%N)
    t=$(echo "$e - $s" | bc)
    total[$c]=$(echo "${total[$c]} + $t" | bc)
    printf 'round %d, --concurrent-runs %d: %.1f s\n' "$r" "$c" "$t"
  done
done
printf 'speed-up of --concurrent-runs %d over one run at a time (sum of %d rounds): %.3fx\n' "$n" "$rounds" \
  "$(echo "${total[1]} / ${total[$n]}" | bc -l)"
