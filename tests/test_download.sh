#!/usr/bin/env bash
# Offline test of scripts/download_cifar100.sh: a locally made archive in the official
# layout is served through a file:// URL. Checks the success path (files unpacked, no
# leftovers), the wrong-checksum path (non-zero exit, clear message, nothing unpacked,
# download removed), a failed download, an archive without the expected files, and
# argument errors.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$here/../scripts/download_cifar100.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/netsplit_test_download.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
pass() { echo "ok: $*"; }

# Runs the script; stores its exit status in rc and its stdout+stderr in out.
run() {
  set +e
  out="$("$@" 2>&1)"
  rc=$?
  set -e
}
# Only the final directory may remain in DEST: no partial download, archive or staging.
check_no_leftovers() {
  local extra
  extra="$(find "$1" -mindepth 1 -maxdepth 1 ! -name cifar-100-binary)"
  [[ -z "$extra" ]] || fail "$2: leftovers in $1: $extra"
}

# A small archive in the official layout: cifar-100-binary/ with the four files.
src="$work/src/cifar-100-binary"
mkdir -p "$src"
head -c $((3074 * 5)) /dev/urandom >"$src/train.bin"
head -c $((3074 * 2)) /dev/urandom >"$src/test.bin"
for i in $(seq 0 99); do echo "fine$i"; done >"$src/fine_label_names.txt"
for i in $(seq 0 19); do echo "coarse$i"; done >"$src/coarse_label_names.txt"
archive="$work/cifar-100-binary.tar.gz"
tar -czf "$archive" -C "$work/src" cifar-100-binary
md5="$(md5sum "$archive" | cut -d' ' -f1)"
url="file://$archive"

# 1. Success: correct md5 -> the four files, byte-identical, nothing else left in DEST.
dest="$work/ok"
run env NETSPLIT_CIFAR100_MD5="$md5" bash "$script" --dest "$dest" --url "$url"
if [[ $rc -ne 0 ]]; then
  fail "success path exited $rc: $out"
else
  for f in train.bin test.bin fine_label_names.txt coarse_label_names.txt; do
    cmp -s "$src/$f" "$dest/cifar-100-binary/$f" || fail "success path: $f missing or different"
  done
  check_no_leftovers "$dest" "success path"
  pass "success path unpacks the four files"
fi

# 1b. A second run finds the files and does not download (the URL is now unreachable).
run env NETSPLIT_CIFAR100_MD5="$md5" bash "$script" --dest "$dest" --url "file://$work/absent.tar.gz"
[[ $rc -eq 0 && "$out" == *"nothing to do"* ]] || fail "re-run with files present: rc=$rc: $out"
pass "re-run with the files present does nothing"

# 2. Wrong checksum (the default, official md5 against our archive): refuse, delete, unpack nothing.
dest="$work/bad_md5"
run env -u NETSPLIT_CIFAR100_MD5 bash "$script" --dest "$dest" --url "$url"
[[ $rc -ne 0 ]] || fail "wrong checksum: exit status 0"
[[ "$out" == *"md5 mismatch"* && "$out" == *"$md5"* && "$out" == *"03b5dce01913d631647c71ecec9e9cb8"* ]] ||
  fail "wrong checksum: message does not name both checksums: $out"
[[ ! -e "$dest/cifar-100-binary" ]] || fail "wrong checksum: files were unpacked"
[[ -z "$(find "$dest" -mindepth 1 2>/dev/null)" ]] || fail "wrong checksum: leftovers: $(find "$dest" -mindepth 1)"
pass "wrong checksum refuses and deletes the download"

# 2b. A wrong md5 given through the variable is refused the same way.
dest="$work/bad_md5_env"
run env NETSPLIT_CIFAR100_MD5=00000000000000000000000000000000 bash "$script" --dest "$dest" --url "$url"
[[ $rc -ne 0 && "$out" == *"md5 mismatch"* ]] || fail "wrong md5 from env: rc=$rc: $out"
[[ -z "$(find "$dest" -mindepth 1 2>/dev/null)" ]] || fail "wrong md5 from env: leftovers"
pass "wrong md5 from the variable is refused"

# 3. A failed download (missing file) exits non-zero and leaves nothing.
dest="$work/missing"
run env NETSPLIT_CIFAR100_MD5="$md5" bash "$script" --dest "$dest" --url "file://$work/absent.tar.gz"
[[ $rc -ne 0 && "$out" == *"download of"*"failed"* ]] || fail "missing URL: rc=$rc: $out"
[[ -z "$(find "$dest" -mindepth 1 2>/dev/null)" ]] || fail "missing URL: leftovers"
pass "a failed download exits non-zero"

# 4. An archive with the right md5 but without the expected files installs nothing.
mkdir -p "$work/wrong/other"
echo x >"$work/wrong/other/x.txt"
wrong="$work/wrong.tar.gz"
tar -czf "$wrong" -C "$work/wrong" other
dest="$work/wrong_layout"
run env NETSPLIT_CIFAR100_MD5="$(md5sum "$wrong" | cut -d' ' -f1)" bash "$script" --dest "$dest" --url "file://$wrong"
[[ $rc -ne 0 && "$out" == *"has no cifar-100-binary/train.bin"* ]] || fail "wrong layout: rc=$rc: $out"
[[ -z "$(find "$dest" -mindepth 1 2>/dev/null)" ]] || fail "wrong layout: leftovers"
pass "an archive in another layout installs nothing"

# 5. Argument and variable errors.
run bash "$script" --bogus
[[ $rc -ne 0 && "$out" == *"unknown argument"* ]] || fail "unknown argument: rc=$rc: $out"
run bash "$script" --dest
[[ $rc -ne 0 && "$out" == *"--dest needs"* ]] || fail "--dest without value: rc=$rc: $out"
run env NETSPLIT_CIFAR100_MD5=xyz bash "$script" --dest "$work/x" --url "$url"
[[ $rc -ne 0 && "$out" == *"not an md5"* ]] || fail "malformed md5 variable: rc=$rc: $out"
run bash "$script" --help
[[ $rc -eq 0 && "$out" == *"--dest DIR"* ]] || fail "--help: rc=$rc: $out"
pass "argument errors"

if [[ $failures -ne 0 ]]; then
  echo "test_download: $failures failure(s)" >&2
  exit 1
fi
echo "test_download: all checks passed"
