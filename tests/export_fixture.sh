#!/usr/bin/env bash
# ctest fixture: exports real backbones with scripts/export_backbone.py for the Exported* tests.
#   export_fixture.sh OUT_DIR SHARED_DIR
set -euo pipefail
out=$1 shared=$2
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
py=/usr/bin/python3
for arch in mobilenet_v2 efficientnet_b0 resnet50 vgg16; do
  # Re-export only when the exporter changed: keeps repeated local runs fast.
  if [ ! -s "$out/$arch.pt" ] || [ "$src/scripts/export_backbone.py" -nt "$out/$arch.pt" ]; then
    "$py" "$src/scripts/export_backbone.py" --arch "$arch" --weights none --out "$out/$arch.pt" --meta-out "$out/$arch.meta.json" 2>"$out/$arch.log"
  fi
done
if [ -f "$shared/models/mobilenet_v2_imagenet.pth" ]; then
  if [ ! -s "$out/mobilenet_v2_imagenet.pt" ] || [ "$src/scripts/export_backbone.py" -nt "$out/mobilenet_v2_imagenet.pt" ]; then
    "$py" "$src/scripts/export_backbone.py" --arch mobilenet_v2 --weights "$shared/models/mobilenet_v2_imagenet.pth" \
      --out "$out/mobilenet_v2_imagenet.pt"
    "$py" "$src/tests/python/save_classifier.py" --weights "$shared/models/mobilenet_v2_imagenet.pth" \
      --out "$out/mobilenet_v2_classifier.pt"
  fi
else
  echo "export_fixture: $shared absent — the ImageNet-weights test will skip"
fi
echo "export_fixture: backbones in $out"
