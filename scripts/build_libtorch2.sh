#!/usr/bin/env bash
# Builds tltrain against PyPI's LibTorch 2.x (the CUDA wheel) instead of Debian's libtorch-dev 1.13.
# Idempotent: the venv and the build directory are reused when already there.
#   scripts/build_libtorch2.sh            venv + pip install torch + configure + build
#   scripts/build_libtorch2.sh --test     ... then ctest, without the nine giant.* backbone tests
#   scripts/build_libtorch2.sh --test-all ... then the whole ctest suite (giants: +8 GB RAM, +7.5 GB disk)
# Environment (all optional):
#   TORCH2_VENV   venv holding the wheel (default ${XDG_CACHE_HOME:-$HOME/.cache}/tltrain/venv-torch2; ~5.3 GB)
#   TORCH2_SPEC   pip requirement (default "torch"; e.g. "torch==2.15.0")
#   TORCH2_PYTHON interpreter that creates the venv (default /usr/bin/python3, Debian's; it must have venv)
#   BUILD_DIR     build directory (default build-lt2, relative to the repository)
#   CUDACXX       nvcc for CMake's CUDA check (default /usr/local/cuda/bin/nvcc, else nvcc on PATH)
#   TORCH_CUDA_ARCH_LIST (default 9.0), JOBS (default nproc), NICE (default 19)
# Debian's python3-torch (1.13, /usr/lib/python3/dist-packages) is never touched: the wheel lives in its own venv
# without system site packages, and the tests keep using /usr/bin/python3 to export backbones.
set -euo pipefail
cd "$(dirname "$0")/.."

run_tests=""
case "${1:-}" in
  --test) run_tests=quick ;;
  --test-all) run_tests=all ;;
  "") ;;
  *) echo "usage: $0 [--test|--test-all]" >&2; exit 2 ;;
esac

venv=${TORCH2_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tltrain/venv-torch2}
spec=${TORCH2_SPEC:-torch}
py_for_venv=${TORCH2_PYTHON:-/usr/bin/python3}
build=${BUILD_DIR:-build-lt2}
jobs=${JOBS:-$(nproc)}
nice_level=${NICE:-19}
say() { echo "build_libtorch2: $*"; }

# 1. Debian packages for everything but Torch (OpenCV, spdlog, CLI11, gtest, gloo, httplib, python3-torch for the
#    test exports), as the normal build uses them; python3-venv for the venv.
bash scripts/setup.sh --deps-only
if ! "$py_for_venv" -c 'import ensurepip, venv' 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv
fi

# 2. The wheel, in its own venv.
if [ ! -x "$venv/bin/python" ]; then
  say "creating venv $venv"
  mkdir -p "$(dirname "$venv")"
  "$py_for_venv" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  say "pip install $spec into $venv (about 3.5 GB of wheels: torch ~540 MB, the nvidia-* CUDA runtime wheels ~3 GB)"
  "$venv/bin/pip" install --quiet "$spec"
fi
info=$("$venv/bin/python" -c 'import os, torch
print(os.path.dirname(torch.__file__), torch.__version__, torch.version.cuda or "-", int(torch._C._GLIBCXX_USE_CXX11_ABI))' 2>/dev/null) ||
  { say "cannot import torch from $venv (remove it to reinstall)" >&2; exit 1; }
read -r torch_dir torch_version torch_cuda torch_abi <<<"$info"
[ "$torch_cuda" != - ] || torch_cuda=""
say "torch $torch_version (CUDA ${torch_cuda:-none}, _GLIBCXX_USE_CXX11_ABI=$torch_abi) in $torch_dir"
if [ "$torch_abi" != 1 ]; then
  say "this wheel uses the old C++ ABI (0); Debian's OpenCV, spdlog and gtest use ABI 1: linking would fail" >&2
  exit 1
fi

# 3. Configure. The torch package directory itself is the prefix, not torch.utils.cmake_prefix_path
#    (.../share/cmake): with that one TorchConfig's find_library() finds Debian's /usr/lib/.../libtorch.so and
#    libc10.so before the wheel's.
cmake_args=(-DCMAKE_PREFIX_PATH="$torch_dir" -DCMAKE_BUILD_TYPE=Release)
if [ -n "$torch_cuda" ]; then
  nvcc=${CUDACXX:-}
  [ -n "$nvcc" ] || { [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc; } || true
  [ -n "$nvcc" ] || nvcc=$(command -v nvcc || true)
  if [ -z "$nvcc" ]; then
    say "the CUDA wheel's CMake files (Caffe2 public/cuda.cmake) need an nvcc (CUDA >= 12.6) at configure time;" >&2
    say "install a CUDA toolkit or set CUDACXX" >&2
    exit 1
  fi
  nvcc_version=$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
  [ "${nvcc_version%%.*}" = "${torch_cuda%%.*}" ] ||
    say "note: nvcc $nvcc_version and the wheel's CUDA $torch_cuda differ in major version (only nvcc's headers are used)"
  # Link the CUDA runtime libraries that Caffe2's CMake names from the wheels, not from the system toolkit:
  # otherwise the toolkit's lib directory lands in the link rpath, ld resolves libtorch_cuda.so's libnccl.so.2 to the
  # toolkit's older NCCL and fails on undefined nccl* symbols.
  nvidia_dir=$(dirname "$torch_dir")/nvidia
  cudart=$(find "$nvidia_dir" -name 'libcudart.so.[0-9]*' -not -name '*.a' 2>/dev/null | sort | head -n1)
  nvrtc=$(find "$nvidia_dir" -name 'libnvrtc.so.[0-9]*' 2>/dev/null | sort | head -n1)
  cmake_args+=(-DCMAKE_CUDA_COMPILER="$nvcc" -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}")
  [ -z "$cudart" ] || cmake_args+=(-DCUDA_cudart_LIBRARY="$cudart")
  [ -z "$nvrtc" ] || cmake_args+=(-DCUDA_nvrtc_LIBRARY="$nvrtc" -DCUDA_NVRTC_LIB="$nvrtc")
fi
command -v ccache >/dev/null && cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
say "cmake -S . -B $build ${cmake_args[*]}"
cmake -S . -B "$build" "${cmake_args[@]}"

# 4. Build.
start=$(date +%s)
nice -n "$nice_level" cmake --build "$build" -j"$jobs"
say "built in $(( $(date +%s) - start )) s: $build/tltrain, $build/tests/tltrain_tests"
"$build/tltrain" --version

# 5. Tests (optional), as scripts/test.sh runs them.
[ -n "$run_tests" ] || exit 0
cd "$build"
if [ "$run_tests" = quick ]; then
  nice -n "$nice_level" ctest --output-on-failure -j"$jobs" --timeout 900 -E '^giant\.'
else
  nice -n "$nice_level" ctest --output-on-failure -j"$jobs" --timeout 900
fi
