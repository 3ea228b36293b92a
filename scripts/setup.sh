#!/usr/bin/env bash
# Installs tltrain's Debian 12 dependencies (idempotent, run as root) and builds it in Release.
#   scripts/setup.sh              install + configure + build into ./build
#   scripts/setup.sh --deps-only  install packages only
set -euo pipefail

cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ccache pkg-config
  libtorch-dev
  libopenblas0-openmp  # LibTorch's BLAS: Debian's default netlib one made 1-thread training 8x slower
  libgloo-dev  # c10d's Gloo headers: data-parallel fit (docs/distributed.md)
  libopencv-dev  # ships OpenCVConfig.cmake; the narrower -dev packages do not
  libjpeg-dev    # region decoding calls libjpeg-turbo directly (src/data/image_io.cpp)
  libcli11-dev nlohmann-json3-dev libspdlog-dev libgtest-dev
  python3-torch python3-torchvision  # scripts/export_backbone.py and the Python references
  libgoogle-perftools-dev            # tcmalloc: glibc's malloc made fit's peak RSS grow with the data set (CMakeLists.txt)
  libcpp-httplib-dev                 # tltrain serve
  wrk python3-flask                  # bench/serve_bench.sh and its Flask reference server
  dataset-fashion-mnist              # the quick start's offline data
  chromium                           # the report test renders report.html headless (~290 MB, ~20 s to install)
  graphviz                           # tltrain inspect --diagram renders SVG with dot (without it: the .dot file)
  python3-onnx                       # tltrain export --format onnx (scripts/export_onnx.py) and its checker
  python3-sklearn                    # the features test reads tltrain features' .npy files with numpy and scikit-learn
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

[ "${1:-}" = "--deps-only" ] && exit 0

BUILD_DIR=${BUILD_DIR:-build}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}"
cmake --build "$BUILD_DIR" -j"$(nproc)"
