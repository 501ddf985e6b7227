#!/usr/bin/env bash
# build.sh [DIR [meson options...]]: configures (once) and builds sgdrd into DIR (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "$@"
fi
ninja -C "$dir"
