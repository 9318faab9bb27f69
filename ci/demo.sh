#!/usr/bin/env bash
# Builds splitbrain and runs the demo: two short test runs against a real 3-node refnode cluster
# with leader kills, one configuration that keeps its guarantees and one that breaks them.
# Prints each run's summary table, verdict and store directory. Extra flags go to both runs.
set -uo pipefail
cd "$(dirname "$0")/.."
# The etcd adapter's gRPC client (etcd-client) generates its code with protoc at build time.
if ! command -v protoc >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ci/demo.sh: protoc is missing; install Debian's protobuf-compiler (or run as root) first" >&2
    exit 254
  fi
  echo "ci/demo.sh: installing protobuf-compiler"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends protobuf-compiler >/dev/null ||
    { echo "ci/demo.sh: could not install protobuf-compiler" >&2; exit 254; }
fi
cargo build --release --workspace --bins || exit 255
# The binary is where cargo put it: under CARGO_TARGET_DIR when that is set.
sb="${CARGO_TARGET_DIR:-target}/release/splitbrain"
seed=${SEED:-42}

echo "== 1/2: sync replication, reads at the leader, leader kills: expected valid"
"$sb" run --nodes 3 --replication sync --read-routing leader --nemesis kill \
  --concurrency 5 --time-limit 20 --rate 200 --seed "$seed" --store store "$@"
first=$?

echo
echo "== 2/2: async replication, reads at any node, leader kills: expected INVALID"
"$sb" run --nodes 3 --replication async --read-routing any --nemesis kill \
  --concurrency 5 --time-limit 20 --rate 200 --seed "$seed" --store store "$@"
second=$?

echo
echo "demo: run 1 exited $first (0 = valid), run 2 exited $second (1 = invalid); reports under store/"
[ "$first" -le 2 ] && [ "$second" -le 2 ]
