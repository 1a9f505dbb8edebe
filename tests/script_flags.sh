# Sourced by the benchmark scripts' flag tests (test_compare_*_flags.sh): copies the script
# under test ($1, a benchmarks/*.sh) and the allocator setting it reads into a scratch tree
# whose scripts/install_deps.sh only records that it ran, and defines
#   refused SETTING MESSAGE  run the script with the environment assignment SETTING; it must
#                            exit 2 with MESSAGE before installing or configuring anything
#   fail TEXT                report and exit 1.
# $name is the test's name (for messages), $tmp the scratch tree, $copy the script's copy.
set -uo pipefail
name=$(basename "$0" .sh)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/benchmarks" "$tmp/scripts"
cp "$1" "$(dirname "$1")/retain_malloc.env" "$tmp/benchmarks/"
copy="$tmp/benchmarks/$(basename "$1")"
printf '#!/usr/bin/env bash\necho installed >> "%s/installed"\n' "$tmp" > "$tmp/scripts/install_deps.sh"
fail() { echo "$name: $*" >&2; exit 1; }
refused() {
  local out rc
  out=$(env "$1" bash "$copy" 2>&1)
  rc=$?
  echo "$1: $out"
  [ "$rc" = 2 ] || fail "$1: exit status $rc, want 2"
  grep -qF "$2" <<< "$out" || fail "$1: message missing: $2"
  [ ! -e "$tmp/installed" ] || fail "$1: it installed something first"
  [ -z "$(ls -d "$tmp"/build* 2>/dev/null)" ] || fail "$1: it configured a build first"
}
