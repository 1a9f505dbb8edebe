#!/usr/bin/env bash
# The trainer program around a run (issue 18, docs/reliability.md), end to end on 256 real
# CIFAR-10 images:
#  1. two runs started at once on one --out-dir: exactly one runs, the other exits 1 at once
#     naming the folder and the holder's pid; no log holds lines of both; --resume takes
#     the same lock; a SIGKILLed holder leaves no stale lock;
#  2. SIGTERM / SIGINT: the run finishes its iteration, writes a checkpoint, says
#     "stopped by ... at iteration N; resume with --resume FILE" (stdout and train.log),
#     exits 143 / 130, and the checkpoint resumes bit-exactly; a second signal stops at
#     once; a study stops the same way and `--resume DIR` finishes it with the same results;
#  3. stdout closed under the run (| head -c 10): training goes on, train.log says so;
#  4. out of memory (ulimit -v): exit 1, "out of memory while <doing what>", bytes asked;
#  5. --seeds 1,1, 6. --threads above the machine's, 7. a batch larger than the training
#     set: exit 2 with a message; no throughput from a run that trained no batch.
# Usage: test_run_control.sh PROGRAM SHARED_CIFAR10_DIR. Exit 77 (skip) without the data.
set -u
prog=$1
data=$2
if [ ! -f "$data/data_batch_1.bin" ]; then echo "shared CIFAR-10 not found; skipping"; exit 77; fi
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$out"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
common=(--dataset cifar10 --data-dir "$data" --preset smoke --train-limit 256 --test-limit 100 --batch-size 32
        --threads 2 --no-progress --test-interval 0)
# waits (up to 60 s) until FILE contains TEXT
wait_for() { for _ in $(seq 600); do grep -qF -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# ---- 1. one run per output folder -----------------------------------------------------------
d=$out/shared
"$prog" "${common[@]}" --max-iter 40 --seed 1 --out-dir "$d" >"$out/a.out" 2>&1 & pa=$!
"$prog" "${common[@]}" --max-iter 40 --seed 2 --out-dir "$d" >"$out/b.out" 2>&1 & pb=$!
wait $pa; ra=$?
wait $pb; rb=$?
loser=; winner=
if [ $ra -eq 0 ] && [ $rb -eq 1 ]; then winner=1; loser=b
elif [ $ra -eq 1 ] && [ $rb -eq 0 ]; then winner=2; loser=a; fi
if [ -z "$loser" ]; then fail "two runs at once: exits $ra and $rb, expected one 0 and one 1"; cat "$out/a.out" "$out/b.out"
elif ! grep -qE "output folder $d is in use by another run \(pid [0-9]+" "$out/$loser.out"; then
  fail "two runs at once: the refused run does not name the folder and pid"; cat "$out/$loser.out"
elif grep -q "seed(s) $((3 - winner))" "$d/train.log" || [ "$(grep -c 'seed(s)' "$d/train.log")" -ne 1 ] ||
     [ "$(grep -c '"type":"summary"' "$d/metrics.jsonl")" -ne 1 ]; then
  fail "two runs at once: the folder's logs hold lines of both runs"; grep 'seed(s)' "$d/train.log"
else ok "two runs at once: seed $winner ran, the other exited 1 naming $d and the holder's pid; logs hold one run"; fi

# --resume takes the same lock; a SIGKILLed holder leaves none behind
"$prog" "${common[@]}" --max-iter 400 --out-dir "$out/held" >"$out/held.out" 2>&1 & ph=$!
wait_for "$out/held.out" "Iteration" || fail "the holder run did not start"
"$prog" "${common[@]}" --max-iter 40 --out-dir "$out/held" --resume "$d/resnet20_iter_30.safetensors" >"$out/r.out" 2>&1
rr=$?
kill -KILL $ph; wait $ph 2>/dev/null
"$prog" "${common[@]}" --max-iter 2 --out-dir "$out/held" >"$out/after.out" 2>&1
rk=$?
if [ $rr -ne 1 ] || ! grep -q "is in use by another run (pid $ph" "$out/r.out"; then
  fail "--resume into a folder in use: exit $rr"; cat "$out/r.out"
elif [ $rk -ne 0 ]; then fail "after the holder was SIGKILLed the folder is still locked (exit $rk)"; cat "$out/after.out"
else ok "--resume into a folder in use exits 1 naming pid $ph; after SIGKILL the folder is free"; fi

# ---- 2. stop signals --------------------------------------------------------------------------
# The uninterrupted reference: 60 iterations, final checkpoint.
"$prog" "${common[@]}" --max-iter 60 --out-dir "$out/ref" >"$out/ref.out" 2>&1 || fail "reference run"
for sig in TERM INT; do
  want=$([ $sig = TERM ] && echo 143 || echo 130)
  s=$out/stop_$sig
  "$prog" "${common[@]}" --max-iter 60 --out-dir "$s" >"$out/$sig.out" 2>&1 & p=$!
  wait_for "$out/$sig.out" "Iteration 6/60" || fail "SIG$sig: the run did not reach iteration 6"
  kill -$sig $p; wait $p; rc=$?
  line=$(grep "stopped by SIG$sig at iteration" "$out/$sig.out")
  ck=$(sed -n 's/.*; resume with --resume \(.*\)$/\1/p' "$out/$sig.out")
  if [ $rc -ne $want ]; then fail "SIG$sig: exit $rc, expected $want"; tail -3 "$out/$sig.out"
  elif [ -z "$line" ] || [ ! -f "$ck" ]; then fail "SIG$sig: no stop message naming a checkpoint"; tail -3 "$out/$sig.out"
  elif ! grep -qF "stopped by SIG$sig at iteration" "$s/train.log"; then fail "SIG$sig: train.log lacks the stop message"
  else
    "$prog" "${common[@]}" --max-iter 60 --out-dir "$s" --resume "$ck" >"$out/$sig.resume.out" 2>&1
    if [ $? -ne 0 ]; then fail "SIG$sig: resuming $ck failed"; tail -3 "$out/$sig.resume.out"
    elif ! cmp -s "$s/resnet20_iter_60.safetensors" "$out/ref/resnet20_iter_60.safetensors"; then
      fail "SIG$sig: the resumed run's final checkpoint differs from the uninterrupted run's"
    else ok "SIG$sig: exit $rc, '${line}', resumed to a final checkpoint identical to an uninterrupted run's"; fi
  fi
done

# A second signal stops at once: both arrive during a long evaluation (10000 test images at
# every iteration), so the first's "finish the iteration" is still under way.
"$prog" "${common[@]}" --test-limit 0 --test-interval 1 --max-iter 60 --out-dir "$out/twice" >"$out/twice.out" 2>&1 & p=$!
wait_for "$out/twice.out" "Testing net" || fail "second signal: the run did not reach its first test"
kill -INT $p; sleep 0.3; kill -INT $p; wait $p; rc=$?
if [ $rc -ne 130 ] || grep -q "stopped by" "$out/twice.out"; then
  fail "second signal: exit $rc (expected 130, killed before finishing the iteration)"; tail -3 "$out/twice.out"
else ok "a second SIGINT during the first's iteration stops the run at once (exit 130)"; fi

# A study stops on SIGINT and --resume DIR finishes it with the same results.
st=(--mode study --controls random,static --max-iter 100)
"$prog" "${common[@]}" "${st[@]}" --out-dir "$out/study_ref" >"$out/study_ref.out" 2>&1 || fail "reference study"
"$prog" "${common[@]}" "${st[@]}" --out-dir "$out/study" >"$out/study.out" 2>&1 & p=$!
wait_for "$out/study.out" "[seed 1 derived] Iteration" || fail "study: the derived run did not start"
kill -INT $p; wait $p; rc=$?
"$prog" "${common[@]}" "${st[@]}" --resume "$out/study" >"$out/study2.out" 2>&1; rc2=$?
same=1
for k in baseline derived random static; do
  cmp -s "$out/study/seed1/$k/resnet20_iter_100.safetensors" "$out/study_ref/seed1/$k/resnet20_iter_100.safetensors" || same=0
done
if [ $rc -ne 130 ] || ! grep -q "stopped by SIGINT at iteration .*; resume the study with --resume $out/study" "$out/study.out"; then
  fail "study stop: exit $rc"; tail -3 "$out/study.out"
elif [ $rc2 -ne 0 ] || ! grep -q "\[seed 1 baseline\] finished before" "$out/study2.out"; then
  fail "study resume: exit $rc2"; tail -5 "$out/study2.out"
elif [ $same -ne 1 ] || ! diff <(cut -d, -f1-8,10 "$out/study/results.csv") <(cut -d, -f1-8,10 "$out/study_ref/results.csv") >/dev/null; then
  fail "study resume: results or final checkpoints differ from an uninterrupted study"
else ok "study: SIGINT exit 130 with the resume command; --resume DIR finished it with identical results and checkpoints"; fi

# Several runs at once (--concurrent-runs 2, --threads 2: one thread each): the same results
# and checkpoints as the study run one at a time with --threads 1; SIGINT stops every run in
# progress, each with a checkpoint, and --resume DIR finishes the study with those results.
cs=(--mode study --controls random,static --max-iter 60 --seeds 1,2)
"$prog" "${common[@]}" "${cs[@]}" --threads 1 --out-dir "$out/conc_ref" >"$out/conc_ref.out" 2>&1 || fail "sequential study (1 thread)"
"$prog" "${common[@]}" "${cs[@]}" --concurrent-runs 2 --out-dir "$out/conc" >"$out/conc.out" 2>&1 & p=$!
wait_for "$out/conc.out" "[seed 1 derived] Iteration" || fail "concurrent study: the derived run did not start"
kill -INT $p; wait $p; rc=$?
stops=$(grep -c "stopped by SIGINT at iteration" "$out/conc.out")
"$prog" "${common[@]}" "${cs[@]}" --concurrent-runs 2 --resume "$out/conc" >"$out/conc2.out" 2>&1; rc2=$?
same=1
for s in 1 2; do
  for k in baseline derived random static; do
    cmp -s "$out/conc/seed$s/$k/resnet20_iter_60.safetensors" "$out/conc_ref/seed$s/$k/resnet20_iter_60.safetensors" || same=0
  done
done
if ! grep -q "training up to 2 of the study's 8 runs at once, 1 thread(s) each" "$out/conc.out"; then
  fail "concurrent study: no line saying how many runs at once"; head -3 "$out/conc.out"
elif [ $rc -ne 130 ] || [ "$stops" -lt 1 ]; then
  fail "concurrent study stop: exit $rc, $stops run(s) said they stopped"; tail -5 "$out/conc.out"
elif [ $rc2 -ne 0 ] || ! grep -q "\[seed 1 baseline\] finished before" "$out/conc2.out"; then
  fail "concurrent study resume: exit $rc2"; tail -5 "$out/conc2.out"
elif [ $same -ne 1 ] || ! diff <(cut -d, -f1-8,10 "$out/conc/results.csv") <(cut -d, -f1-8,10 "$out/conc_ref/results.csv") >/dev/null; then
  fail "concurrent study: results or final checkpoints differ from the study run one at a time with --threads 1"
  diff <(cut -d, -f1-8,10 "$out/conc/results.csv") <(cut -d, -f1-8,10 "$out/conc_ref/results.csv")
else ok "concurrent study: SIGINT stopped $stops run(s) in progress (exit 130); resumed, its 8 runs equal the study run one at a time"; fi

# ---- 3. the terminal goes away ----------------------------------------------------------------
"$prog" "${common[@]}" --max-iter 20 --out-dir "$out/pipe" | head -c 10 >/dev/null
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then fail "stdout closed: exit $rc (141: killed by SIGPIPE)"
elif ! grep -q "stdout is closed" "$out/pipe/train.log" || ! grep -q "done: final top-1" "$out/pipe/train.log"; then
  fail "stdout closed: train.log does not say so or the run did not finish"; tail -3 "$out/pipe/train.log"
else ok "stdout closed at the first line: exit 0, training finished, train.log says stdout is closed"; fi

# ---- 4. out of memory -----------------------------------------------------------------------
(ulimit -v 120000; "$prog" "${common[@]}" --max-iter 2 --out-dir "$out/oom") >"$out/oom.out" 2>&1
rc=$?
# (what it was doing when memory ran out depends on the limit: 256 images load in a few MiB,
# so here it is the first iteration)
if [ $rc -ne 1 ] || ! grep -qE "out of memory while (loading the training set .*|training \(iteration [0-9]+\)): an allocation of [0-9]+ bytes" "$out/oom.out"; then
  fail "out of memory: exit $rc"; cat "$out/oom.out"
else ok "ulimit -v 120000: exit 1, '$(grep -o 'out of memory while [a-z ]*' "$out/oom.out")', bytes named"; fi

# ---- 5-7. flags that cannot make a sound run --------------------------------------------------
refused() {  # NAME MESSAGE ARGS...
  local name=$1 msg=$2; shift 2
  "$prog" "$@" >"$out/$name.out" 2>&1; local rc=$?
  if [ $rc -ne 2 ] || ! grep -qF -- "$msg" "$out/$name.out"; then fail "$name: exit $rc"; cat "$out/$name.out"
  elif grep -q "img/s" "$out/$name.out"; then fail "$name: reported a throughput"
  else ok "$name: exit 2, '$msg'"; fi
}
refused concurrent_train "needs --mode study" "${common[@]}" --concurrent-runs 2 --out-dir "$out/conc_train"
refused seeds "--seeds lists seed 1 twice" "${common[@]}" --mode study --seeds 1,1 --out-dir "$out/seeds"
refused study_file "in study mode --resume names the output folder" "${common[@]}" --mode study \
  --resume "$out/ref/resnet20_iter_60.safetensors"
refused threads "hardware threads" "${common[@]}" --threads 1000 --out-dir "$out/threads"
refused batch "--batch-size 65536 is larger than the training set (10 images" "${common[@]}" --batch-size 65536 \
  --train-limit 10 --out-dir "$out/batch"
# a run that trains no batch (resumed at its last iteration) reports no throughput
"$prog" "${common[@]}" --max-iter 60 --out-dir "$out/none" --resume "$out/ref/resnet20_iter_60.safetensors" >"$out/none.out" 2>&1
rc=$?
if [ $rc -ne 0 ] || grep -q "img/s" "$out/none.out" || ! grep -q "no training iteration in this process" "$out/none.out"; then
  fail "a run with no training iteration: exit $rc or a throughput reported"; tail -2 "$out/none.out"
else ok "a run with no training iteration reports no throughput"; fi

echo "test_run_control: $failures failure(s)"
[ $failures -eq 0 ]
