#!/usr/bin/env bash
# run.sh: installs what is missing, builds, and starts the daemon on 127.0.0.1:8080 with
# its data in ./var; on a fresh data folder it registers Fashion-MNIST and queues a demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
exec build/daemon/sgdrd --listen 127.0.0.1:8080 --data-dir ./var --demo "$@"
