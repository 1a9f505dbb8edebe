#!/usr/bin/env bash
# Chooses the default score normalisation for growth by measurement on a held-out part of
# the training set (never the test set): ResNet20 from width 0.5 grown to the parameters of
# width 1.0 in 3 rounds (default preset, CIFAR-10), taylor scores under each normalisation,
# final top-1 on the last 5000 training images. Usage: scripts/growth_normalisation_pilot.sh
# [SEEDS (default 1)] [OUT (default runs/normalisation-pilot)]. Rerunning skips finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-1}
out=${2:-runs/normalisation-pilot}
bin=build/release/examples/cifar100_resnet20
[ -x "$bin" ] || { echo "build the program first (bash scripts/run_study.sh builds it)" >&2; exit 2; }
data=../shared/data/cifar10-jpeg/cifar-10-batches-bin
echo "normalisation,seed,final_holdout_top1,params,macs"
for seed in ${seeds//,/ }; do
  for n in none per_tap per_site_rank z_score; do
    dir=$out/$n-seed$seed
    if ! grep -q '"type":"summary"' "$dir/metrics.jsonl" 2>/dev/null; then
      rm -rf "$dir"
      "$bin" --dataset cifar10 --data-dir "$data" --holdout 5000 --width-mult 0.5 --grow-rounds 3 --grow-to 1.0 \
        --tpm taylor --normalise "$n" --seed "$seed" --out-dir "$dir" --no-progress > /dev/null
    fi
    /usr/bin/python3 - "$dir/metrics.jsonl" "$n" "$seed" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if '"type":"summary"' in l][-1]
print(f"{sys.argv[2]},{sys.argv[3]},{s['final_top1']:.4f},{s['params']},{s['macs']}")
PY
  done
done
