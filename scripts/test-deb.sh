#!/usr/bin/env bash
# The Debian package, installed for real on this machine (root): dpkg -i, the
# installed example config checked with the installed binary and policies,
# the systemd units verified (systemd-analyze verify), then dpkg -r and dpkg -P
# leave nothing but the homeowner's config (and, after -r, the device database).
#
#   scripts/test-deb.sh [PATH.deb]     (default: builds one from target/debug/bulkhead)
#
# It refuses to run where Bulkhead is really installed or configured: it never
# touches a real /etc/bulkhead, /var/lib/bulkhead or an installed package.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-deb: FAILED: $*" >&2; exit 1; }
pass() { echo "test-deb: ok: $*"; }

if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null; then
    if [ "${CI:-}" = true ]; then
        fail "needs root on Debian (dpkg -i); CI=true forbids skipping"
    fi
    echo "test-deb: SKIPPED: needs root on Debian (dpkg -i)"
    exit 0
fi
if dpkg-query -W -f='${Status}' bulkhead 2>/dev/null | grep -q "installed"; then
    fail "a bulkhead package is installed on this machine; this test installs and purges its own, so it will not run here"
fi
for p in /etc/bulkhead /var/lib/bulkhead /usr/bin/bulkhead; do
    [ ! -e "$p" ] || fail "$p exists: this machine has a Bulkhead of its own; the test will not touch it"
done

deb="${1:-}"
if [ -z "$deb" ]; then
    # The router build (no demo); the e2e tests' build has it.
    cargo build -p bulkhead --locked
    deb=$(dist/debian/build-deb --binary target/debug/bulkhead --out target/deb-test)
fi
[ -f "$deb" ] || fail "no package at $deb"

cleanup() {
    # Whatever happened: the package gone, and what the test itself made.
    if dpkg-query -W -f='${Status}' bulkhead 2>/dev/null | grep -q "install ok"; then
        dpkg -P bulkhead >/dev/null 2>&1 || true
    fi
    rm -rf /etc/bulkhead /var/lib/bulkhead
}
trap cleanup EXIT

# What a package might leave behind: the files it ships and what its scripts
# make (unit enablement, deb-systemd-helper's state).
leftovers() {
    local found=()
    for p in /usr/bin/bulkhead /lib/systemd/system/bulkhead.service /lib/systemd/system/bulkhead-restore.service \
        /usr/share/bulkhead /usr/share/doc/bulkhead /run/bulkhead; do
        [ -e "$p" ] && found+=("$p")
    done
    while IFS= read -r p; do found+=("$p"); done < <(
        find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
            -name '*bulkhead*' 2>/dev/null
    )
    printf '%s\n' "${found[@]}"
}

# 1. Install.
out=$(dpkg -i "$deb" 2>&1) || fail "dpkg -i: $out"
dpkg-query -W -f='${Status}' bulkhead | grep -q "install ok installed" || fail "not installed after dpkg -i"
echo "$out" | grep -q "bulkhead init" || fail "the install did not say what to run next: $out"
/usr/bin/bulkhead --version | grep -q "^bulkhead " || fail "the installed binary does not run"
dpkg-query -W -f='${Depends}' bulkhead | grep -q "nftables" || fail "the package does not depend on nftables"
if /usr/bin/bulkhead --help | grep -qE '^\s+demo\b'; then fail "the packaged binary has the demo"; fi
pass "dpkg -i $(basename "$deb")"

# 2. The shipped example, checked by the installed binary against the
#    installed policies (the example names /etc/bulkhead/policies, which only
#    `bulkhead init` writes: point it at the package's copies).
tmp=$(mktemp -d)
sed 's#^policies_dir = .*#policies_dir = "/usr/share/bulkhead/policies"#' \
    /usr/share/bulkhead/examples/bulkhead.toml >"$tmp/bulkhead.toml"
out=$(/usr/bin/bulkhead --config "$tmp/bulkhead.toml" check-config 2>&1) || fail "check-config on the installed example: $out"
echo "$out" | grep -q ": ok (2 segments" || fail "check-config said: $out"
rm -rf "$tmp"
pass "bulkhead check-config on the installed example: $out"

# 3. The units, as systemd reads them (the binary they name now exists).
out=$(systemd-analyze verify /lib/systemd/system/bulkhead.service /lib/systemd/system/bulkhead-restore.service 2>&1) \
    || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complained: $out"
[ -L /etc/systemd/system/multi-user.target.wants/bulkhead.service ] || fail "bulkhead.service was not enabled"
[ -L /etc/systemd/system/multi-user.target.wants/bulkhead-restore.service ] || fail "bulkhead-restore.service was not enabled"
pass "systemd-analyze verify; both units enabled"

# 4. The homeowner's config and the daemon's state, as if it had run.
mkdir -p /etc/bulkhead/policies /var/lib/bulkhead
echo '# mine' >/etc/bulkhead/bulkhead.toml
echo '# mine' >/etc/bulkhead/policies/devices.toml
echo 'state' >/var/lib/bulkhead/bulkhead.db

# 5. Remove: the package's files and enablement go; config and state stay.
out=$(dpkg -r bulkhead 2>&1) || fail "dpkg -r: $out"
left=$(leftovers)
[ -z "$left" ] || fail "dpkg -r left: $left"
[ -f /etc/bulkhead/bulkhead.toml ] && [ -f /etc/bulkhead/policies/devices.toml ] || fail "dpkg -r removed the homeowner's config"
[ -f /var/lib/bulkhead/bulkhead.db ] || fail "dpkg -r removed the device database"
pass "dpkg -r: nothing left but /etc/bulkhead and /var/lib/bulkhead"

# 6. Purge: the state goes too; the homeowner's config stays.
out=$(dpkg -P bulkhead 2>&1) || fail "dpkg -P: $out"
left=$(leftovers)
[ -z "$left" ] || fail "dpkg -P left: $left"
[ ! -e /var/lib/bulkhead ] || fail "dpkg -P left /var/lib/bulkhead"
[ "$(cat /etc/bulkhead/bulkhead.toml)" = "# mine" ] || fail "dpkg -P touched the homeowner's config"
dpkg-query -W -f='${Status}' bulkhead 2>/dev/null | grep -q "installed" && fail "still known to dpkg after -P"
pass "dpkg -P: nothing left but the homeowner's /etc/bulkhead"
echo "test-deb: all passed"
