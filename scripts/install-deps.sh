#!/usr/bin/env bash
# install-deps.sh: installs whatever sgdrd needs that this Debian 12 machine lacks.
# Idempotent: a machine that has everything runs no apt-get and no npm.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(
  build-essential meson ninja-build pkg-config
  libmicrohttpd-dev libjansson-dev libopenblas-openmp-dev libopenblas0-openmp
  libpng-dev libjpeg62-turbo-dev zlib1g-dev libsqlite3-dev sqlite3 libcmocka-dev libarchive-dev
  python3-torch python3-torchvision python3-pytest python3-numpy
  dataset-fashion-mnist chromium
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node.js may come from elsewhere than Debian (NodeSource's nodejs bundles npm and conflicts
# with Debian's npm): only a machine without the commands gets Debian's packages.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The dashboard's chart library and the browser test's driver, pinned in package-lock.json.
if [ -f web/package.json ] && [ ! -d web/node_modules ]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ -f tests/e2e/package.json ] && [ ! -d tests/e2e/node_modules ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
