#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, and the end-to-end tests in
# network namespaces (these need root; under CI=true they fail rather than skip).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# One cargo invocation: unit tests of every crate, then the e2e suite, which
# prints its own libtest-style summary.
cargo test --workspace --locked
