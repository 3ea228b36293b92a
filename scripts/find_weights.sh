#!/usr/bin/env bash
# Finds ImageNet weights for the quick start's MobileNetV2 (a torchvision state dict), in order:
#   1. $TLTRAIN_WEIGHTS (a path the user chose: missing is an error, not a fallback)
#   2. torchvision's cache file: $TORCH_HOME/hub/checkpoints/mobilenet_v2-b0353104.pth
#      (TORCH_HOME defaults to ${XDG_CACHE_HOME:-~/.cache}/torch, as torch.hub's)
#   3. the download from $TLTRAIN_WEIGHTS_URL (default: torchvision's URL) into that cache file;
#      TLTRAIN_OFFLINE=1 skips it
#   4. the team's asset folder beside the checkout: ${TLTRAIN_SHARED_DIR:-../shared}/models/mobilenet_v2_imagenet.pth
# Prints "SOURCE<TAB>PATH" (SOURCE: env, cache, download, shared) and exits 0, or exits 1 when
# there are none (the quick start then trains from scratch); what it tried goes to stderr.
set -uo pipefail
cd "$(dirname "$0")/.."
file=mobilenet_v2-b0353104.pth
url=${TLTRAIN_WEIGHTS_URL:-https://download.pytorch.org/models/$file}
cache=${TORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/torch}/hub/checkpoints/$file
shared=$(realpath -m "${TLTRAIN_SHARED_DIR:-../shared}/models/mobilenet_v2_imagenet.pth")

if [ -n "${TLTRAIN_WEIGHTS:-}" ]; then
  if [ ! -f "$TLTRAIN_WEIGHTS" ]; then
    echo "find_weights: TLTRAIN_WEIGHTS='$TLTRAIN_WEIGHTS' is not a file: point it at a torchvision mobilenet_v2 state dict, or unset it" >&2
    exit 2
  fi
  printf 'env\t%s\n' "$TLTRAIN_WEIGHTS"
  exit 0
fi
echo "find_weights: TLTRAIN_WEIGHTS is unset" >&2
if [ -f "$cache" ]; then
  printf 'cache\t%s\n' "$cache"
  exit 0
fi
echo "find_weights: no torchvision cache file $cache" >&2
if [ "${TLTRAIN_OFFLINE:-0}" != 1 ]; then
  echo "find_weights: downloading $url" >&2
  # torch.hub's downloader checks the SHA-256 prefix in the file name, and a timeout keeps an
  # offline machine with a black-holed route from hanging for minutes.
  if /usr/bin/python3 - "$url" "$cache" <<'PY' >&2
import os, socket, sys, torch.hub
url, cache = sys.argv[1], sys.argv[2]
socket.setdefaulttimeout(15)
match = torch.hub.HASH_REGEX.search(os.path.basename(url))
os.makedirs(os.path.dirname(cache), exist_ok=True)
try:
    torch.hub.download_url_to_file(url, cache, hash_prefix=match.group(1) if match else None, progress=False)
except Exception as e:
    sys.exit(f"find_weights: download failed: {getattr(e, 'reason', None) or e}")
PY
  then
    printf 'download\t%s\n' "$cache"
    exit 0
  fi
else
  echo "find_weights: TLTRAIN_OFFLINE=1: no download" >&2
fi
if [ -f "$shared" ]; then
  printf 'shared\t%s\n' "$shared"
  exit 0
fi
echo "find_weights: no $shared" >&2
exit 1
