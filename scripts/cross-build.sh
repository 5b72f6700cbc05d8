#!/usr/bin/env bash
# Builds the router binary for OpenWrt's CPUs without the OpenWrt SDK, and an
# .ipk for each (OpenWrt 24.10's opkg), with cargo-zigbuild (zig from PyPI's
# `ziglang`, so C code — SQLite, ring — cross-compiles with no sysroot).
#
#   scripts/cross-build.sh                  # aarch64 and x86_64
#   scripts/cross-build.sh aarch64 armv7    # these
#
# armv7 is not built by default: rustup's armv7-unknown-linux-musleabihf
# standard library is not downloadable from where this project's CI runs
# (static.rust-lang.org answers 404 through its mirror; aarch64 and x86_64
# musl come). Where rustup can fetch it, `scripts/cross-build.sh armv7`
# builds it like the others.
#
# Out: target/openwrt/<triple>/bulkhead (static musl binary, no demo),
# target/openwrt/bulkhead_<version>-<release>_<arch>.ipk, and
# target/openwrt/sizes.tsv (raw, xz and .ipk bytes), which BENCHMARKS.md's
# size table is made from. scripts/check-ipk.py compares each .ipk with
# openwrt/bulkhead/Makefile.
#
# The .ipk's architecture is the common OpenWrt one for each CPU
# (aarch64_cortex-a53: MediaTek Filogic, Qualcomm IPQ807x, most current
# aarch64 routers; arm_cortex-a7_neon-vfpv4: IPQ40xx); another is given as
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
    [x86_64]=x86_64-unknown-linux-musl
)
declare -A ARCHS=(
    [aarch64-unknown-linux-musl]=aarch64_cortex-a53
    [armv7-unknown-linux-musleabihf]=arm_cortex-a7_neon-vfpv4
    [x86_64-unknown-linux-musl]=x86_64
)
for pair in ${IPK_ARCHS:-}; do
    ARCHS[${pair%%=*}]=${pair#*=}
done

wanted=("$@")
if [ ${#wanted[@]} -eq 0 ]; then
    wanted=(aarch64 x86_64)
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

mkdir -p "$OUT"
sizes="$OUT/sizes.tsv"
printf 'target\traw_bytes\txz_bytes\tipk_bytes\n' > "$sizes.new"
for w in "${wanted[@]}"; do
    triple=${TRIPLES[$w]:-}
    if [ -z "$triple" ]; then
        echo "cross-build: unknown target $w (aarch64, armv7, x86_64)" >&2
        exit 2
    fi
    if ! rustup target list --installed | grep -qx "$triple"; then
        rustup target add "$triple" || {
            echo "cross-build: rustup could not fetch the standard library for $triple" >&2
            exit 1
        }
    fi
    echo "cross-build: $triple"
    # The router build: default features (no demo), the release profile.
    cargo zigbuild --release --locked -p bulkhead --bin bulkhead --target "$triple" --target-dir target/cross
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
