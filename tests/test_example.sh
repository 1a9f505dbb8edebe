#!/usr/bin/env bash
# End-to-end test of the trainer program on a tiny slice of the real CIFAR-10:
# help, bad flags (exit 2), a short run with logs/metrics/checkpoints, resume, bad data.
# Usage: test_example.sh PROGRAM SHARED_CIFAR10_DIR
set -u
prog=$1
data=$2
if [ ! -f "$data/data_batch_1.bin" ]; then echo "shared CIFAR-10 not found; skipping"; exit 77; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$prog" --help | grep -q -- "--preset NAME" || fail "--help does not list --preset"
"$prog" --bogus 1 2>"$out/err"; [ $? -eq 2 ] || fail "unknown flag must exit 2"
grep -q "unknown flag '--bogus'" "$out/err" || fail "unknown flag message"
"$prog" --max-iter abc 2>/dev/null; [ $? -eq 2 ] || fail "bad value must exit 2"

common=(--dataset cifar10 --data-dir "$data" --preset smoke --train-limit 256 --test-limit 100 --batch-size 32 --threads 2 --no-progress)
"$prog" "${common[@]}" --max-iter 6 --test-interval 3 --snapshot-every 3 --out-dir "$out/run" >"$out/stdout" 2>&1 \
  || { cat "$out/stdout"; fail "short run failed"; }
for f in train.log metrics.jsonl resnet20_iter_3.safetensors resnet20_iter_6.safetensors; do
  [ -f "$out/run/$f" ] || fail "missing $f"
done
grep -q "Test net output #0: Accuracy = 0\.[0-9]\{4\}" "$out/run/train.log" || fail "Caffe-form test line missing"
python3 - "$out/run/metrics.jsonl" <<'PY' || fail "metrics.jsonl"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in rows if r["type"] == "train"]
test = [r for r in rows if r["type"] == "test"]
assert len(train) == 6 and all({"iter", "loss", "lr", "img_per_s"} <= r.keys() for r in train), train
assert [r["iter"] for r in test] == [3, 6] and all({"top1", "top5", "test_loss"} <= r.keys() for r in test), test
PY

# Resume from iteration 3 to 6 gives the same final checkpoint tensors as the straight run.
"$prog" "${common[@]}" --max-iter 6 --test-interval 3 --out-dir "$out/resumed" --resume "$out/run/resnet20_iter_3.safetensors" \
  >"$out/stdout2" 2>&1 || { cat "$out/stdout2"; fail "resume failed"; }
grep -q "resumed from .* at iteration 3" "$out/stdout2" || fail "resume not reported"
python3 - "$out/run/resnet20_iter_6.safetensors" "$out/resumed/resnet20_iter_6.safetensors" <<'PY' || fail "resumed run differs"
import json, struct, sys
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a[k] != b.get(k)][:5]
PY

# Bad data: a missing folder and a truncated file are reported, exit 1.
"$prog" --dataset cifar10 --data-dir "$out/nowhere" --preset smoke --out-dir "$out/x" 2>"$out/err"; [ $? -eq 1 ] || fail "missing data must exit 1"
grep -q "does not exist" "$out/err" || fail "missing data message: $(cat "$out/err")"
mkdir -p "$out/bad" && cp "$data"/*.txt "$out/bad/" && for f in "$data"/*.bin; do head -c 30000 "$f" > "$out/bad/$(basename "$f")"; done
"$prog" --dataset cifar10 --data-dir "$out/bad" --preset smoke --out-dir "$out/y" 2>"$out/err"; [ $? -eq 1 ] || fail "truncated data must exit 1"
grep -q "not a multiple of the record size" "$out/err" || fail "truncated data message: $(cat "$out/err")"
# A corrupt checkpoint is refused.
head -c 5000 "$out/run/resnet20_iter_3.safetensors" > "$out/broken.safetensors"
"$prog" "${common[@]}" --max-iter 6 --out-dir "$out/z" --resume "$out/broken.safetensors" 2>"$out/err" >/dev/null; [ $? -eq 1 ] || fail "corrupt checkpoint must exit 1"

# Growing: a study (baseline -> snapshot -> scores -> splits -> derived, random and static controls).
"$prog" "${common[@]}" --mode study --max-iter 9 --test-interval 3 --tpm grad_disagreement --tpm-window 3:6 --split-at 6 \
  --splits 4 --strategy gradient_direction --controls random,static --out-dir "$out/study" >"$out/study.out" 2>&1 \
  || { tail -30 "$out/study.out"; fail "study failed"; }
for f in report.md results.csv loss.svg accuracy.svg tpm.svg splits.svg split_pairs.svg seed1/baseline/metrics.jsonl seed1/derived/train.log; do
  [ -s "$out/study/$f" ] || fail "study output $f missing"
done
grep -q "^| derived − baseline |" "$out/study/report.md" || fail "no paired difference in the report"
grep -q "split .* filter .* -> " "$out/study/seed1/derived/train.log" || fail "derived log does not list the splits"
grep -q '"type":"split","iter":6,"count":4}' "$out/study/seed1/derived/metrics.jsonl" ||
  fail "derived metrics.jsonl does not count its 4 splits"
# Every split pair's incoming weights, at the split (6) and every display interval (1) after it,
# in the runs that split; gradient_direction at eps 0.01 starts each pair at cosine ~0.9998.
python3 - "$out/study/seed1" <<'PY' || fail "split_pairs lines in metrics.jsonl"
import json, sys
for kind in ("derived", "random"):
    rows = [json.loads(l) for l in open(f"{sys.argv[1]}/{kind}/metrics.jsonl")]
    pairs = [r for r in rows if r["type"] == "split_pairs"]
    assert [r["iter"] for r in pairs] == [6, 7, 8, 9], (kind, pairs)
    for r in pairs:
        assert len(r["site"]) == len(r["filter"]) == len(r["copy"]) == len(r["cos"]) == len(r["rel_dist"]) == 4, r
        assert abs(r["min_cos"] - min(r["cos"])) < 1e-8 and abs(r["mean_cos"] - sum(r["cos"]) / 4) < 1e-8, r
    assert all(0.999 < c < 1 for c in pairs[0]["cos"]), (kind, pairs[0])
for kind in ("baseline", "static"):
    assert not any('"split_pairs"' in l for l in open(f"{sys.argv[1]}/{kind}/metrics.jsonl")), kind
PY
# The split map: every site of the network (zeros included) with its best score at the split,
# which the growing runs log as a site_scores line.
python3 - "$out/study" <<'PY' || fail "site_scores line or split map"
import json, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/seed1/derived/metrics.jsonl")]
scores = [r for r in rows if r["type"] == "site_scores"]
assert len(scores) == 1 and scores[0]["iter"] == 6, scores
sites = scores[0]["site"]
assert len(sites) == len(scores[0]["best"]) == 12 and "stage1" in sites, sites  # ResNet20: 3 groups, 9 inner
svg = open(f"{sys.argv[1]}/splits.svg").read()
assert svg.count("<rect x=") == len(sites), svg.count("<rect x=")
assert all(f">{s} (" in svg for s in sites), [s for s in sites if f">{s} (" not in svg]
PY
python3 - "$out/study/results.csv" <<'PY' || fail "results.csv"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
kinds = [r["kind"] for r in rows]
assert kinds == ["baseline", "derived", "random", "static"], kinds
base, der, rnd, sta = rows
assert int(der["params"]) > int(base["params"]) and der["params"] == sta["params"], rows
assert der["splits"] == "4" and rnd["splits"] == "4", rows
PY
# A derived run from the baseline's snapshot in train mode reproduces the study's derived run.
"$prog" "${common[@]}" --max-iter 9 --test-interval 3 --tpm grad_disagreement --tpm-window 3:6 --splits 4 \
  --strategy gradient_direction --from-snapshot "$out/study/seed1/baseline/resnet20_iter_6.safetensors" \
  --out-dir "$out/derived" >"$out/derived.out" 2>&1 || { tail -20 "$out/derived.out"; fail "derived run failed"; }
python3 - "$out/study/seed1/derived/resnet20_iter_9.safetensors" "$out/derived/resnet20_iter_9.safetensors" <<'PY' || fail "derived run differs"
import json, struct, sys
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items() if not k.startswith("tpm/")}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
PY
# Impossible split requests: a window outside the run, a split before the window ends (exit 2),
# more splits than filters (exit 1, reported at the split).
"$prog" "${common[@]}" --mode study --max-iter 9 --tpm-window 5:20 2>"$out/err"; [ $? -eq 2 ] || fail "window outside the run must exit 2"
grep -q "does not fit in a run of 9 iterations" "$out/err" || fail "window message: $(cat "$out/err")"
"$prog" "${common[@]}" --max-iter 9 --tpm-window 3:6 --split-at 4 2>"$out/err"; [ $? -eq 2 ] || fail "split inside the window must exit 2"
"$prog" "${common[@]}" --max-iter 6 --tpm-window 1:3 --split-at 3 --splits 5000 --out-dir "$out/toomany" >/dev/null 2>"$out/err"
[ $? -eq 1 ] || fail "too many splits must exit 1"
grep -q "cannot select 5000 filters" "$out/err" || fail "too-many-splits message: $(cat "$out/err")"

# Other models: a VGG at a width multiplier trains, splits and names its checkpoints after
# itself; its checkpoint is refused by another model or width (exit 1, both architectures named).
"$prog" "${common[@]}" --model vgg11 --width-mult 0.25 --max-iter 6 --test-interval 3 --tpm-window 2:4 --split-at 4 \
  --splits 3 --out-dir "$out/vgg" >"$out/vgg.out" 2>&1 || { tail -20 "$out/vgg.out"; fail "vgg11 run failed"; }
[ -f "$out/vgg/vgg11_iter_6.safetensors" ] || fail "vgg11 checkpoint missing"
grep -q "netsplit vgg11 classes=10 scalar=f32 width=0.25" "$out/vgg/train.log" || fail "vgg11 architecture not logged"
grep -q "features\.[0-9]* filter" "$out/vgg/train.log" || fail "vgg11 splits not logged: $(grep split "$out/vgg/train.log")"
"$prog" "${common[@]}" --model resnet32 --max-iter 6 --out-dir "$out/r32" --resume "$out/vgg/vgg11_iter_6.safetensors" 2>"$out/err" >/dev/null
[ $? -eq 1 ] || fail "a vgg11 checkpoint resumed as resnet32 must exit 1"
grep -q "'vgg11 classes=10 scalar=f32 width=0.25' but this run expects 'resnet32 classes=10 shortcut=A scalar=f32'" "$out/err" ||
  fail "model mismatch message: $(cat "$out/err")"
"$prog" "${common[@]}" --model vgg11 --max-iter 6 --out-dir "$out/v1" --resume "$out/vgg/vgg11_iter_6.safetensors" 2>"$out/err" >/dev/null
[ $? -eq 1 ] || fail "a width-0.25 checkpoint resumed at width 1 must exit 1"
"$prog" --model vgg11 --shortcut B 2>"$out/err"; [ $? -eq 2 ] || fail "--shortcut on a VGG must exit 2"
"$prog" --model vgg12 2>"$out/err"; [ $? -eq 2 ] || fail "unknown --model must exit 2"

# Growth in rounds (issue 21): from width 0.5 to the parameters of width 1.0 in 3 rounds, a
# grown arm per metric (taylor, splitting), cost-matched random growth, static small and full;
# per-round report; rerunning the same command continues the study (every run read back);
# another study in the same folder is refused.
gs=(--mode study --max-iter 12 --test-interval 6 --width-mult 0.5 --grow-at 4,7,10 --grow-window 2 --grow-to 1.0
    --tpm taylor,splitting --out-dir "$out/growth")
"$prog" "${common[@]}" "${gs[@]}" >"$out/growth.out" 2>&1 || { tail -30 "$out/growth.out"; fail "growth study failed"; }
for f in report.md results.csv growth.svg widths.svg splits-grow-taylor.svg splits-grow-splitting.svg study.txt \
         seed1/small/metrics.jsonl seed1/grow-taylor/train.log seed1/grow-splitting/train.log seed1/grow-random/train.log \
         seed1/full/train.log; do
  [ -s "$out/growth/$f" ] || fail "growth study output $f missing"
done
grep -q "^| grow-taylor − grow-random |" "$out/growth/report.md" || fail "no paired difference against random growth"
grep -q "^| grow-splitting − full |" "$out/growth/report.md" || fail "no paired difference against the full net"
grep -q "^## Growth per round" "$out/growth/report.md" || fail "no per-round section"
python3 - "$out/growth" <<'PY' || fail "growth rounds in metrics.jsonl"
import csv, json, sys
d = sys.argv[1]
runs = {r["kind"]: r for r in csv.DictReader(open(f"{d}/results.csv"))}
full = int(runs["full"]["params"])
for arm in ("grow-taylor", "grow-splitting", "grow-random"):
    rows = [json.loads(l) for l in open(f"{d}/seed1/{arm}/metrics.jsonl")]
    rounds = [r for r in rows if r["type"] == "round"]
    assert [r["iter"] for r in rounds] == [4, 7, 10], (arm, rounds)
    assert len(rounds[0]["site"]) == len(rounds[0]["width"]) == 12, rounds[0]
    assert rounds[0]["params"] < rounds[1]["params"] < rounds[2]["params"], rounds
    # the budget reaches the full net's parameters (a round may overshoot by the widening
    # of rows its own splits cause)
    assert abs(int(runs[arm]["params"]) - full) <= 0.05 * full, (arm, runs[arm]["params"], full)
assert int(runs["small"]["params"]) < full
PY
"$prog" "${common[@]}" "${gs[@]}" >"$out/growth2.out" 2>&1 || { tail -20 "$out/growth2.out"; fail "growth study rerun failed"; }
[ "$(grep -c "finished before" "$out/growth2.out")" -eq 5 ] || fail "rerunning the study must read back its 5 runs"
# The growth study's runs several at a time (--concurrent-runs 3, 1 thread each: the small
# run first, then its arms from the trunk beside the full net): the same results and final
# checkpoints as the study one run at a time with --threads 1.
gc=(--mode study --max-iter 12 --test-interval 6 --width-mult 0.5 --grow-at 4,7,10 --grow-window 2 --grow-to 1.0
    --tpm taylor,splitting)
"$prog" "${common[@]}" "${gc[@]}" --threads 1 --out-dir "$out/growth_t1" >"$out/growth_t1.out" 2>&1 || fail "growth study, 1 thread"
"$prog" "${common[@]}" "${gc[@]}" --threads 2 --concurrent-runs 3 --out-dir "$out/growth_c3" >"$out/growth_c3.out" 2>&1 ||
  { tail -20 "$out/growth_c3.out"; fail "growth study, 3 runs at once"; }
grep -q "training up to 3 of the study's 5 runs at once, 1 thread(s) each" "$out/growth_c3.out" || fail "no runs-at-once line"
diff <(cut -d, -f1-8,10 "$out/growth_t1/results.csv") <(cut -d, -f1-8,10 "$out/growth_c3/results.csv") ||
  fail "runs at once: results.csv differs from one run at a time"
for k in small grow-taylor grow-splitting grow-random full; do
  cmp -s "$out/growth_t1/seed1/$k/resnet20_iter_12.safetensors" "$out/growth_c3/seed1/$k/resnet20_iter_12.safetensors" ||
    fail "runs at once: the $k run's final checkpoint differs from one run at a time"
done
"$prog" "${common[@]}" "${gs[@]}" --grow-window 1 >"$out/growth3.out" 2>&1; [ $? -eq 2 ] || fail "another study in the folder must exit 2"
grep -q "holds another study" "$out/growth3.out" || fail "another-study message: $(cat "$out/growth3.out")"
"$prog" "${common[@]}" --mode study --width-mult 0.5 --grow-at 4 --grow-window 2 --grow-to 0.5 2>"$out/err"
[ $? -eq 2 ] || fail "--grow-to not above the start must exit 2"
"$prog" "${common[@]}" --width-mult 0.25 --grow-at 4 --grow-window 2 --grow-to 1.0 --grow-by widths --max-iter 6 \
  --out-dir "$out/w1" 2>"$out/err" >/dev/null
[ $? -eq 1 ] || fail "widths 0.25 -> 1.0 in one round must be refused before training (exit 1)"
grep -q "grow in more rounds" "$out/err" || fail "one-round widths message: $(cat "$out/err")"
"$prog" "${common[@]}" --holdout 50000 --max-iter 2 --out-dir "$out/ho" 2>"$out/err" >/dev/null
[ $? -eq 2 ] || fail "--holdout of the whole training set must exit 2"
grep -q "leaves no training image" "$out/err" || fail "holdout message: $(cat "$out/err")"
echo "example end-to-end: ok"
