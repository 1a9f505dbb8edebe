#!/usr/bin/env bash
# The trainer program under mpirun (a build with NETSPLIT_ENABLE_MPI), 2 ranks x 1 thread
# on this machine, smoke preset on real CIFAR-10 images:
#  (a) train mode: exit 0; the logs, metrics and checkpoints are written once (rank 0), and
#      the checkpoint records the 2 processes;
#  (b) --sync-bn: trains, and its checkpoint says so;
#  (c) a SIGKILL of one rank: mpirun ends the other within a bounded time (60 s) with a
#      non-zero exit; the last checkpoint survives and a 2-rank --resume from it finishes;
#  (d) resuming that checkpoint on 1 process is refused (exit 1) naming the process count;
#  (e) an error on one rank (rank 0's output folder is not writable mid-run is hard to
#      arrange; a missing --resume file is seen by every rank) ends every rank: exit 1, no hang;
#  (e3) --concurrent-runs 2 (several runs of a study at once) under mpirun: exit 2;
#  (f) study mode: a growth study of 2 runs finishes and writes its report once.
#  (g) the study's folder: the same command continues the study, another study is refused
#      (the first process alone reads study.txt and tells the others what it found).
# Usage: test_distributed.sh PROGRAM SHARED_CIFAR10_DIR MPIRUN
# Exit 77 (skip) when the shared CIFAR-10 is absent.
set -u
prog=$1
data=$2
mpirun_bin=$3
if [ ! -f "$data/data_batch_1.bin" ]; then echo "shared CIFAR-10 not found; skipping"; exit 77; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mpi=("$mpirun_bin" --oversubscribe --allow-run-as-root -np 2)
base=(--dataset cifar10 --data-dir "$data" --preset smoke --train-limit 512 --test-limit 200 --batch-size 32
      --threads 1 --no-progress --seed 5)
fail() { echo "FAIL: $*"; exit 1; }

echo "== (a) train mode on 2 ranks"
"${mpi[@]}" "$prog" "${base[@]}" --max-iter 12 --snapshot-every 6 --test-interval 6 --out-dir "$out/a" >"$out/a.log" 2>&1 \
  || { s=$?; cat "$out/a.log"; fail "2-rank train run exited $s"; }
[ -f "$out/a/resnet20_iter_12.safetensors" ] || fail "no final checkpoint"
tests=$(grep -c '"type":"test"' "$out/a/metrics.jsonl")
trains=$(grep -c '"type":"train"' "$out/a/metrics.jsonl")
[ "$tests" = 2 ] || fail "metrics.jsonl has $tests test lines, expected 2 (written once, by rank 0)"
[ "$trains" = 12 ] || fail "metrics.jsonl has $trains train lines, expected 12"
grep -q '"samples":200' "$out/a/metrics.jsonl" || fail "the test lines do not cover the 200 test images"
finals=$(grep -c "Test net output #0" "$out/a.log")
[ "$finals" = 2 ] || fail "stdout has $finals test reports, expected 2 (rank 0 only)"
grep -q 'netsplit.processes' <(head -c 20000 "$out/a/resnet20_iter_12.safetensors") || fail "checkpoint does not record its process count"

echo "== (b) --sync-bn"
"${mpi[@]}" "$prog" "${base[@]}" --max-iter 6 --sync-bn on --out-dir "$out/b" >"$out/b.log" 2>&1 \
  || { s=$?; cat "$out/b.log"; fail "--sync-bn run exited $s"; }
grep -q '"netsplit.sync_batch_norm":"1"' <(head -c 20000 "$out/b/resnet20_iter_6.safetensors") || fail "sync batch norm not recorded"

echo "== (c) SIGKILL of one rank"
"${mpi[@]}" "$prog" "${base[@]}" --max-iter 100000 --snapshot-every 4 --out-dir "$out/c" >"$out/c.log" 2>&1 &
runner=$!
for _ in $(seq 1 600); do
  ls "$out/c"/resnet20_iter_8.safetensors >/dev/null 2>&1 && break
  sleep 0.1
done
[ -f "$out/c/resnet20_iter_8.safetensors" ] || { kill -9 $runner; cat "$out/c.log"; fail "no checkpoint at iteration 8"; }
victim=$(pgrep -f -- "--out-dir $out/c" | while read -r p; do
  [ "$(ps -o comm= -p "$p")" = "$(basename "$prog" | cut -c1-15)" ] && echo "$p"; done | tail -1)
[ -n "$victim" ] || { kill -9 $runner; fail "no rank process found"; }
kill -9 "$victim"
start=$(date +%s)
status=0
for _ in $(seq 1 600); do
  kill -0 $runner 2>/dev/null || break
  sleep 0.1
done
if kill -0 $runner 2>/dev/null; then
  pkill -9 -f -- "--out-dir $out/c"
  fail "the other rank still runs 60 s after one was killed"
fi
wait $runner
status=$?
took=$(( $(date +%s) - start ))
echo "mpirun ended $took s after the kill, exit $status"
[ $status -ne 0 ] || fail "mpirun exited 0 after a rank was killed"
last=$(ls "$out/c"/resnet20_iter_*.safetensors | sed 's/.*_iter_\([0-9]*\)\.safetensors/\1/' | sort -n | tail -1)
echo "last checkpoint: iteration $last"
"${mpi[@]}" "$prog" "${base[@]}" --max-iter $(( last + 4 )) --snapshot-every 4 --out-dir "$out/c2" \
  --resume "$out/c/resnet20_iter_$last.safetensors" >"$out/c2.log" 2>&1 || { s=$?; cat "$out/c2.log"; fail "resume after the kill exited $s"; }
grep -q "resumed from" "$out/c2.log" || fail "the resumed run does not say so"

echo "== (d) a 2-process checkpoint on 1 process"
"$prog" "${base[@]}" --max-iter $(( last + 4 )) --out-dir "$out/d" --resume "$out/c/resnet20_iter_$last.safetensors" \
  >"$out/d.log" 2>&1
status=$?
[ $status -eq 1 ] || { cat "$out/d.log"; fail "1-process resume of a 2-process checkpoint exited $status, expected 1"; }
grep -q "written by a run on 2 process(es)" "$out/d.log" || { cat "$out/d.log"; fail "the refusal does not name the process count"; }

echo "== (e) an error on every rank ends the run"
timeout 120 "${mpi[@]}" "$prog" "${base[@]}" --max-iter 4 --out-dir "$out/e" --resume "$out/missing.safetensors" \
  >"$out/e.log" 2>&1
status=$?
[ $status -ne 0 ] && [ $status -ne 124 ] || { cat "$out/e.log"; fail "a missing --resume file: exit $status"; }
grep -q "rank [01] of 2: error" "$out/e.log" || { cat "$out/e.log"; fail "the error does not name its rank"; }

echo "== (e2) a batch smaller than the process count is refused"
"${mpi[@]}" "$prog" "${base[@]}" --max-iter 2 --batch-size 1 --out-dir "$out/e2" >"$out/e2.log" 2>&1
status=$?
[ $status -eq 2 ] || { cat "$out/e2.log"; fail "--batch-size 1 on 2 processes exited $status, expected 2"; }
grep -q "cannot be shared by 2 processes" "$out/e2.log" || { cat "$out/e2.log"; fail "the refusal does not say why"; }

echo "== (e3) several runs at once under mpirun are refused"
"${mpi[@]}" "$prog" "${base[@]}" --mode study --max-iter 4 --concurrent-runs 2 --out-dir "$out/e3" >"$out/e3.log" 2>&1
status=$?
[ $status -eq 2 ] || { cat "$out/e3.log"; fail "--concurrent-runs 2 on 2 processes exited $status, expected 2"; }
grep -q "trains one run at a time" "$out/e3.log" || { cat "$out/e3.log"; fail "the refusal does not say why"; }

echo "== (f) study mode on 2 ranks"
"${mpi[@]}" "$prog" "${base[@]}" --mode study --seeds 1 --max-iter 16 --grow-rounds 1 --grow-to 0.75 --width-mult 0.5 \
  --controls none --tpm taylor --out-dir "$out/f" >"$out/f.log" 2>&1 || { s=$?; cat "$out/f.log"; fail "2-rank study exited $s"; }
[ -f "$out/f/report.md" ] || fail "the study wrote no report"
reports=$(grep -c "^report: " "$out/f.log")
[ "$reports" = 1 ] || fail "the study printed $reports report lines, expected 1"

echo "== (g) the study's folder on 2 ranks: the same command continues it, another study is refused"
study=(--mode study --seeds 1 --grow-rounds 1 --grow-to 0.75 --width-mult 0.5 --controls none --tpm taylor --out-dir "$out/f")
"${mpi[@]}" "$prog" "${base[@]}" "${study[@]}" --max-iter 16 >"$out/g.log" 2>&1 \
  || { s=$?; cat "$out/g.log"; fail "the same study command again exited $s"; }
grep -q "continuing the study in $out/f" "$out/g.log" || { cat "$out/g.log"; fail "the study was not continued"; }
cp "$out/f/study.txt" "$out/g-study.txt"
"${mpi[@]}" "$prog" "${base[@]}" "${study[@]}" --max-iter 20 >"$out/g2.log" 2>&1
status=$?
[ $status -eq 2 ] || { cat "$out/g2.log"; fail "another study in the folder exited $status, expected 2"; }
grep -q "holds another study" "$out/g2.log" || { cat "$out/g2.log"; fail "the refusal does not say why"; }
cmp -s "$out/f/study.txt" "$out/g-study.txt" || fail "the refused study changed the folder's study.txt"
echo "all distributed program checks passed"
