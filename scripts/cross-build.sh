#!/usr/bin/env bash
# Builds the router binary for OpenWrt's CPUs without the OpenWrt SDK, and an
# .ipk for each (OpenWrt 24.10's opkg), with cargo-zigbuild (zig from PyPI's
# `ziglang`, so C code — SQLite, ring — cross-compiles with no sysroot).
#
#   scripts/cross-build.sh                  # aarch64, armv7, mipsel, mips, x86_64
#   scripts/cross-build.sh aarch64 mipsel   # these
#
# Rust's standard library is built from source for each target (cargo's
# `-Z build-std`, with std's `optimize_for_size`), not taken prebuilt from
# rustup:
# - the prebuilt std is compiled for speed and carries unwind tables; built
#   here with the release profile (opt-level "z", panic = "abort", LTO
#   across std and the daemon) the aarch64 binary is 1.5 MB smaller
#   (BENCHMARKS.md, "Router builds");
# - it needs no rustup download per target: only the toolchain's own
#   `rust-src` (the same release's source, so the std is exactly the stable
#   one). armv7 (whose prebuilt std this project's CI cannot download) and
#   the MIPS routers (Rust's tier 3: no prebuilt std exists) build the same way.
# build-std is unstable in cargo; the stable toolchain allows it with
# RUSTC_BOOTSTRAP=1, which only this script's router build sets (the Linux
# kernel's Rust code and Firefox build with it the same way). It reaches the
# build scripts too: proc-macro2 sees it and uses the compiler's unstable
# span API in the derive macros (their spans, i.e. compile errors; nothing
# they generate depends on it). The daemon's own crates use no unstable
# feature: the plain `cargo build` of the tests compiles the same code. zig supplies
# musl and its start files (`link-self-contained=no`: rustup's copies come
# only with a prebuilt std).
#
# Out: target/openwrt/<triple>/bulkhead (static musl binary, no demo),
# target/openwrt/bulkhead_<version>-<release>_<arch>.ipk, and
# target/openwrt/sizes.tsv (raw, xz and .ipk bytes), which BENCHMARKS.md's
# size table is made from. scripts/check-ipk.py compares each .ipk with
# openwrt/bulkhead/Makefile.
#
# The .ipk's architecture is the common OpenWrt one for each CPU
# (aarch64_cortex-a53: MediaTek Filogic, Qualcomm IPQ807x, most current
# aarch64 routers; arm_cortex-a7_neon-vfpv4: IPQ40xx; mipsel_24kc: MediaTek
# MT7621/MT76x8; mips_24kc: Qualcomm Atheros ath79); another is given as
# TRIPLE=ARCH in IPK_ARCHS, e.g.
#   IPK_ARCHS="aarch64-unknown-linux-musl=aarch64_cortex-a72" scripts/cross-build.sh aarch64
# The binary is static, so it runs on every CPU of its family.
set -euo pipefail
cd "$(dirname "$0")/.."

ZIGLANG="ziglang==0.17.1"
ZIGBUILD_VERSION="0.24.1"
VENV=/opt/bulkhead-venv
OUT=target/openwrt

declare -A TRIPLES=(
    [aarch64]=aarch64-unknown-linux-musl
    [armv7]=armv7-unknown-linux-musleabihf
    [mipsel]=mipsel-unknown-linux-musl
    [mips]=mips-unknown-linux-musl
    [x86_64]=x86_64-unknown-linux-musl
)
declare -A ARCHS=(
    [aarch64-unknown-linux-musl]=aarch64_cortex-a53
    [armv7-unknown-linux-musleabihf]=arm_cortex-a7_neon-vfpv4
    [mipsel-unknown-linux-musl]=mipsel_24kc
    [mips-unknown-linux-musl]=mips_24kc
    [x86_64-unknown-linux-musl]=x86_64
)
for pair in ${IPK_ARCHS:-}; do
    ARCHS[${pair%%=*}]=${pair#*=}
done

wanted=("$@")
if [ ${#wanted[@]} -eq 0 ]; then
    wanted=(aarch64 armv7 mipsel mips x86_64)
fi

# zig in its own venv (Debian's python3 refuses system-wide pip installs).
if [ ! -x "$VENV/bin/python3" ]; then
    /usr/bin/python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python3" -m ziglang version >/dev/null 2>&1; then
    echo "cross-build: installing $ZIGLANG in $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$ZIGLANG"
fi
# cargo-zigbuild runs `python3 -m ziglang` when there is no zig on PATH.
export PATH="$VENV/bin:$PATH"
if ! cargo-zigbuild --version 2>/dev/null | grep -qF "$ZIGBUILD_VERSION"; then
    echo "cross-build: installing cargo-zigbuild $ZIGBUILD_VERSION"
    cargo install --quiet --locked cargo-zigbuild --version "$ZIGBUILD_VERSION"
fi

version=$(sed -n 's/^PKG_VERSION:=//p' openwrt/bulkhead/Makefile)
release=$(sed -n 's/^PKG_RELEASE:=//p' openwrt/bulkhead/Makefile)
crate_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
if [ "$version" != "$crate_version" ]; then
    echo "cross-build: the Makefile's PKG_VERSION ($version) is not the crate's ($crate_version)" >&2
    exit 1
fi

# The standard library's source, for build-std: the toolchain's own component.
if ! command -v rustup >/dev/null; then
    echo "cross-build: needs a rustup toolchain (its rust-src component is the standard library's source)" >&2
    exit 1
fi
if ! rustup component list --installed | grep -q '^rust-src'; then
    echo "cross-build: installing the toolchain's rust-src"
    rustup component add rust-src
fi

mkdir -p "$OUT"
sizes="$OUT/sizes.tsv"
printf 'target\traw_bytes\txz_bytes\tipk_bytes\n' > "$sizes.new"
for w in "${wanted[@]}"; do
    triple=${TRIPLES[$w]:-}
    if [ -z "$triple" ]; then
        echo "cross-build: unknown target $w (aarch64, armv7, mipsel, mips, x86_64)" >&2
        exit 2
    fi
    echo "cross-build: $triple"
    # The router build: default features (no demo), the release profile, std
    # from source (above). The flag is added to the target's rustflags of
    # .cargo/config.toml, not in place of them.
    RUSTC_BOOTSTRAP=1 cargo zigbuild --release --locked -p bulkhead --bin bulkhead --target "$triple" \
        --target-dir target/cross \
        --config "target.$triple.rustflags=[\"-C\", \"link-self-contained=no\"]" \
        -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
    bin="target/cross/$triple/release/bulkhead"
    install -D -m 0755 "$bin" "$OUT/$triple/bulkhead"
    ipk=$(scripts/build-ipk.sh "$OUT/$triple/bulkhead" "${ARCHS[$triple]}" "$OUT")
    raw=$(stat -c %s "$bin")
    xzb=$(xz -9e -c "$bin" | wc -c)
    ipkb=$(stat -c %s "$ipk")
    printf '%s\t%s\t%s\t%s\n' "$triple" "$raw" "$xzb" "$ipkb" >> "$sizes.new"
    echo "cross-build: $triple: $raw bytes raw, $xzb xz, package $ipk ($ipkb bytes)"
done
mv "$sizes.new" "$sizes"
