#!/usr/bin/env bash
# Runs every test: formatting, lints (the router build without the demo, and
# everything with it), unit tests of every crate, the web UI's in-process tests,
# then the end-to-end tests in network namespaces (root; under CI=true they fail
# rather than skip; the browser and schemathesis tests need chromium,
# chromium-driver and schemathesis, see README). The e2e suite runs last so its
# summary closes the output.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy -p bulkhead --locked -- -D warnings
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo test --workspace --lib --all-features --locked
cargo test -p bulkhead-web --test '*' --locked
cargo test -p bulkhead --features demo --test e2e --locked
