#!/usr/bin/env bash
# Docker-free build of the static appliance binaries (musl, fully static).
#
#   scripts/build-arm.sh [aarch64|armv7|all]    (default: all)
#
# Output: target/<triple>/release/pbx-certd, stripped (release profile).
# Where Docker runs, `cross build --release --target <triple>` does the same
# with Cross.toml; this script is the path for machines without Docker (CI).
#
# Why each step (README "Appliance builds" has the long form):
# - musl, not glibc: static glibc dlopens NSS modules for name lookups at run
#   time, which breaks on appliances with another libc.
# - zig (PyPI `ziglang`) through `cargo-zigbuild` is the C compiler and the
#   linker for both targets: ring compiles C and assembly, and zig ships
#   musl's crt files and libc for armhf and aarch64, so no multiarch apt setup
#   or second GCC is needed.
# - aarch64-unknown-linux-musl: rustup ships its std (`rustup target add`).
# - armv7-unknown-linux-musleabihf: rustup has no std download for it here,
#   so std is built from `rust-src` with -Zbuild-std; RUSTC_BOOTSTRAP=1 allows
#   that unstable cargo flag on the stable toolchain (the same compiler).
#
# Extra arguments after the target are passed to cargo; CARGO_SUBCMD=test
# (default: build) makes it `cargo zigbuild test`, which scripts/test-qemu.sh
# uses to build and run the test suite under qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."

which_arch="${1:-all}"
[ $# -gt 0 ] && shift
case "$which_arch" in
    aarch64) arches=(aarch64) ;;
    armv7) arches=(armv7) ;;
    all) arches=(aarch64 armv7) ;;
    *) echo "usage: scripts/build-arm.sh [aarch64|armv7|all] [cargo args...]" >&2; exit 2 ;;
esac

# Pinned tool versions (both verified to build these targets). Not zig 0.17:
# its libc replaces musl's malloc with Zig's, whose calloc writes every byte,
# so sled's zeroed histograms become resident (in-guest idle RSS 30 MiB
# instead of 3.4 MiB, measured with scripts/qemu-boot.sh). 0.15.2 links
# musl's own mallocng, whose calloc leaves fresh mmap'd pages untouched.
ZIGLANG_VERSION=0.15.2
CARGO_ZIGBUILD_VERSION=0.24.0

ensure_tools() {
    if [ "$(python3 -m ziglang version 2>/dev/null)" != "$ZIGLANG_VERSION" ] || ! command -v cargo-zigbuild >/dev/null 2>&1; then
        echo "build-arm: installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION (PyPI)" >&2
        python3 -m pip install -q "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
        hash -r
    fi
    for a in "${arches[@]}"; do
        case "$a" in
            aarch64) rustup target list --installed | grep -qx aarch64-unknown-linux-musl \
                         || rustup target add aarch64-unknown-linux-musl ;;
        esac
    done
    # armv7 always, aarch64 for the release binary: std built from source.
    rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
}

triple_of() {
    case "$1" in
        aarch64) echo aarch64-unknown-linux-musl ;;
        armv7) echo armv7-unknown-linux-musleabihf ;;
    esac
}

ensure_tools
sub="${CARGO_SUBCMD:-build}"
zsub=$([ "$sub" = build ] && echo zigbuild || echo "$sub")   # cargo-zigbuild's name for it
args=("$@")
[ ${#args[@]} -gt 0 ] || [ "$sub" != build ] || args=(--release)
release=false
[ "$sub" = build ] && [ "${args[*]}" = --release ] && release=true
for a in "${arches[@]}"; do
    triple=$(triple_of "$a")
    # The appliance binary (release build): std is compiled with our release
    # profile (-Zbuild-std: opt-level z, LTO across std, panic=abort) and
    # with no unwind tables anywhere (-C force-unwind-tables=no: with
    # panic=abort nothing unwinds; a panic still prints its message, only a
    # RUST_BACKTRACE backtrace is lost). On aarch64 this took the binary
    # from 4 299 336 to 3 592 416 bytes (README "Appliance builds"). The
    # --config array is added to .cargo/config.toml's rustflags, not in
    # place of them. Test builds (CARGO_SUBCMD=test) keep unwinding: the
    # test harness needs it.
    extra=()
    if $release; then
        extra=(-Zbuild-std=std,panic_abort --config "target.$triple.rustflags=[\"-C\",\"force-unwind-tables=no\"]")
    elif [ "$a" = armv7 ]; then
        extra=(-Zbuild-std=std,panic_abort)
    fi
    echo "build-arm: $triple (cargo zigbuild $sub ${extra[*]} ${args[*]})" >&2
    if [ ${#extra[@]} -gt 0 ]; then
        RUSTC_BOOTSTRAP=1 cargo-zigbuild "$zsub" --locked --target "$triple" \
            "${extra[@]}" "${args[@]}"
    else
        cargo-zigbuild "$zsub" --locked --target "$triple" "${args[@]}"
    fi
    if [ "$sub" = build ] && [ "${args[*]}" = --release ]; then
        bin="target/$triple/release/pbx-certd"
        echo "build-arm: $bin $(stat -c %s "$bin") bytes: $("$bin" --version 2>/dev/null | head -1 || echo '(not runnable here)')" >&2
    fi
done
