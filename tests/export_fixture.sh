#!/usr/bin/env bash
# ctest fixture: exports real backbones with scripts/export_backbone.py for the Exported* tests.
#   export_fixture.sh OUT_DIR SHARED_DIR
# Every architecture the exporter supports, with --weights none, in one Python process (OUT_DIR/ARCH.pt
# and OUT_DIR/ARCH.meta.json), except the giants below: measured on the 2-core dev machine, all 80 take
# 6.8 min and 17.8 GB, these 9 alone 2.7 min and 10.3 GB, the other 71 about 4 min and 7.5 GB
# (the giants' own tests, Giant/EveryGiant in tests/exported_test.cpp, export each one by itself).
set -euo pipefail
out=$1 shared=$2
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
py=/usr/bin/python3
exporter=$src/scripts/export_backbone.py
giants=regnet_x_32gf,regnet_y_32gf,regnet_y_128gf,wide_resnet101_2,efficientnet_v2_l,convnext_large,vit_l_16,vit_l_32,vit_h_14
# --skip-up-to-date re-exports only what is missing or older than the exporter: keeps repeated local runs fast.
if ! "$py" "$exporter" --arch all --exclude "$giants" --weights none --out-dir "$out" --skip-up-to-date 2>"$out/export.log"; then
  tail -n 20 "$out/export.log" >&2
  exit 1
fi
if [ -f "$shared/models/mobilenet_v2_imagenet.pth" ]; then
  if [ ! -s "$out/mobilenet_v2_imagenet.pt" ] || [ "$exporter" -nt "$out/mobilenet_v2_imagenet.pt" ]; then
    "$py" "$exporter" --arch mobilenet_v2 --weights "$shared/models/mobilenet_v2_imagenet.pth" \
      --out "$out/mobilenet_v2_imagenet.pt"
    "$py" "$src/tests/python/save_classifier.py" --weights "$shared/models/mobilenet_v2_imagenet.pth" \
      --out "$out/mobilenet_v2_classifier.pt"
  fi
else
  echo "export_fixture: $shared absent — the ImageNet-weights test will skip"
fi
echo "export_fixture: backbones in $out"
