#!/usr/bin/env python3
"""Checks the library's order of dependence (docs/architecture.md): every #include of a
netsplit header from a folder of include/netsplit/ must name the folder itself or one the
table below allows. Prints each violation as file:line and exits 1 if there is any.
Usage: scripts/check_layering.py [INCLUDE_ROOT]   (default: include/netsplit)"""
import os
import re
import sys

# Each folder and the folders it may include, left to right:
#   core <- backend <- layers <- models <- train <- tpm <- split <- grow
# with io on core only, and data on core, backend and io (train reads data and io).
ORDER = ["core", "backend", "layers", "models", "train", "tpm", "split", "grow"]
ALLOWED = {f: set(ORDER[:i]) for i, f in enumerate(ORDER)}
ALLOWED["io"] = {"core"}
ALLOWED["data"] = {"core", "backend", "io"}
for later in ORDER[ORDER.index("train"):]:
    ALLOWED[later] |= {"io", "data"}

INCLUDE = re.compile(r'\s*#\s*include\s*[<"]netsplit/([^/">]+)/')


def violations(root):
    bad = []
    for folder in sorted(os.listdir(root)):
        top = os.path.join(root, folder)
        if not os.path.isdir(top):
            continue  # the umbrella headers (netsplit.hpp, cuda.hpp) may include anything
        if folder not in ALLOWED:
            bad.append((top, 0, f"folder '{folder}' has no place in the layer order (scripts/check_layering.py)"))
            continue
        for dirpath, _, files in os.walk(top):
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                with open(path, errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if m and m[1] != folder and m[1] not in ALLOWED[folder]:
                            bad.append((path, n, f"{folder}/ includes netsplit/{m[1]}/, which is not to its left "
                                                 f"(allowed: {', '.join(sorted(ALLOWED[folder])) or 'none'})"))
    return bad


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "include/netsplit"
    if not os.path.isdir(root):
        print(f"check_layering: no folder {root}", file=sys.stderr)
        return 2
    bad = violations(root)
    for path, n, what in bad:
        print(f"{path}:{n}: {what}")
    print(f"check_layering: {len(bad)} violation(s) of the layer order in {root}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
