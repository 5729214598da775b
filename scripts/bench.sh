#!/usr/bin/env bash
# Runs the criterion benchmarks (codec, ...); reports land in target/criterion/.
# The loopback load generator of DESIGN.md §6 comes later.
#
#   scripts/bench.sh                 all benchmarks
#   scripts/bench.sh decode          only those whose name matches "decode"
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --workspace "$@"
