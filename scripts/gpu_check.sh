#!/usr/bin/env bash
# scripts/gpu_check.sh — one command for a machine with an NVIDIA GPU: builds netsplit's
# CUDA backend with nvcc, runs the GPU-labelled tests, and measures training and inference
# throughput (100 classes, batch 128, fp32 and TF32) of ResNet20, ResNet56, VGG11 and VGG11 x0.25
# (NETSPLIT_GPU_MODELS) for netsplit and, in the same run, for PyTorch on the same GPU.
# Needs no internet. Finishes in well under 8 minutes.
#
# Dependencies: nvcc + cuBLAS (CUDA toolkit), CMake >= 3.20, a python3 with torch (for the
# PyTorch half; skipped if missing). cuDNN is used when found: in the toolkit, under
# $CUDNN_ROOT, or in the python nvidia-cudnn wheel next to torch.
# Header-only dependencies (Eigen, doctest) are taken from the system or, when absent,
# from a project-local folder ($NETSPLIT_DEPS, default .deps/) that a developer fills on
# a machine that has them, before shipping the working tree to the GPU machine:
#     mkdir -p .deps && cp -r /usr/include/eigen3 /usr/include/doctest .deps/
# (.deps/ is git-ignored: name it in the device tool's `carry`.)
#
# Environment: NETSPLIT_DEPS, NETSPLIT_GPU_BUILD (build folder, default build/gpu),
# CMAKE_CUDA_ARCHITECTURES (default 90), CUDNN_ROOT, NETSPLIT_TORCH_PYTHON (default python3),
# NETSPLIT_BENCH_ITERS (timed steps per measurement, default 100), NETSPLIT_GPU_MODELS (models
# for the throughput, default "resnet20 resnet56 vgg11 vgg11x0.25"),
# NETSPLIT_GPU_CHECK_CONFIGURE_ONLY=1 (stop after configuring: checks the set-up anywhere),
# NETSPLIT_GPU_STUDY=1 (also build the program, cifar100_resnet20 with its CUDA units, and time
# a short study on --backend cuda: 3 seeds, baseline + derived + random control, one run at a
# time and then 3 at once; NETSPLIT_GPU_STUDY_ITERS iterations per baseline, default 600; the
# shared CIFAR-10 at ../shared or NETSPLIT_CIFAR10_DIR; a few minutes more of build).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start )) s"; }
deps=${NETSPLIT_DEPS:-$root/.deps}
build=${NETSPLIT_GPU_BUILD:-build/gpu}
arch=${CMAKE_CUDA_ARCHITECTURES:-90}
py=${NETSPLIT_TORCH_PYTHON:-python3}
iters=${NETSPLIT_BENCH_ITERS:-100}
jobs=$(nproc 2>/dev/null || echo 4)
status=0

echo "== gpu_check: $(date -u +%FT%TZ) in $root"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [ ! -x "$nvcc" ]; then
  echo "gpu_check: no nvcc found (set CUDACXX)"; exit 1
fi
"$nvcc" --version | tail -2

study=${NETSPLIT_GPU_STUDY:-0}
examples=OFF
targets=(test_cuda_backend gpu_throughput)
[ "$study" = 1 ] && examples=ON targets+=(cifar100_resnet20)
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DNETSPLIT_ENABLE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc"
            -DCMAKE_CUDA_ARCHITECTURES="$arch" -DNETSPLIT_BUILD_TESTS=OFF -DNETSPLIT_BUILD_EXAMPLES=$examples
            -DNETSPLIT_BUILD_BENCHMARKS=OFF -DNETSPLIT_NATIVE=OFF)
command -v ninja >/dev/null && cmake_args+=(-G Ninja)

# Eigen and doctest from the project-local folder: CMake package shims pointing into it.
if [ -d "$deps/eigen3/Eigen" ] || [ -f "$deps/doctest/doctest.h" ]; then
  case $build in /*) shims="$build/dep-shims" ;; *) shims="$root/$build/dep-shims" ;; esac
  mkdir -p "$shims"
  if [ -d "$deps/eigen3/Eigen" ]; then
    cat > "$shims/Eigen3Config.cmake" <<CMAKE
if(NOT TARGET Eigen3::Eigen)
  add_library(Eigen3::Eigen INTERFACE IMPORTED)
  set_target_properties(Eigen3::Eigen PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "$deps/eigen3")
endif()
CMAKE
    cat > "$shims/Eigen3ConfigVersion.cmake" <<'CMAKE'
set(PACKAGE_VERSION 3.4.0)
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
CMAKE
    cmake_args+=(-DEigen3_DIR="$shims")
    echo "gpu_check: Eigen from $deps/eigen3"
  fi
  if [ -f "$deps/doctest/doctest.h" ]; then
    cat > "$shims/doctestConfig.cmake" <<CMAKE
if(NOT TARGET doctest::doctest)
  add_library(doctest::doctest INTERFACE IMPORTED)
  set_target_properties(doctest::doctest PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "$deps")
endif()
CMAKE
    cmake_args+=(-Ddoctest_DIR="$shims")
    echo "gpu_check: doctest from $deps/doctest"
  fi
fi

# cuDNN: toolkit, $CUDNN_ROOT, or the wheel that ships with torch.
cuda_home=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
if [ -z "${CUDNN_ROOT:-}" ] && [ ! -f "$cuda_home/include/cudnn.h" ]; then
  wheel=$("$py" -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
  if [ -n "$wheel" ] && [ -f "$wheel/include/cudnn.h" ]; then
    export CUDNN_ROOT=$wheel
  fi
fi
if [ -n "${CUDNN_ROOT:-}" ]; then
  echo "gpu_check: cuDNN from $CUDNN_ROOT"
  cmake_args+=(-DNETSPLIT_CUDNN_ROOT="$CUDNN_ROOT")
  export LD_LIBRARY_PATH="$CUDNN_ROOT/lib:$CUDNN_ROOT/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

echo "== configure and build ($(elapsed))"
mkdir -p "$build"
if ! cmake -S . -B "$build" "${cmake_args[@]}" >"$build/configure.log" 2>&1; then
  tail -40 "$build/configure.log"; echo "gpu_check: configure failed"; exit 1
fi
grep -E "netsplit:|CUDA compiler identification" "$build/configure.log" || true
[ -n "${NETSPLIT_GPU_CHECK_CONFIGURE_ONLY:-}" ] && { echo "gpu_check: configured ($build)"; exit 0; }
if ! timeout 900 cmake --build "$build" -j "$jobs" --target "${targets[@]}" 2>&1 | tail -25; then
  echo "gpu_check: build failed"; exit 1
fi
[ -x "$build/tests/cuda/test_cuda_backend" ] || { echo "gpu_check: build failed"; exit 1; }
echo "built in $(elapsed)"

echo "== GPU-labelled tests ($(elapsed))"
ctest_log="$build/ctest-gpu.log"
if ! timeout 240 ctest --test-dir "$build" -L gpu --output-on-failure -V >"$ctest_log" 2>&1; then
  status=1
  echo "gpu_check: GPU tests FAILED"
fi
grep -vE "^(UpdateCTestConfiguration|Parse Config|Constructing|Updating test list|Checking test dependency|Test project|test [0-9]+$|    Start)" "$ctest_log"
if grep -q "Skipped\|Not Run" "$ctest_log"; then
  status=1
  echo "gpu_check: GPU tests were SKIPPED (no usable CUDA device?)"
fi

if [ "$study" = 1 ]; then
  # The study's runs on one GPU (issue 20): one at a time, then 3 at once (each run its own
  # stream); whole-program wall time each, the same runs and results.
  cifar=${NETSPLIT_CIFAR10_DIR:-$root/../shared/data/cifar10-jpeg/cifar-10-batches-bin}
  n=${NETSPLIT_GPU_STUDY_ITERS:-600}
  echo "== study on --backend cuda: 3 seeds x (baseline $n iterations, derived, random), batch 128 ($(elapsed))"
  for runs in 1 3; do
    t0=$(date +%s)
    if timeout 600 "$build/examples/cifar100_resnet20" --backend cuda --mode study --dataset cifar10 --data-dir "$cifar" \
         --preset quick --max-iter "$n" --test-interval 0 --seeds 1,2,3 --controls random --tpm-curve off \
         --concurrent-runs $runs --no-progress --out-dir "$build/gpu-study-$runs" >"$build/gpu-study-$runs.log" 2>&1; then
      echo "study, --concurrent-runs $runs: $(( $(date +%s) - t0 )) s wall"
      grep -h "img/s" "$build/gpu-study-$runs"/seed1/baseline/train.log | tail -1
    else
      status=1; echo "gpu_check: the study with --concurrent-runs $runs FAILED"; tail -5 "$build/gpu-study-$runs.log"
    fi
  done
  cmp <(cut -d, -f1-8,10 "$build/gpu-study-1/results.csv") <(cut -d, -f1-8,10 "$build/gpu-study-3/results.csv") &&
    echo "the two studies' results are equal" || echo "note: the two studies' results differ (cuDNN's algorithms need not be deterministic)"
fi

models=${NETSPLIT_GPU_MODELS:-resnet20 resnet56 vgg11 vgg11x0.25}
echo "== throughput: $models; 100 classes, batch 128 ($(elapsed))"
results=$(mktemp)
for m in $models; do
  for flag in "" --tf32; do
    if ! timeout 120 "$build/tests/cuda/gpu_throughput" --model "$m" --batch 128 --iters "$iters" $flag | tee -a "$results"; then
      status=1
      echo "gpu_check: netsplit throughput run $m ${flag:-fp32} failed"
    fi
  done
done

if "$py" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  NETSPLIT_ROOT=$root ITERS=$iters MODELS="$models" timeout 300 "$py" - <<'PY' | tee -a "$results" || status=1
import json, os, sys, time
import torch
import torch.nn.functional as F
sys.path.insert(0, os.path.join(os.environ["NETSPLIT_ROOT"], "scripts"))
from pytorch_parity import build_model  # the parity test's reference definitions

iters = int(os.environ["ITERS"])
torch.backends.cudnn.benchmark = True
torch.backends.cuda.matmul.allow_tf32 = False
dev = torch.device("cuda")
print(f"# torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}", file=sys.stderr)

def measure(token, tf32):
    name, _, width = token.partition("x")
    width = float(width) if width else 1.0
    torch.backends.cudnn.allow_tf32 = tf32  # PyTorch's default is True for convolutions
    torch.manual_seed(1)
    model = build_model(name, 100, width).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(128, 3, 32, 32, device=dev)
    y = torch.randint(0, 100, (128,), device=dev)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()  # the loss comes back to the host every step, as in netsplit

    def timed(step):
        for _ in range(15):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    head = {"impl": "pytorch", "model": name, "width": width, "batch": 128, "iters": iters, "tf32": tf32}
    model.train()
    t = timed(train_step)
    print(json.dumps({**head, "mode": "train", "images_per_s": round(iters * 128 / t, 1), "ms_per_step": round(1e3 * t / iters, 3)}))
    model.eval()
    with torch.no_grad():
        t = timed(lambda: model(x))
    print(json.dumps({**head, "mode": "inference", "images_per_s": round(iters * 128 / t, 1), "ms_per_step": round(1e3 * t / iters, 3)}))
    sys.stdout.flush()

for token in os.environ["MODELS"].split():
    measure(token, False)  # strict fp32, like netsplit's default
    measure(token, True)   # PyTorch's default (TF32 convolutions)
PY
else
  echo "gpu_check: no python3 with torch and a GPU: PyTorch half skipped"
fi

echo "== summary (images/s) ($(elapsed))"
"${py}" - "$results" <<'PY' 2>/dev/null || cat "$results"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
key = lambda r: f"{r['model']}" + (f"x{r['width']:g}" if r["width"] != 1 else "")
get = lambda i, k, m, t: next((r["images_per_s"] for r in rows if r["impl"] == i and key(r) == k and r["mode"] == m and r["tf32"] == t), None)
print(f"{'':32}{'netsplit':>12}{'pytorch':>12}{'ratio':>8}")
for k in dict.fromkeys(key(r) for r in rows):
    for m in ("train", "inference"):
        for t in (False, True):
            a, b = get("netsplit", k, m, t), get("pytorch", k, m, t)
            ratio = f"{a / b:.2f}" if a and b else "-"
            print(f"{k + ' ' + m + (' tf32' if t else ' fp32'):32}{a or '-':>12}{b or '-':>12}{ratio:>8}")
PY
rm -f "$results"
echo "gpu_check: done in $(elapsed), status $status"
exit $status
