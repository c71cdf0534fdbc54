#!/usr/bin/env bash
# Fuzz pbx-certd's untrusted-input paths with libFuzzer (tests/fuzz, the
# cargo-fuzz layout; entry functions in src/fuzz_entry.rs).
#
# cargo-fuzz is not needed: the targets are built with the rustc flags
# cargo-fuzz uses (SanitizerCoverage passes with inline 8-bit counters,
# PC table, compare tracing and stack depth; --cfg fuzzing; debug assertions
# and overflow checks; release optimisation; --target so build scripts and
# proc macros stay uninstrumented). FUZZ_SANITIZER=address adds
# -Zsanitizer=address (needs RUSTC_BOOTSTRAP=1 on a stable toolchain, set
# here). Builds go to target/fuzz/<sanitizer>/, scratch corpora and crash
# artifacts to target/fuzz/work/.
#
#   scripts/fuzz.sh list                 the targets
#   scripts/fuzz.sh build                build every target
#   scripts/fuzz.sh smoke                build, then a short bounded run of each
#                                        target over its committed corpus (CI)
#   scripts/fuzz.sh run TARGET [SECS]    fuzz one target (default 600 s); new
#                                        inputs go to target/fuzz/work/corpus/TARGET
#
# Environment: FUZZ_SANITIZER=none|address (default none), SMOKE_SECS (per
# target, default 20), SMOKE_RUNS (per target, default 50000), FUZZ_JOBS
# (cargo build jobs, default 2). A crash or panic stops the script with the
# input saved under target/fuzz/work/artifacts/TARGET/; reproduce with
# `target/fuzz/<sanitizer>/<triple>/release/TARGET FILE`, then add the file
# to tests/fuzz/corpus/TARGET/ once fixed (tests/fuzz_corpus.rs replays it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
targets=(import http_request tls_client_hello acme_response dns_answer)
sanitizer=${FUZZ_SANITIZER:-none}
triple=$(rustc -vV | sed -n 's/^host: //p')
out="$root/target/fuzz/$sanitizer"
work="$root/target/fuzz/work"

flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    --cfg fuzzing
    -Cdebug-assertions
    -Coverflow-checks
)
case "$sanitizer" in
    none) ;;
    address) flags+=(-Zsanitizer=address) ;;
    *) echo "FUZZ_SANITIZER must be none or address" >&2; exit 2 ;;
esac

build() {
    local start=$SECONDS
    # The fuzz crate has its own lock file, which pins pbx-certd's
    # dependencies too: a dependency added to Cargo.toml must reach it.
    if ! cargo metadata --format-version 1 --locked --manifest-path tests/fuzz/Cargo.toml >/dev/null 2>&1; then
        echo "fuzz: tests/fuzz/Cargo.lock is out of date with Cargo.toml; refresh it with" >&2
        echo "      cargo metadata --format-version 1 --manifest-path tests/fuzz/Cargo.toml >/dev/null" >&2
        echo "      and commit it (only additions/removals of pbx-certd's own dependencies)" >&2
        exit 1
    fi
    # RUSTC_BOOTSTRAP: -Z flags (the sanitizer) on a stable toolchain.
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="${flags[*]}" CARGO_TARGET_DIR="$out" \
        cargo build --manifest-path tests/fuzz/Cargo.toml --locked --release \
        --target "$triple" --bins -j "${FUZZ_JOBS:-2}"
    echo "fuzz: built ${#targets[@]} targets ($sanitizer) in $((SECONDS - start)) s"
}

bin() { echo "$out/$triple/release/$1"; }

known() {
    local t
    for t in "${targets[@]}"; do [ "$t" = "$1" ] && return 0; done
    echo "unknown target $1 (scripts/fuzz.sh list)" >&2
    exit 2
}

# fuzz TARGET SECS RUNS SCRATCH: libFuzzer writes new inputs to SCRATCH and
# only reads the committed corpus.
fuzz() {
    local target=$1 secs=$2 runs=$3 scratch=$4
    mkdir -p "$scratch" "$work/artifacts/$target"
    "$(bin "$target")" -max_total_time="$secs" -runs="$runs" -timeout=10 \
        -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/$target/" \
        "$scratch" "tests/fuzz/corpus/$target"
}

case "${1:-}" in
    list)
        printf '%s\n' "${targets[@]}"
        ;;
    build)
        build
        ;;
    smoke)
        start=$SECONDS
        build
        mkdir -p "$work"
        for t in "${targets[@]}"; do
            scratch=$(mktemp -d)
            t0=$SECONDS
            if ! fuzz "$t" "${SMOKE_SECS:-20}" "${SMOKE_RUNS:-50000}" "$scratch" \
                >"$work/smoke-$t.log" 2>&1; then
                rm -rf "$scratch"
                tail -40 "$work/smoke-$t.log" >&2
                echo "fuzz smoke: $t FAILED (log $work/smoke-$t.log, input in $work/artifacts/$t/)" >&2
                exit 1
            fi
            rm -rf "$scratch"
            stats=$(grep -E '^stat::number_of_executed_units' "$work/smoke-$t.log" | awk '{print $2}')
            echo "fuzz smoke: $t ok, ${stats:-?} runs in $((SECONDS - t0)) s"
        done
        echo "fuzz smoke: all ${#targets[@]} targets ok in $((SECONDS - start)) s (build included)"
        ;;
    run)
        [ $# -ge 2 ] || { echo "usage: scripts/fuzz.sh run TARGET [SECS]" >&2; exit 2; }
        known "$2"
        build
        fuzz "$2" "${3:-600}" -1 "$work/corpus/$2"
        ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 2
        ;;
esac
