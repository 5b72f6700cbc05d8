//! Test helpers shared by unit tests (compiled only for tests).

use std::path::{Path, PathBuf};

use std::sync::Mutex;

use nftables::helper::NftablesError;
use nftables::schema::Nftables;
use nftables::types::NfFamily;

use crate::config::{self, Config};

/// A throwaway directory with a main file and a policies/ folder.
pub(crate) struct Fixture {
    pub(crate) dir: PathBuf,
}

impl Fixture {
    pub(crate) fn new(main: &str, policies: &[(&str, &str)]) -> Fixture {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("bulkhead-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).expect("mkdir");
        std::fs::write(dir.join("bulkhead.toml"), main).expect("write");
        for (name, text) in policies {
            std::fs::write(dir.join("policies").join(name), text).expect("write");
        }
        Fixture { dir }
    }

    pub(crate) fn main(&self) -> PathBuf {
        self.dir.join("bulkhead.toml")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A two-segment home: `lan` (bridge, IPv4+IPv6) and `iot` (bridge, IPv4).
pub(crate) const MAIN: &str = r#"
policies_dir = "policies"
state_dir = "state"

[wan]
interface = "wan0"

[[segments]]
name = "lan"
interface = "br-lan"
kind = "bridge"
ports = ["lan1", "lan2"]
ipv4 = "10.0.1.1/24"
ipv6 = "fd00:1::1/64"
dhcp_pool = "10.0.1.100-10.0.1.199"

[[segments]]
name = "iot"
interface = "br-iot"
kind = "bridge"
ipv4 = "10.0.2.1/24"
"#;

/// The shipped `policies/*.toml`, as (file name, text).
pub(crate) fn shipped_policies() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("policies/ exists") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            out.push((name, std::fs::read_to_string(&p).expect("read")));
        }
    }
    out.sort();
    out
}

/// `MAIN` with the shipped policies plus `extra` policy files, loaded.
pub(crate) fn config_with(main: &str, extra: &[(&str, &str)]) -> Config {
    let pol = shipped_policies();
    let mut refs: Vec<(&str, &str)> = pol.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    refs.extend_from_slice(extra);
    let fx = Fixture::new(main, &refs);
    config::load(&fx.main()).unwrap_or_else(|e| panic!("test config must load:\n{e}"))
}

/// A device as services see it: unnamed, in `zone` at `ip`, online, not
/// blocked.
pub(crate) fn device_snapshot(
    mac: crate::config::MacAddr,
    zone: &str,
    ip: std::net::IpAddr,
) -> crate::core::DeviceSnapshot {
    crate::core::DeviceSnapshot {
        mac,
        name: None,
        hostname: None,
        zone: crate::config::ZoneId::new(zone).expect("zone"),
        addresses: [ip].into(),
        blocked: false,
        tunnel_routed: false,
        quarantined: false,
        class: None,
        vendor: None,
        last_seen: 0,
        online: true,
        watched: false,
    }
}

/// The default home config.
pub(crate) fn default_config() -> Config {
    config_with(MAIN, &[])
}

/// The default home with a tunnel: the IoT zone, one laptop and two networks
/// through it, a domain set, one device and one network always direct.
pub(crate) fn tunnel_config() -> crate::config::Config {
    use crate::config::*;
    let mut cfg = default_config();
    let mac = |n: u8| MacAddr([2, 0, 0, 0, 0, n]);
    cfg.tunnel = Some(TunnelConfig {
        interface: "bhwg0".into(),
        private_key: PrivateKeySource::Inline(WgKey([1; 32])),
        addresses: vec![
            "10.64.0.2/32".parse().expect("net"),
            "fd64::2/128".parse().expect("net"),
        ],
        mtu: 1420,
        listen_port: None,
        peers: vec![TunnelPeer {
            public_key: WgKey([2; 32]),
            preshared_key: None,
            endpoint: Some(Endpoint {
                host: "203.0.113.10".into(),
                port: 51820,
            }),
            allowed_ips: vec!["0.0.0.0/0".parse().expect("net"), "::/0".parse().expect("net")],
            persistent_keepalive: Some(25),
        }],
    });
    cfg.policy.tunnel = TunnelSelectors {
        zones: [ZoneId::new("iot").expect("zone")].into(),
        devices: [mac(9)].into(),
        destinations: vec![
            "192.0.2.0/24".parse().expect("net"),
            "2001:db8:99::/48".parse().expect("net"),
        ],
        domain_sets: [DomainSetId::new("streaming").expect("id")].into(),
        domains: [(
            DomainSetId::new("streaming").expect("id"),
            ["video.example.test".to_string()].into(),
        )]
        .into(),
        exclude_devices: [mac(8)].into(),
        exclude_destinations: vec!["198.18.0.0/15".parse().expect("net")],
    };
    cfg
}

/// Records documents; can be told to refuse deltas.
#[derive(Default)]
pub(crate) struct FakeNft {
    pub(crate) applied: Mutex<Vec<String>>,
    pub(crate) refuse_deltas: bool,
    /// Refuses any document with a flowtable (a device of it is gone).
    pub(crate) refuse_flowtables: bool,
    pub(crate) listing: Mutex<Option<(Nftables<'static>, Nftables<'static>)>>,
    /// The flowtables given the counter flag, with their devices.
    pub(crate) counted: Mutex<Vec<(String, Vec<String>)>>,
    /// How many times the neighbour-advert guards were added.
    pub(crate) nd_guarded: Mutex<usize>,
    /// Netlink cannot add the guards (no NETLINK_NETFILTER): refused, and
    /// not in the listing.
    pub(crate) refuse_nd_guards: bool,
    /// The kernel refuses the guards' batch with this error (the chain keeps
    /// its placeholder).
    pub(crate) nd_guards_refused_with: Option<&'static str>,
}

impl crate::firewall::NftBackend for FakeNft {
    fn apply(&self, doc: &Nftables<'_>) -> Result<(), NftablesError> {
        let json = serde_json::to_string(doc).expect("json");
        // The placeholder flushed after the guards were refused: the
        // listing already lacks that chain's rules.
        if json.contains("\"flush\"") {
            let flush = serde_json::to_string(&crate::firewall::render::bridge::nd_claims_flush()).expect("json");
            assert_eq!(json, flush);
            return Ok(());
        }
        let is_delta = !json.contains("\"table\":{");
        if self.refuse_flowtables && json.contains("\"flowtable\":{") {
            return Err(NftablesError::NftFailed {
                program: "nft".into(),
                hint: "applying ruleset".into(),
                stdout: String::new(),
                stderr: "Error: Could not process rule: No such file or directory".into(),
            });
        }
        if is_delta && self.refuse_deltas {
            return Err(NftablesError::NftFailed {
                program: "nft".into(),
                hint: "applying ruleset".into(),
                stdout: String::new(),
                stderr: "Error: Could not process rule: No such file or directory".into(),
            });
        }
        self.applied
            .lock()
            .expect("lock")
            .push(if is_delta { "delta".into() } else { "full".into() });
        Ok(())
    }
    fn count_offloaded(&self, name: &str, devices: &[&str]) -> Result<(), NftablesError> {
        let devices = devices.iter().map(|d| d.to_string()).collect();
        self.counted.lock().expect("lock").push((name.to_string(), devices));
        Ok(())
    }
    fn guard_nd_claims(&self, rules: &[crate::firewall::render::bridge::TargetClaimRule]) -> Result<(), NftablesError> {
        assert_eq!(rules, crate::firewall::render::bridge::ND_CLAIM_RULES);
        if let Some(refusal) = self.nd_guards_refused_with {
            return Err(NftablesError::NftFailed {
                program: "netlink".into(),
                hint: refusal.into(),
                stdout: String::new(),
                stderr: String::new(),
            });
        }
        if self.refuse_nd_guards {
            if let Some((_, bridge)) = self.listing.lock().expect("lock").as_mut() {
                bridge.objects.to_mut().retain(|o| {
                    !matches!(o, nftables::schema::NfObject::ListObject(nftables::schema::NfListObject::Rule(r))
                        if r.chain == crate::firewall::render::bridge::ND_CLAIMS_CHAIN)
                });
            }
            return Err(NftablesError::NftFailed {
                program: "netlink".into(),
                hint: "opening a NETLINK_NETFILTER socket: Protocol not supported".into(),
                stdout: String::new(),
                stderr: String::new(),
            });
        }
        *self.nd_guarded.lock().expect("lock") += 1;
        Ok(())
    }
    fn list_table(&self, family: NfFamily) -> Result<Nftables<'static>, NftablesError> {
        let l = self.listing.lock().expect("lock");
        let (inet, bridge) = l.as_ref().expect("listing set");
        Ok(if family == NfFamily::Bridge {
            bridge.clone()
        } else {
            inet.clone()
        })
    }
}

/// What the kernel would list after the full document: the document's own objects
/// as list objects (enough for the comment/element comparison).
pub(crate) fn listing_of(doc: &Nftables<'static>) -> (Nftables<'static>, Nftables<'static>) {
    use nftables::schema::{NfCmd, NfListObject, NfObject};
    let mut inet = Vec::new();
    let mut bridge = Vec::new();
    for o in doc.objects.iter() {
        if let NfObject::CmdObject(NfCmd::Add(obj)) = o {
            let family = match obj {
                NfListObject::Chain(c) => c.family,
                NfListObject::Rule(r) => r.family,
                NfListObject::Set(s) => s.family,
                NfListObject::FlowTable(f) => f.family,
                _ => continue,
            };
            // The placeholder: the daemon's netlink batch flushes it.
            if matches!(obj, NfListObject::Rule(r) if r.family == NfFamily::Bridge
                && r.chain == crate::firewall::render::bridge::ND_CLAIMS_CHAIN)
            {
                continue;
            }
            let target = if family == NfFamily::Bridge {
                &mut bridge
            } else {
                &mut inet
            };
            target.push(NfObject::ListObject(obj.clone()));
            // The rules the daemon adds over netlink right after (a real
            // kernel lists them in that chain).
            if let NfListObject::Chain(c) = obj {
                if c.family == NfFamily::Bridge && c.name == crate::firewall::render::bridge::ND_CLAIMS_CHAIN {
                    for r in crate::firewall::render::bridge::ND_CLAIM_RULES {
                        bridge.push(NfObject::ListObject(NfListObject::Rule(nftables::schema::Rule {
                            family: NfFamily::Bridge,
                            table: c.table.clone(),
                            chain: c.name.clone(),
                            expr: Vec::new().into(),
                            handle: None,
                            index: None,
                            comment: Some(r.name.into()),
                        })));
                    }
                }
            }
        }
    }
    (Nftables { objects: inet.into() }, Nftables { objects: bridge.into() })
}

/// Records the addresses it was asked to cut.
#[derive(Clone, Default)]
pub(crate) struct RecordingConntrack(pub(crate) std::sync::Arc<Mutex<Vec<std::net::IpAddr>>>);

impl crate::firewall::ConntrackFlusher for RecordingConntrack {
    fn flush(&self, addrs: &[std::net::IpAddr]) -> Result<usize, std::io::Error> {
        self.0.lock().expect("lock").extend_from_slice(addrs);
        Ok(addrs.len())
    }
}

/// Connection cuts that do nothing (firewall tests that do not look at them).
#[derive(Clone, Default)]
pub(crate) struct NoConntrack;

impl crate::firewall::ConntrackFlusher for NoConntrack {
    fn flush(&self, addrs: &[std::net::IpAddr]) -> Result<usize, std::io::Error> {
        Ok(addrs.len())
    }
}

/// The enforcer's one path for a whole membership, from what `applied` says
/// the kernel holds (firewall tests: the fake nft or the real one).
pub(crate) fn enforce_whole(
    nft: Box<dyn crate::firewall::NftBackend + Send>,
    applied: Option<&crate::firewall::Applied>,
    rs: &crate::policy::DesiredRuleset,
    m: &crate::policy::Membership,
) -> Result<crate::firewall::ApplyOutcome, crate::firewall::FirewallError> {
    let mut e = crate::firewall::Enforcer::new(nft, Box::new(NoConntrack));
    if let Some(a) = applied {
        e.assume_applied(a.clone());
    }
    e.enforce(
        rs.clone(),
        crate::firewall::MembershipChange::Whole {
            membership: Box::new(m.clone()),
            addresses_of: &|_| Vec::new(),
        },
    )
}

/// xorshift64*: deterministic, no dependencies, so a corpus test that fails
/// reproduces.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next 64 bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number below `n` (0 for `n` = 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// `len` random bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// One to seven edits of a text seed: a byte flipped, up to `drop` bytes
    /// cut, one of `tokens` put in, or up to `copy` bytes repeated elsewhere (a
    /// key, a table, a peer twice).
    pub(crate) fn mutate_text(&mut self, seed: &[u8], tokens: &[&str], drop: usize, copy: usize) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..=self.below(6) {
            let at = self.below(v.len() + 1);
            match self.below(4) {
                0 if at < v.len() => v[at] = self.next() as u8,
                1 => {
                    let end = (at + self.below(drop)).min(v.len());
                    v.drain(at..end);
                }
                2 => {
                    let t = tokens[self.below(tokens.len())].as_bytes();
                    v.splice(at..at, t.iter().copied());
                }
                _ => {
                    let end = (at + self.below(copy)).min(v.len());
                    let piece = v[at..end].to_vec();
                    let to = self.below(v.len() + 1);
                    v.splice(to..to, piece);
                }
            }
        }
        v
    }
}

/// Writes one seed of the fuzz corpus, `fuzz/corpus/<target>/<name>` (the
/// ignored `write_*fuzz_seeds` tests, run by hand with
/// `BULKHEAD_WRITE_FUZZ_SEEDS=1`).
pub(crate) fn write_fuzz_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(name), bytes).expect("write");
}
