#!/usr/bin/env bash
# Runs every test: formatting, lints (the router build without the demo, and
# everything with it), unit tests of every crate, the web UI's in-process tests,
# then the end-to-end tests in network namespaces (root; under CI=true they fail
# rather than skip). The e2e suite runs last so its summary closes the output.
#
# On a Debian machine as root it first installs what the tests use and is not
# there yet (Debian packages, and schemathesis in its own venv), so README's two
# commands are all a newcomer runs. `.ci/run` calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests run: nftables (the firewall), iproute2 (namespaces), busybox
# (ping/udhcpc in hosts), iperf3 (benchmarks), procps (sysctl in
# namespaces), ieee-data (the MAC vendor registry build.rs compiles in), radvd,
# isc-dhcp-client, dnsmasq-base (discovery's router adverts, second DHCP client
# and observed server), wireguard-go, wireguard-tools (the VPN server and `wg`),
# chromium, chromium-driver (the web UI's browser tests), curl, python3-venv and
# python3-pip (schemathesis against the UI's OpenAPI document), nmap (a device
# that scans, for detection), mosquitto and mosquitto-clients (the MQTT broker
# and Home Assistant's view of it, for notifications), systemd and
# init-system-helpers (systemd-analyze verify and deb-systemd-helper for the
# Debian package's test), iputils-arping (a device forging ARP),
# qemu-system-x86 (a VM with Debian's kernel for what this kernel lacks:
# 802.1Q; the tests fetch the kernel package themselves), qemu-user-static
# (the aarch64 router binary as the daemon of the e2e homes), xz-utils (the
# size table of the router builds). No
# conntrack-tools: the daemon cuts connections over ctnetlink, and the tests read
# the conntrack table the same way (or from /proc).
PACKAGES=(nftables iproute2 busybox iperf3 procps ieee-data wireguard-go wireguard-tools
    radvd isc-dhcp-client dnsmasq-base ca-certificates chromium chromium-driver curl python3-venv python3-pip
    unbound dnsperf bind9-dnsutils knot-dnsutils openssl nmap mosquitto mosquitto-clients
    systemd init-system-helpers iputils-arping qemu-system-x86 dbus-daemon avahi-daemon avahi-utils
    gupnp-tools minidlna qemu-user-static xz-utils)
# Pinned: v4 changed the CLI, and the test uses it. The e2e test looks for
# /opt/bulkhead-venv/bin/st (or $BULKHEAD_SCHEMATHESIS).
SCHEMATHESIS="schemathesis==4.32.5"
VENV=/opt/bulkhead-venv

install_what_is_missing() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "test.sh: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        # The tests run these servers (avahi, minidlna, mosquitto, unbound…)
        # in their own namespaces; installing them must not start them on
        # this machine's network: no service starts during the install.
        local guard=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            guard=/usr/sbin/policy-rc.d
            printf '#!/bin/sh\nexit 101\n' > "$guard"
            chmod 755 "$guard"
        fi
        local status=0
        apt-get install -y --no-install-recommends "${missing[@]}" || status=$?
        if [ -n "$guard" ]; then rm -f "$guard"; fi
        if [ "$status" -ne 0 ]; then exit "$status"; fi
    fi
    if [ ! -x "$VENV/bin/st" ] && [ -z "${BULKHEAD_SCHEMATHESIS:-}" ]; then
        echo "test.sh: installing $SCHEMATHESIS in $VENV"
        # Debian's own python3, whatever else is on PATH.
        /usr/bin/python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SCHEMATHESIS"
    fi
}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; then
    install_what_is_missing
else
    echo "test.sh: not root on Debian: installing nothing (the root tests will say what is missing)"
fi

cargo fmt --all -- --check
cargo clippy -p bulkhead --locked -- -D warnings
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo test --workspace --lib --all-features --locked
cargo test -p bulkhead-web --test '*' --locked
# The Debian package of the router build (no demo): installed, checked,
# removed and purged for real. Before the e2e build, which adds the demo.
cargo build -p bulkhead --locked
./scripts/test-deb.sh
# The router builds for OpenWrt's CPUs (cargo-zigbuild; zig from PyPI; std
# from source) and their .ipk, each checked against openwrt/bulkhead/Makefile.
# The e2e suite then runs its router scenarios on the aarch64, armv7 and
# mipsel binaries (q4, q7, q8) and starts the big-endian mips one. Not
# x86_64 here (about 4 minutes more; the same script builds it by default,
# and its .ipk differs from these only by the binary).
busybox sh -n openwrt/bulkhead/files/bulkhead.init
./scripts/cross-build.sh aarch64 armv7 mipsel mips
for ipk in target/openwrt/*.ipk; do
    base=$(basename "$ipk" .ipk)
    ./scripts/check-ipk.py "$ipk" "${base#bulkhead_*_}"
done
cargo test -p bulkhead --features demo --test e2e --locked
