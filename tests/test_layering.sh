#!/usr/bin/env bash
# scripts/check_layering.py passes on the library as it is, and fails, naming the file and
# the folder, on a copy with a deliberately added back-edge (tpm/ including split/) and on
# a copy with a folder the order does not know.
set -euo pipefail
src=$1
check=$src/scripts/check_layering.py
python3 "$check" "$src/include/netsplit"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/include/netsplit" "$work/netsplit"
echo '#include "netsplit/split/apply.hpp"' >> "$work/netsplit/tpm/recorder.hpp"
if out=$(python3 "$check" "$work/netsplit"); then
  echo "FAIL: a back-edge tpm/ -> split/ passed the check"; exit 1
fi
grep -q "tpm/recorder.hpp:.*tpm/ includes netsplit/split/" <<<"$out" || { echo "FAIL: message: $out"; exit 1; }
rm -rf "$work/netsplit" && cp -r "$src/include/netsplit" "$work/netsplit"
mkdir "$work/netsplit/extras" && echo '#pragma once' > "$work/netsplit/extras/x.hpp"
if out=$(python3 "$check" "$work/netsplit"); then
  echo "FAIL: an unknown folder passed the check"; exit 1
fi
grep -q "folder 'extras' has no place" <<<"$out" || { echo "FAIL: message: $out"; exit 1; }
echo "test_layering: the order holds; a back-edge and an unknown folder are caught"
