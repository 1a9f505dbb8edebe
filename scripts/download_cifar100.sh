#!/usr/bin/env bash
# Downloads the official CIFAR-100 binary archive, checks its md5 and unpacks it, so that
# DEST/cifar-100-binary/{train.bin,test.bin,fine_label_names.txt,coarse_label_names.txt}
# exist. A download whose md5 does not match is deleted and nothing is unpacked.
#
#   scripts/download_cifar100.sh [--dest DIR] [--url URL] [--force]
#
#   --dest DIR  where to put cifar-100-binary/ (default: data/ under the project root)
#   --url URL   where to fetch the archive (default: the official Toronto URL); any URL
#               curl reads, including file:// for a local copy
#   --force     download again even if the four files are already there
#
# Environment: NETSPLIT_CIFAR100_MD5 replaces the expected md5 (for tests with a locally
# made archive only; the official archive's md5 is 03b5dce01913d631647c71ecec9e9cb8).
set -euo pipefail

readonly official_url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
readonly official_md5="03b5dce01913d631647c71ecec9e9cb8"
readonly files=(train.bin test.bin fine_label_names.txt coarse_label_names.txt)

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$(dirname "$script_dir")/data"
url="$official_url"
force=0

die() {
  echo "download_cifar100: error: $*" >&2
  exit 1
}
usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dest) [[ $# -ge 2 && -n "$2" ]] || die "--dest needs a directory"; dest="$2"; shift 2 ;;
    --dest=*) dest="${1#--dest=}"; [[ -n "$dest" ]] || die "--dest needs a directory"; shift ;;
    --url) [[ $# -ge 2 && -n "$2" ]] || die "--url needs a URL"; url="$2"; shift 2 ;;
    --url=*) url="${1#--url=}"; [[ -n "$url" ]] || die "--url needs a URL"; shift ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

expected_md5="$official_md5"
if [[ -n "${NETSPLIT_CIFAR100_MD5:-}" ]]; then
  expected_md5="$(printf '%s' "$NETSPLIT_CIFAR100_MD5" | tr 'A-F' 'a-f')"
  [[ "$expected_md5" =~ ^[0-9a-f]{32}$ ]] || die "NETSPLIT_CIFAR100_MD5 '$NETSPLIT_CIFAR100_MD5' is not an md5 (32 hex digits)"
  [[ "$expected_md5" == "$official_md5" ]] ||
    echo "download_cifar100: note: expecting md5 $expected_md5 from NETSPLIT_CIFAR100_MD5, not the official $official_md5" >&2
fi

command -v curl >/dev/null || die "curl is required"
command -v tar >/dev/null || die "tar is required"
md5_of() {
  if command -v md5sum >/dev/null; then
    md5sum "$1" | cut -d' ' -f1
  elif command -v md5 >/dev/null; then
    md5 -q "$1"
  else
    die "md5sum (or md5) is required"
  fi
}

target="$dest/cifar-100-binary"
have_all() {
  local f
  for f in "${files[@]}"; do [[ -f "$1/$f" ]] || return 1; done
}
if [[ $force -eq 0 ]] && have_all "$target"; then
  echo "download_cifar100: $target already holds ${files[*]}; nothing to do (--force to fetch again)"
  exit 0
fi

mkdir -p "$dest" || die "cannot create $dest"
dest="$(cd "$dest" && pwd)"
target="$dest/cifar-100-binary"
# The partial download and the unpacking area live in DEST (same file system, so the final
# move is a rename) and are removed on every exit path.
partial="$dest/.cifar-100-binary.tar.gz.part.$$"
staging="$dest/.cifar-100-binary.unpack.$$"
cleanup() { rm -rf -- "$partial" "$staging"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "download_cifar100: fetching $url"
curl --fail --location --retry 3 --silent --show-error --output "$partial" -- "$url" ||
  die "download of $url failed (curl exit $?); nothing was unpacked"

actual_md5="$(md5_of "$partial")"
if [[ "$actual_md5" != "$expected_md5" ]]; then
  rm -f -- "$partial"
  die "md5 mismatch for $url: got $actual_md5, expected $expected_md5; the download was deleted and nothing was unpacked"
fi
echo "download_cifar100: md5 $actual_md5 OK"

mkdir "$staging"
tar -xzf "$partial" -C "$staging" || die "could not unpack the archive from $url; nothing was installed"
for f in "${files[@]}"; do
  [[ -f "$staging/cifar-100-binary/$f" ]] || die "the archive from $url has no cifar-100-binary/$f; nothing was installed"
done
rm -rf -- "$target"
mv -- "$staging/cifar-100-binary" "$target"
echo "download_cifar100: CIFAR-100 is in $target"
