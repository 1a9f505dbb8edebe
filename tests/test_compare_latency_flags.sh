#!/usr/bin/env bash
# benchmarks/compare_latency.sh with a bad setting: an unknown allocator or model, an image or
# round count that is not a positive integer. Each must give exit status 2 and a message
# naming the accepted values and the bad one, before anything is installed or built (no
# build/ directory appears in a scratch copy of the script's tree); good settings get past
# the checks.
source "$(dirname "$0")/script_flags.sh" "$1"
refused ALLOCATOR=jemalloc "ALLOCATOR must be retain or default, not 'jemalloc'"
refused MODEL=vgg16 "MODEL must be resnet20, resnet56 or vgg11[x<width>], not 'vgg16'"
refused IMAGES=0 "IMAGES must be a positive integer, not '0'"
refused ROUNDS=x "ROUNDS must be a positive integer, not 'x'"
# good settings pass the checks: the scratch tree's stand-in install_deps.sh runs (then cmake
# fails there, having no project to configure)
ALLOCATOR=default MODEL=vgg11x0.25 IMAGES=5 ROUNDS=1 bash "$copy" >/dev/null 2>&1
[ -e "$tmp/installed" ] || fail "good settings were refused"
echo "test_compare_latency_flags: ok"
