#!/usr/bin/env bash
# benchmarks/compare_latency.sh with a bad setting: an unknown allocator or model, an image or
# round count that is not a positive integer. Each must give exit status 2 and a message
# naming the accepted values and the bad one, before anything is installed or built (no
# build/ directory appears in a scratch copy of the script's tree); good settings get past
# the checks.
set -uo pipefail
script=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/benchmarks" "$tmp/scripts"
cp "$script" "$tmp/benchmarks/"
printf '#!/usr/bin/env bash\necho installed >> "%s/installed"\n' "$tmp" > "$tmp/scripts/install_deps.sh"
fail() { echo "test_compare_latency_flags: $*" >&2; exit 1; }
refused() {
  local out rc
  out=$(env "$1" bash "$tmp/benchmarks/compare_latency.sh" 2>&1)
  rc=$?
  echo "$1: $out"
  [ "$rc" = 2 ] || fail "$1: exit status $rc, want 2"
  grep -qF "$2" <<< "$out" || fail "$1: message missing: $2"
  [ ! -e "$tmp/installed" ] || fail "$1: it installed something first"
  [ ! -e "$tmp/build" ] || fail "$1: it configured a build first"
}
refused ALLOCATOR=jemalloc "ALLOCATOR must be retain or default, not 'jemalloc'"
refused MODEL=vgg16 "MODEL must be resnet20, resnet56 or vgg11[x<width>], not 'vgg16'"
refused IMAGES=0 "IMAGES must be a positive integer, not '0'"
refused ROUNDS=x "ROUNDS must be a positive integer, not 'x'"
# good settings pass the checks: the scratch tree's stand-in install_deps.sh runs (then cmake
# fails there, having no project to configure)
ALLOCATOR=default MODEL=vgg11x0.25 IMAGES=5 ROUNDS=1 bash "$tmp/benchmarks/compare_latency.sh" >/dev/null 2>&1
[ -e "$tmp/installed" ] || fail "good settings were refused"
echo "test_compare_latency_flags: ok"
