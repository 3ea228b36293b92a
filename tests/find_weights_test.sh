#!/usr/bin/env bash
# scripts/find_weights.sh takes the quick start's weights in the documented order: TLTRAIN_WEIGHTS,
# torchvision's cache file, the download (here from a local file:// URL), ../shared; none → exit 1.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
expect() {  # expect NAME WANT_RC WANT_OUTPUT -- env assignments...
  local name=$1 want_rc=$2 want=$3
  shift 4
  local out rc=0
  out=$(env -i PATH="$PATH" HOME="$tmp/home" "$@" bash "$src/scripts/find_weights.sh" 2>"$tmp/err") || rc=$?
  if [ "$rc" != "$want_rc" ] || [ "$out" != "$want" ]; then
    echo "FAIL $name: rc $rc (want $want_rc), output '$out' (want '$want'); stderr:"; cat "$tmp/err"
    fails=$((fails + 1))
  else
    echo "ok   $name"
  fi
}
mkdir -p "$tmp/home" "$tmp/shared/models" "$tmp/torch/hub/checkpoints" "$tmp/web"
echo weights > "$tmp/mine.pth"
echo shared > "$tmp/shared/models/mobilenet_v2_imagenet.pth"
echo served > "$tmp/web/weights.pth"
cache=$tmp/torch/hub/checkpoints/mobilenet_v2-b0353104.pth
offline=(TLTRAIN_OFFLINE=1 TORCH_HOME="$tmp/torch" TLTRAIN_SHARED_DIR="$tmp/shared")

# 4. only the shared folder; 1. TLTRAIN_WEIGHTS beats everything; a missing one is an error.
expect "shared folder when nothing else" 0 "shared	$tmp/shared/models/mobilenet_v2_imagenet.pth" -- "${offline[@]}"
expect "TLTRAIN_WEIGHTS first" 0 "env	$tmp/mine.pth" -- "${offline[@]}" TLTRAIN_WEIGHTS="$tmp/mine.pth"
expect "TLTRAIN_WEIGHTS missing is an error" 2 "" -- "${offline[@]}" TLTRAIN_WEIGHTS="$tmp/nope.pth"
# 3. the download lands in torchvision's cache file and beats the shared folder.
expect "download before shared" 0 "download	$cache" -- TORCH_HOME="$tmp/torch" TLTRAIN_SHARED_DIR="$tmp/shared" \
  TLTRAIN_WEIGHTS_URL="file://$tmp/web/weights.pth"
if [ "$(cat "$cache" 2>/dev/null)" != served ]; then echo "FAIL the download did not write $cache"; fails=$((fails + 1)); fi
# 2. the cache file, once there, is used without a download; XDG_CACHE_HOME places it when TORCH_HOME is unset.
expect "cache before download" 0 "cache	$cache" -- TORCH_HOME="$tmp/torch" TLTRAIN_SHARED_DIR="$tmp/shared" \
  TLTRAIN_WEIGHTS_URL="file://$tmp/nothing-here.pth"
expect "XDG cache" 0 "cache	$cache" -- "${offline[@]/TORCH_HOME=*/XDG_CACHE_HOME=$tmp}"
# A failed download falls through to the shared folder, then to nothing (exit 1: train from scratch).
rm "$cache"
expect "failed download falls through" 0 "shared	$tmp/shared/models/mobilenet_v2_imagenet.pth" -- TORCH_HOME="$tmp/torch" \
  TLTRAIN_SHARED_DIR="$tmp/shared" TLTRAIN_WEIGHTS_URL="file://$tmp/nothing-here.pth"
expect "none anywhere" 1 "" -- "${offline[@]/TLTRAIN_SHARED_DIR=*/TLTRAIN_SHARED_DIR=$tmp/empty}"
[ "$fails" -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "find_weights: all cases passed"
