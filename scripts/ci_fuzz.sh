#!/usr/bin/env bash
# CI step: builds the libFuzzer targets in tests/fuzz with clang 14 (address + undefined
# sanitizers) and runs each one for a bounded time on a copy of its committed seed corpus.
# Any crash, sanitizer report, leak, hang (>10 s on one input), out-of-memory or unexpected
# exception fails the step; the input that caused it is kept under build/fuzz/artifacts/.
# Prints the executions run per target.
# Environment: NETSPLIT_FUZZ_SECONDS  seconds per target (default 60)
#              NETSPLIT_FUZZ_TARGETS  targets to run (default "cifar10 cifar100 safetensors cli")
#              NETSPLIT_FUZZ_JOBS     build parallelism and targets run at once (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${NETSPLIT_FUZZ_SECONDS:-60}
targets=${NETSPLIT_FUZZ_TARGETS:-"cifar10 cifar100 safetensors cli"}
jobs=${NETSPLIT_FUZZ_JOBS:-$(nproc)}
build=build/fuzz

# clang 14 and its sanitizer/fuzzer runtime (Debian: libclang-rt-14-dev).
bash scripts/install_deps.sh clang-14 libclang-rt-14-dev
cxx=$(command -v clang++-14 || true)
[ -n "$cxx" ] || { echo "ci_fuzz: clang++-14 not found" >&2; exit 1; }
runtime=$("$cxx" -print-file-name=libclang_rt.fuzzer-x86_64.a)
[ -f "$runtime" ] || { echo "ci_fuzz: libFuzzer runtime missing ($runtime); install libclang-rt-14-dev" >&2; exit 1; }

start=$(date +%s)
cmake -S tests/fuzz -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build "$build" -j "$jobs"
echo "ci_fuzz: built in $(( $(date +%s) - start )) s; running each target for ${seconds} s"

declare -A max_len=([cifar10]=16384 [cifar100]=16384 [safetensors]=4096 [cli]=1024)
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# fuzz_one TARGET: runs one target; its exit status goes to $build/fuzz_TARGET.rc
fuzz_one() {
  local t=$1 rc
  local work="$build/corpus/$t"      # new inputs the fuzzer finds go here, not into the repo
  mkdir -p "$work" "$build/artifacts"
  local dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  set +e
  "$build/fuzz_$t" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len="${max_len[$t]:-4096}" -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
    "$work" "tests/fuzz/corpus/$t" >"$build/fuzz_$t.log" 2>&1
  rc=$?
  set -e
  echo "$rc" > "$build/fuzz_$t.rc"
}
# The targets run side by side, NETSPLIT_FUZZ_JOBS at a time (each is single-threaded), so
# the step takes about seconds * targets / jobs.
running=0
for t in $targets; do
  rm -f "$build/fuzz_$t.rc"
  fuzz_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
failed=()
summary=()
for t in $targets; do
  log="$build/fuzz_$t.log" work="$build/corpus/$t"
  rc=$(cat "$build/fuzz_$t.rc" 2>/dev/null || echo "?")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  if [ "$rc" != 0 ]; then
    echo "ci_fuzz: fuzz_$t FAILED (exit $rc); last lines of $log:" >&2
    tail -40 "$log" >&2
    ls -l "$build/artifacts" >&2 || true
    failed+=("$t")
    summary+=("fuzz_$t: FAILED after ${runs:-?} executions")
  else
    summary+=("fuzz_$t: ${runs:-?} executions in ${seconds} s (${cov:-no coverage line}), corpus $(ls "$work" | wc -l) new + $(ls "tests/fuzz/corpus/$t" | wc -l) seeds; no crash, leak or hang")
  fi
done
printf '%s\n' "${summary[@]}"
echo "ci_fuzz: done in $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "ci_fuzz: findings in: ${failed[*]} (reproduce: $build/fuzz_<target> $build/artifacts/<file>)" >&2
  exit 1
fi
