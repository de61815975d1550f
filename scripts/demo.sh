#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: set up, build, and run the seed example through the
# CLI. Extra arguments go to `strata features` (e.g. --weights resnet18.safetensors --input x.npy).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec "${STRATA_BUILD_DIR:-build}/apps/strata" features --model resnet18 --layers layer1:feat1,layer3:feat2 "$@"
