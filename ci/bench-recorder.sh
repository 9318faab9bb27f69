#!/usr/bin/env bash
# The recording benchmark: the client loop against an in-process no-op target (concurrency 1,
# 10, 100) and against an in-process echo server over loopback TCP (concurrency 1, 10), each
# with and without recording (7 interleaved pairs of 1.5 s runs per cell, medians). Prints the
# CPU recording adds per op (and the writer thread's share), the throughput lost against the
# bare loop (and to stamping alone, the floor under any recorder), and the throughput lost against a real loopback round trip; then writes a 10M-op
# history with bounded memory. About three minutes. Pass --quick for a 30-second version.
set -euo pipefail
cd "$(dirname "$0")/.."
# harness links the etcd adapter, whose gRPC client (etcd-client) needs protoc to build.
command -v protoc >/dev/null 2>&1 ||
  { echo "ci/bench-recorder.sh: protoc is missing; install Debian's protobuf-compiler first" >&2; exit 254; }
cargo bench -p harness --bench recorder -- "$@"
