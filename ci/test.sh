#!/usr/bin/env bash
# Sets up and runs splitbrain's test suite on a fresh machine that has the Rust toolchain:
# installs the Debian packages the build needs (protoc, for etcd-client's generated gRPC code)
# and those the tests drive for real (network namespaces and firewall rules, headless Chromium
# for the report test, etcd, Redis, PostgreSQL, and Python, Node.js, Ruby and Go for the
# Maelstrom nodes written in those languages) when they are missing, then runs the format and
# lint checks and every test of the workspace against real processes.
set -euo pipefail
cd "$(dirname "$0")/.."

# command-to-look-for:debian-package
needed=(
  protoc:protobuf-compiler
  ip:iproute2
  nft:nftables
  iptables:iptables
  chromium:chromium
  etcd:etcd-server
  etcdctl:etcd-client
  redis-server:redis-server
  redis-sentinel:redis-sentinel
  pg_ctlcluster:postgresql
  dot:graphviz
  python3:python3
  node:nodejs
  ruby:ruby
  go:golang-go
)
missing=()
for pair in "${needed[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ci/test.sh: missing packages ${missing[*]}; run as root (or install them) first" >&2
    exit 254
  fi
  echo "ci/test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Build every binary first: the end-to-end tests run the real splitbrain and refnode.
cargo build --workspace --all-targets
cargo test --workspace
