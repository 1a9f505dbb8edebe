#!/usr/bin/env bash
# benchmarks/compare_pytorch.sh with an unknown ISA: exit status 2 and a message naming the
# accepted values and the bad one, before anything is installed or built (no build/bench*
# directory appears in a scratch copy of the script's tree).
set -uo pipefail
script=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/benchmarks" "$tmp/scripts"
cp "$script" "$tmp/benchmarks/"
printf '#!/usr/bin/env bash\necho installed >> "%s/installed"\n' "$tmp" > "$tmp/scripts/install_deps.sh"
out=$(ISA=bogus bash "$tmp/benchmarks/compare_pytorch.sh" 2>&1)
rc=$?
echo "$out"
fail() { echo "test_compare_pytorch_flags: $*" >&2; exit 1; }
[ "$rc" = 2 ] || fail "exit status $rc, want 2"
grep -q "ISA must be native or avx2, not 'bogus'" <<< "$out" || fail "message missing"
[ ! -e "$tmp/installed" ] || fail "it installed something first"
[ -z "$(ls -d "$tmp"/build* 2>/dev/null)" ] || fail "it configured a build first"
echo "test_compare_pytorch_flags: ok"
