#!/usr/bin/env bash
# Coverage-guided fuzzing of every target in fuzz/ (cargo-fuzz, libFuzzer) on the
# stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z flags
# cargo-fuzz passes (sanitizer, coverage instrumentation); no nightly needed.
#
#   scripts/fuzz.sh [SECONDS]     # default 60 seconds per target
#
# Builds all targets once, then runs them one after another (never two at once),
# each for SECONDS over its corpus fuzz/corpus/<target> (new inputs libFuzzer
# finds are added there; they are not committed). Prints, per target, the
# executions, exec/s and libFuzzer's final coverage (`cov:` edges, `ft:`
# features). Exits non-zero if any target crashed; the crashing input stays in
# fuzz/artifacts/<target>/ (replay: `cargo fuzz run <target> <file>`).
#
# Not part of scripts/test.sh or CI (it takes minutes); CI runs the same entry
# functions over fixed corpora as unit tests (`cargo test -p bulkhead --lib fuzz`).
#
# Needs `cargo install cargo-fuzz --locked`. FUZZ_SANITIZER=address (default:
# AddressSanitizer, whose runtime ships with stable's rust-std) or none (faster).
# FUZZ_TARGETS="uapi config" runs only those.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"

SECS="${1:-60}"
SANITIZER="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

read -r -a TARGETS <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
echo "== building ${#TARGETS[@]} targets (sanitizer: $SANITIZER)"
cargo fuzz build -s "$SANITIZER" || exit 2

LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT
failed=()
summary=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t"
    echo "== $t: ${SECS}s"
    log="$LOGS/$t.log"
    cargo fuzz run -s "$SANITIZER" "$t" "corpus/$t" -- \
        -max_total_time="$SECS" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    cov="$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 | sed -E 's/.*(cov: [0-9]+ ft: [0-9]+).*/\1/')"
    corp="$(grep -E '^#[0-9]+.*corp: ' "$log" | tail -1 | sed -E 's/.*corp: ([0-9]+)\/.*/\1/')"
    if [ "$rc" -eq 0 ]; then
        line="$(printf '%-15s ok     execs %-10s exec/s %-7s %s corpus %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${corp:-?}")"
    else
        failed+=("$t")
        crash="$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //')"
        grep -E '^#[0-9]+' "$log" | tail -1
        grep -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$log" | head -3
        tail -n 30 "$log" >&2
        line="$(printf '%-15s FAILED (exit %s) crash: %s' "$t" "$rc" "${crash:-see log above}")"
    fi
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary (${SECS}s per target, sanitizer: $SANITIZER)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
