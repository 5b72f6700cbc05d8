#!/usr/bin/env bash
# Resident memory of the resolver side by side with dnsmasq (issue 11):
#   1. Bulkhead's daemon (router build) with no list, then with a 1,000,000-domain
#      blocklist (AdGuard / domain-list syntax): VmRSS, and the list's load time
#      from the daemon's own log line;
#   2. dnsmasq (the OpenWrt baseline: its adblock package writes `local=/d/`
#      lines) with the same 1,000,000 domains;
#   3. Bulkhead with 1,000 devices added through its control socket (the list on).
# Each in a throwaway network namespace with dummy links (nothing reaches the
# host's network); the processes are ended by their pid and the namespace removed
# on exit. (Dummy links would do, but this kernel has no dummy module: veth pairs.)
#
#   scripts/bench-dns-memory.sh [PATH-TO-bulkhead]   (default target/release/bulkhead; root)
set -euo pipefail
BIN="${1:-$(dirname "$0")/../target/release/bulkhead}"
BIN="$(readlink -f "$BIN")"
NS="bhmem$$"
DIR="$(mktemp -d /tmp/bhmem.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link add wan0 type veth peer name wan0p
ip -n "$NS" link add lan0 type veth peer name lan0p
ip -n "$NS" link set lo up
ip -n "$NS" link set wan0 up
ip -n "$NS" link set lan0 up
ip -n "$NS" link set wan0p up
ip -n "$NS" link set lan0p up
ip -n "$NS" addr add 198.51.100.2/24 dev wan0

python3 - "$DIR" <<'PY'
import random, sys
random.seed(7)
d = sys.argv[1]
words = ["ads","track","metrics","cdn","pixel","stat","beacon","click","serve","data","img","log","api","edge","tag"]
tlds = ["com","net","io","co.uk","org","de","info"]
letters = "abcdefghijklmnopqrstuvwxyz0123456789"
seen = set()
with open(d + "/million.txt", "w") as a, open(d + "/million.dnsmasq", "w") as m:
    while len(seen) < 1_000_000:
        n = "".join(random.choice(letters) for _ in range(random.randint(6, 14))) + "." + random.choice(words) + "." + random.choice(tlds)
        if n in seen:
            continue
        seen.add(n)
        a.write(("||" + n + "^\n") if len(seen) % 2 else (n + "\n"))
        m.write("local=/" + n + "/\n")
PY
mkdir -p "$DIR/policies"
cp "$(dirname "$0")/../policies/"*.toml "$DIR/policies/"

config() { # $1: with list (yes/no)
    cat > "$DIR/bulkhead.toml" <<TOML
state_dir = "state"
policies_dir = "policies"
control_socket = "control.sock"
[wan]
interface = "wan0"
[web]
listen = []
[[segments]]
name = "lan"
interface = "lan0"
kind = "existing"
ipv4 = "10.77.0.1/16"
dhcp = "off"
[dns]
upstreams = ["198.51.100.1"]
TOML
    if [ "$1" = yes ]; then
        printf '[[dns.blocklists]]\nname = "big"\nfile = "million.txt"\n' >> "$DIR/bulkhead.toml"
        sed -i 's/^\[zones.trusted\]$/[zones.trusted]\ndns_blocklists = ["big"]/' "$DIR/policies/zones.toml"
    fi
}
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
start_bulkhead() {
    rm -rf "$DIR/state" "$DIR/control.sock"
    ip netns exec "$NS" "$BIN" --config "$DIR/bulkhead.toml" daemon > "$DIR/daemon.log" 2>&1 &
    BPID=$!
    PIDS+=("$BPID")
    for _ in $(seq 1 600); do
        grep -q "bulkhead: ready" "$DIR/daemon.log" && return 0
        sleep 0.1
    done
    cat "$DIR/daemon.log"; exit 1
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

config no
start_bulkhead; sleep 2
echo "bulkhead, no list:            VmRSS $(rss "$BPID") kB (peak $(hwm "$BPID") kB)"
stop "$BPID"

config yes
start_bulkhead; sleep 2
echo "bulkhead, 1,000,000 domains:  VmRSS $(rss "$BPID") kB (peak $(hwm "$BPID") kB)"
grep -o 'blocklists loaded.*' "$DIR/daemon.log" | sed 's/\x1b\[[0-9;]*m//g' | sed 's/^/  /'
for i in $(seq 1 1000); do
    printf -v mac '02:77:00:00:%02x:%02x' $((i / 256)) $((i % 256))
    "$BIN" --config "$DIR/bulkhead.toml" device add "$mac" --ip "10.77.$((i / 250 + 1)).$((i % 250 + 1))" > /dev/null
done
sleep 1
echo "  + 1,000 devices:            VmRSS $(rss "$BPID") kB (peak $(hwm "$BPID") kB)"
stop "$BPID"

ip netns exec "$NS" dnsmasq --keep-in-foreground --no-resolv --no-hosts --server=198.51.100.1 \
    --listen-address=10.77.0.1 --bind-interfaces --port=5353 --user=root \
    --conf-file="$DIR/million.dnsmasq" --pid-file="$DIR/dnsmasq.pid" > "$DIR/dnsmasq.log" 2>&1 &
DPID=$!
PIDS+=("$DPID")
started=$(date +%s.%N)
for _ in $(seq 1 600); do
    if ip netns exec "$NS" dig +short +time=1 +tries=1 @10.77.0.1 -p 5353 x.example > /dev/null 2>&1; then break; fi
    sleep 0.1
done
echo "dnsmasq, 1,000,000 domains:   VmRSS $(rss "$DPID") kB (peak $(hwm "$DPID") kB), answering after $(echo "$(date +%s.%N) - $started" | bc) s"
stop "$DPID"
