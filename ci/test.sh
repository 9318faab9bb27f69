#!/usr/bin/env bash
# Sets up and runs splitbrain's test suite on a fresh machine that has the Rust toolchain.
# The tests need nothing beyond the Rust toolchain today (later targets add Debian packages,
# installed here with apt-get when missing). Runs the
# format and lint checks and every test of the workspace against real processes.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Build every binary first: the end-to-end tests run the real splitbrain and refnode.
cargo build --workspace --all-targets
cargo test --workspace
