#!/usr/bin/env bash
# The recording benchmark: ops/s recorded against an in-process no-op target at concurrency
# 1, 10 and 100, the cost of recording against the same loop without it (median of 5 runs of
# 2 s each), and a 10M-op history written with bounded memory. About two minutes.
# Pass --quick for a 20-second version.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p harness --bench recorder -- "$@"
