#!/usr/bin/env bash
# Times splitbrain's linearizability checker against Porcupine on Porcupine's own corpus, both
# measured here, now, on this machine, and prints per-file ratios (baseline / ours: above 1 means
# splitbrain is faster), the etcd total, kv c50-ok, kv c10-ok without the per-key split, peak
# memory and any verdict disagreement.
#
#   PORCUPINE_SRC=/path/to/porcupine ci/bench-linearizable.sh [RUNS]
#
# PORCUPINE_SRC is a checkout of https://github.com/anishathalye/porcupine (MIT); Go comes from
# Debian's golang-go, installed here when missing. The timing tool for Porcupine is
# ../shared/tools/porcupine-bench (ours; it links Porcupine's source through a replace directive).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
tool=${PORCUPINE_BENCH:-../shared/tools/porcupine-bench/run.sh}
[ -n "${PORCUPINE_SRC:-}" ] || { echo "set PORCUPINE_SRC to a checkout of github.com/anishathalye/porcupine" >&2; exit 254; }
[ -x "$tool" ] || { echo "porcupine-bench not found at $tool (set PORCUPINE_BENCH)" >&2; exit 254; }
if ! command -v go >/dev/null; then
  apt-get update -qq && apt-get install -y -qq golang-go >/dev/null
fi
# Absolute: cargo runs benches from the crate directory.
corpus=$PWD/histories/tests/data/porcupine
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== Porcupine (median of $runs) on the etcd logs and kv c10-ok, c50-ok"
"$tool" -runs "$runs" "$corpus"/jepsen/*.log "$corpus"/kv/c10-ok.txt "$corpus"/kv/c50-ok.txt > "$out/porcupine.tsv"
echo "== Porcupine without the per-key split on kv c10-ok"
"$tool" -runs "$runs" -no-partition "$corpus"/kv/c10-ok.txt > "$out/porcupine-whole.tsv"

cargo build --release -q -p checkers --benches
echo
echo "== splitbrain vs Porcupine: file, verdict, ours ms, Porcupine ms, ratio"
cargo bench -q -p checkers --bench linearizable -- --runs "$runs" --baseline "$out/porcupine.tsv" \
  "$corpus"/jepsen/*.log "$corpus"/kv/c10-ok.txt "$corpus"/kv/c50-ok.txt
echo
echo "== without the per-key split: kv c10-ok"
cargo bench -q -p checkers --bench linearizable -- --runs "$runs" --no-partition \
  --baseline "$out/porcupine-whole.tsv" "$corpus"/kv/c10-ok.txt
