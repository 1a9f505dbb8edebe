#!/usr/bin/env bash
# benchmarks/compare_pytorch.sh with a bad setting: an unknown ISA or allocator, an unknown model or a bad
# width in MODELS, a round count that is not a positive integer. Each must give exit status
# 2 and a message naming the accepted values and the bad one, before anything is installed
# or built (no build/bench* directory appears in a scratch copy of the script's tree); good
# settings get past the checks.
source "$(dirname "$0")/script_flags.sh" "$1"
refused ISA=bogus "ISA must be native or avx2, not 'bogus'"
refused ALLOCATOR=tcmalloc "ALLOCATOR must be retain or default, not 'tcmalloc'"
refused "MODELS=resnet20 vgg16" "MODELS must list resnet20, resnet56 or vgg11, each optionally x<width> (vgg11x0.25), not 'vgg16'"
refused "MODELS=vgg11x0" "not 'vgg11x0'"
refused "MODELS=vgg11x17" "not 'vgg11x17'"
refused "MODELS=vgg11x0.25x2" "not 'vgg11x0.25x2'"
refused "MODELS= " "MODELS names no model"
refused ROUNDS=0 "ROUNDS must be a positive integer, not '0'"
refused STEPS=two "STEPS must be a positive integer, not 'two'"
# and good settings pass the checks: the scratch tree's stand-in install_deps.sh runs (then
# cmake fails there, having no project to configure)
ALLOCATOR=default MODELS="vgg11x.5 resnet56 vgg11x2 resnet20x0.25 vgg11" ROUNDS=1 bash "$copy" >/dev/null 2>&1
[ -e "$tmp/installed" ] || fail "good MODELS and ROUNDS were refused"
echo "test_compare_pytorch_flags: ok"
