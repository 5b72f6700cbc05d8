#!/usr/bin/env bash
# Assembles bulkhead_<version>-<release>_<arch>.ipk the way OpenWrt 24.10's
# scripts/ipkg-build does, without the SDK: a gzip'd GNU tar (not an ar
# archive like a .deb) of ./debian-binary ("2.0"), ./data.tar.gz and
# ./control.tar.gz, owners numeric root, names sorted, one fixed mtime,
# `gzip -n`. The files and control fields are those of
# openwrt/bulkhead/Makefile (scripts/check-ipk.py compares them).
#
#   scripts/build-ipk.sh BINARY ARCH OUTDIR     # prints the .ipk's path
set -euo pipefail
cd "$(dirname "$0")/.."

binary=$1
arch=$2
out=$3
[ -x "$binary" ] || { echo "build-ipk: $binary is not an executable" >&2; exit 1; }

makefile=openwrt/bulkhead/Makefile
field() { sed -n "s/^$1:=//p" "$makefile"; }
# A field of `define Package/bulkhead` (other blocks have URLs too).
pkgfield() { sed -n '/^define Package\/bulkhead$/,/^endef/p' "$makefile" | sed -n "s/^  $1:=//p"; }
name=$(field PKG_NAME)
version="$(field PKG_VERSION)-$(field PKG_RELEASE)"
# Reproducible: the last commit's time, as the SDK uses PKG_SOURCE_DATE_EPOCH.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/data"
ctl="$work/control"
mkdir -p "$root" "$ctl"

# Package/bulkhead/install: INSTALL_BIN is 0755, INSTALL_CONF 0600,
# INSTALL_DATA 0644 (OpenWrt's rules.mk).
install -D -m 0755 "$binary" "$root/usr/sbin/bulkhead"
install -D -m 0755 openwrt/bulkhead/files/bulkhead.init "$root/etc/init.d/bulkhead"
install -D -m 0600 openwrt/bulkhead/files/bulkhead.config "$root/etc/config/bulkhead"
for p in classes devices doh-servers shares zones; do
    install -D -m 0600 "policies/$p.toml" "$root/etc/bulkhead/policies/$p.toml"
done
install -D -m 0644 openwrt/bulkhead/files/bulkhead.upgrade "$root/lib/upgrade/keep.d/bulkhead"
find "$root" -type d -exec chmod 0755 {} +

tarball() { # DIR OUTFILE [MEMBERS...]: ipkg-build's tar | gzip -n
    local dir=$1 file=$2
    shift 2
    (cd "$dir" && tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name \
        --mtime="@$epoch" -cf - "${@:-.}") | gzip -n -9 > "$file"
}
tarball "$root" "$work/data.tar.gz"
installed_size=$(gzip -dc "$work/data.tar.gz" | wc -c)

# Package/bulkhead's fields, in package-pack.mk's order; libc is added to
# every package's Depends, `@` conditions dropped.
depends=$(pkgfield DEPENDS | tr ' ' '\n' | sed -n 's/^+//p' | paste -sd, - | sed 's/,/, /g')
description=$(sed -n '/^define Package\/bulkhead\/description/,/^endef/p' "$makefile" | sed '1d;$d' | sed 's/^  //')
{
    echo "Package: $name"
    echo "Version: $version"
    echo "Depends: libc, $depends"
    echo "Source: feeds/bulkhead/$name"
    echo "SourceName: $name"
    echo "License: $(field PKG_LICENSE)"
    echo "Section: $(pkgfield SECTION)"
    echo "SourceDateEpoch: $epoch"
    echo "URL: $(pkgfield URL)"
    echo "Maintainer: $(field PKG_MAINTAINER)"
    echo "Architecture: $arch"
    echo "Installed-Size: $installed_size"
    echo "$description" | sed '1s/^/Description:  /; 2,$s/^/ /'
} > "$ctl/control"
sed -n '/^define Package\/bulkhead\/conffiles/,/^endef/p' "$makefile" | sed '1d;$d' > "$ctl/conffiles"
# What the SDK generates: run the init script's enable/start through
# /lib/functions.sh (which only starts it when enabled in UCI).
for script in postinst prerm; do
    printf '#!/bin/sh\n[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0\n[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n. ${IPKG_INSTROOT}/lib/functions.sh\ndefault_%s $0 $@\n' "$script" > "$ctl/$script"
    chmod 0755 "$ctl/$script"
done
tarball "$ctl" "$work/control.tar.gz"

echo "2.0" > "$work/debian-binary"
mkdir -p "$out"
ipk="$out/${name}_${version}_${arch}.ipk"
tarball "$work" "$ipk" ./debian-binary ./data.tar.gz ./control.tar.gz
echo "$ipk"
