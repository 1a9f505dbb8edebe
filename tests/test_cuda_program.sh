#!/usr/bin/env bash
# The program's runs on cuda_backend (--backend cuda, issue 20), on real CIFAR-10 images, in
# the build whose CUDA units run the backend's code on the host (thrust's CPP system:
# cifar100_resnet20_thrust_cpp), so CI checks the program's CUDA path without a GPU:
#  1. a study (baseline, derived run, random control) on --backend cuda finishes with its
#     report; its log names the backend; against the same study on --backend cpu: the first
#     iterations' losses agree to 1e-4, every loss to 2% (the backends' sums differ in
#     order, and a few iterations of training amplify that), the split picks the same
#     filters, the grown networks have the same sizes;
#  2. --concurrent-runs 2 on --backend cuda (two seeds, each run with its own context, so on a
#     GPU its own stream): every run's results and final checkpoint equal the study run one
#     run at a time;
#  3. the CPU-only program refuses --backend cuda (exit 2, naming the CMake option); --device
#     without --backend cuda, an unknown backend and a model the CUDA units do not hold exit 2.
# Usage: test_cuda_program.sh THRUST_CPP_PROGRAM CPU_PROGRAM SHARED_CIFAR10_DIR. Exit 77 (skip)
# without the data.
set -u
prog=$1
cpu_prog=$2
data=$3
if [ ! -f "$data/data_batch_1.bin" ]; then echo "shared CIFAR-10 not found; skipping"; exit 77; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
study=(--dataset cifar10 --data-dir "$data" --preset smoke --mode study --width-mult 0.25 --batch-size 16
       --train-limit 128 --test-limit 64 --max-iter 6 --tpm-window 2:4 --split-at 4 --splits 2 --test-interval 0
       --controls random --no-progress)
losses() { grep -h '"type":"train"' "$1" | sed 's/.*"loss":\([-0-9.e]*\).*/\1/'; }
picks() { grep -h '"type":"split_pairs"' "$1" | sed 's/.*"site":\(\[[^]]*\]\),"filter":\(\[[^]]*\]\).*/\1 \2/'; }

# ---- 1. a study on --backend cuda against the same on --backend cpu -------------------------
"$prog" "${study[@]}" --seeds 1 --threads 1 --backend cuda --out-dir "$out/cuda" >"$out/cuda.out" 2>&1; rc=$?
"$prog" "${study[@]}" --seeds 1 --threads 1 --out-dir "$out/cpu" >"$out/cpu.out" 2>&1; rc_cpu=$?
if [ $rc -ne 0 ] || [ $rc_cpu -ne 0 ]; then
  fail "study: exit $rc on --backend cuda, $rc_cpu on cpu"; tail -5 "$out/cuda.out" "$out/cpu.out"
elif [ ! -f "$out/cuda/report.md" ] || [ "$(wc -l <"$out/cuda/results.csv")" -ne 4 ]; then
  fail "study on --backend cuda: no report or not 3 runs in results.csv"; cat "$out/cuda/results.csv"
elif ! grep -q "cuda backend on thrust's CPP system" "$out/cuda/seed1/baseline/train.log" ||
     ! grep -q "cpu backend: 1 thread" "$out/cpu/seed1/baseline/train.log"; then
  fail "study: the run logs do not name their backends"; grep -h backend "$out"/*/seed1/baseline/train.log
else
  bad=
  for k in baseline derived random; do
    cmp_out=$(paste -d' ' <(losses "$out/cuda/seed1/$k/metrics.jsonl") <(losses "$out/cpu/seed1/$k/metrics.jsonl") |
      awk -v k=$k '{ n++; d = $1 - $2; if (d < 0) d = -d; tol = (n <= 3 && k == "baseline" ? 1e-4 : 2e-2) * $2;
                     if (NF != 2 || d > tol) { print k " iteration " n ": " $1 " vs " $2; bad = 1 } }
                   END { if (n != 6 && k == "baseline") print k ": " n " losses, expected 6" }')
    [ -n "$cmp_out" ] && bad="$bad $cmp_out"
  done
  if [ -n "$bad" ]; then fail "study: losses on --backend cuda differ from cpu:$bad"
  elif [ -z "$(picks "$out/cuda/seed1/derived/metrics.jsonl")" ] ||
       [ "$(picks "$out/cuda/seed1/derived/metrics.jsonl")" != "$(picks "$out/cpu/seed1/derived/metrics.jsonl")" ]; then
    fail "study: the derived run split other filters on --backend cuda"
    picks "$out/cuda/seed1/derived/metrics.jsonl"; picks "$out/cpu/seed1/derived/metrics.jsonl"
  elif ! diff <(cut -d, -f1,2,7,8,10 "$out/cuda/results.csv") <(cut -d, -f1,2,7,8,10 "$out/cpu/results.csv") >/dev/null; then
    fail "study: the runs' sizes or split counts differ between the backends"
    diff <(cut -d, -f1,2,7,8,10 "$out/cuda/results.csv") <(cut -d, -f1,2,7,8,10 "$out/cpu/results.csv")
  else
    ok "study on --backend cuda: report written; losses agree with --backend cpu, the same filters split, the same sizes"
  fi
fi

# ---- 2. several runs at once on --backend cuda ----------------------------------------------
two=(--seeds 1,2 --backend cuda --threads 2)
"$prog" "${study[@]}" "${two[@]}" --out-dir "$out/seq" >"$out/seq.out" 2>&1; rs=$?
"$prog" "${study[@]}" "${two[@]}" --concurrent-runs 2 --out-dir "$out/conc" >"$out/conc.out" 2>&1; rcon=$?
same=1
for s in 1 2; do
  for k in baseline derived random; do
    cmp -s "$out/seq/seed$s/$k/resnet20_iter_6.safetensors" "$out/conc/seed$s/$k/resnet20_iter_6.safetensors" || same=0
  done
done
if [ $rs -ne 0 ] || [ $rcon -ne 0 ]; then
  fail "two seeds on --backend cuda: exit $rs one at a time, $rcon with --concurrent-runs 2"; tail -5 "$out/conc.out"
elif ! grep -q "training up to 2 of the study's 6 runs at once" "$out/conc.out"; then
  fail "--concurrent-runs 2: no line saying how many runs at once"; head -3 "$out/conc.out"
elif [ $same -ne 1 ] || ! diff <(cut -d, -f1-8,10 "$out/seq/results.csv") <(cut -d, -f1-8,10 "$out/conc/results.csv") >/dev/null; then
  fail "--concurrent-runs 2 on --backend cuda: results or final checkpoints differ from one run at a time"
  diff <(cut -d, -f1-8,10 "$out/seq/results.csv") <(cut -d, -f1-8,10 "$out/conc/results.csv")
else
  ok "--concurrent-runs 2 on --backend cuda: 6 runs, results and final checkpoints equal one run at a time"
fi

# ---- 3. requests the program refuses ----------------------------------------------------------
refused() {  # NAME EXPECTED_TEXT PROGRAM ARGS...: exit 2 and the text on stderr
  local name=$1 text=$2 p=$3
  shift 3
  "$p" "$@" --out-dir "$out/$name" >"$out/$name.out" 2>"$out/$name.err"
  local r=$?
  if [ $r -ne 2 ] || ! grep -qF -- "$text" "$out/$name.err"; then
    fail "$name: exit $r, expected 2 with '$text'"; cat "$out/$name.err"
  else ok "$name: exit 2, '$text'"; fi
}
refused cpu_only "this program was built without the CUDA backend (configure with -DNETSPLIT_ENABLE_CUDA=ON" \
  "$cpu_prog" --preset smoke --backend cuda
refused device_cpu "--device chooses a CUDA device: it needs --backend cuda" "$prog" --preset smoke --device 1
refused unknown_backend "--backend must be cpu or cuda, not 'tpu'" "$prog" --preset smoke --backend tpu
refused cuda_model "--backend cuda trains resnet20, resnet56 and vgg11; vgg16 trains on --backend cpu" \
  "$prog" --preset smoke --backend cuda --model vgg16

[ $failures -eq 0 ] && echo "all program checks on the CUDA backend passed" || echo "$failures check(s) failed"
[ $failures -eq 0 ]
