#!/usr/bin/env bash
# install-deps.sh [--test]: installs whatever sgdrd needs that this Debian 12 machine lacks.
# With no flag: what building and running the daemon and its dashboard needs. With --test:
# that, and what only the test suites use (PyTorch for the parity tests, pytest, Chromium
# and its driver for the browser tests, nginx and openssl for the TLS deployment test,
# promtool for the /metrics test, clang with libFuzzer for the fuzz harnesses).
# Idempotent: a machine that has everything runs no apt-get and no npm.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
case "${1:-}" in
  '') ;;
  --test) with_tests=1 ;;
  -h | --help)
    echo "usage: scripts/install-deps.sh [--test]"
    exit 0 ;;
  *)
    echo "install-deps: unknown argument '$1' (usage: scripts/install-deps.sh [--test])" >&2
    exit 2 ;;
esac
if [ $# -gt 1 ]; then
  echo "install-deps: one argument at most (usage: scripts/install-deps.sh [--test])" >&2
  exit 2
fi

# The build: compiler, meson, and the libraries the daemon and the sgdr client link. meson configures the test
# suites with the build, so cmocka's headers are needed to build at all; node too (below).
# Open MPI: the data-parallel worker links it and the daemon starts jobs with its mpirun.
# oneDNN: libdnnl-dev for dnnl.h at build time; nothing links it, the engine dlopens
# libdnnl.so.2 (libdnnl2, a dependency of libdnnl-dev) where the bf16 mode runs its kernels.
pkgs=(
  build-essential meson ninja-build pkg-config
  libmicrohttpd-dev libjansson-dev libopenblas-openmp-dev libopenblas0-openmp
  libpng-dev libjpeg62-turbo-dev zlib1g-dev libsqlite3-dev libarchive-dev libcmocka-dev
  libcurl4-openssl-dev libdnnl-dev
  dataset-fashion-mnist
  libopenmpi-dev openmpi-bin
)
if [ $with_tests -eq 1 ]; then
  pkgs+=(python3-torch python3-torchvision python3-pytest python3-numpy chromium nginx openssl
    prometheus clang libclang-rt-14-dev libomp-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# npm fetches uPlot, which the daemon serves to the dashboard. Node.js may come from elsewhere
# than Debian (NodeSource's nodejs bundles npm and conflicts with Debian's npm): only a
# machine without the commands gets Debian's packages.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The dashboard's chart library, pinned in web/package-lock.json.
if [ ! -f web/node_modules/uplot/dist/uPlot.iife.min.js ]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
# The browser test's driver, pinned in tests/e2e/package-lock.json.
if [ $with_tests -eq 1 ] && [ ! -d tests/e2e/node_modules/playwright-core ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
