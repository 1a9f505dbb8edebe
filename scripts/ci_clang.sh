#!/usr/bin/env bash
# CI step: clang 14 compiles every translation unit of the project (tests, example,
# benchmarks, fuzz replays) with the flags CMake gives them, syntax and semantics only
# (-fsyntax-only: no code generation, about a minute on 2 cores). Keeps the headers
# portable beyond g++, which builds and runs everything else in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh clang-14
cxx=$(command -v clang++-14 || true)
[ -n "$cxx" ] || { echo "ci_clang: clang++-14 not found" >&2; exit 1; }
# with the program's CUDA units on thrust's CPP system where CUDA's thrust headers are
thrust=OFF
[ -f /usr/local/cuda/include/cccl/thrust/device_malloc.h ] && thrust=ON
cmake -S . -B build/clang -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DNETSPLIT_BUILD_THRUST_CPP_PROGRAM=$thrust >/dev/null
python3 - build/clang/compile_commands.json "$(nproc)" <<'PY'
import json, shlex, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
entries = json.load(open(sys.argv[1]))
def check(e):
    args = shlex.split(e["command"])
    out = []
    skip = False
    for a in args:  # drop the output and compile-only flags; check syntax and semantics
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD"):
            continue
        out.append(a)
    r = subprocess.run(out + ["-fsyntax-only"], cwd=e["directory"], capture_output=True, text=True)
    return e["file"], r.returncode, r.stderr
failed = 0
with ThreadPoolExecutor(int(sys.argv[2])) as pool:
    for f, rc, err in pool.map(check, entries):
        print(("ok   " if rc == 0 else "FAIL ") + f, flush=True)
        if rc != 0:
            failed += 1
            print(err)
print(f"clang 14: {len(entries) - failed} of {len(entries)} translation units compile")
sys.exit(1 if failed else 0)
PY
