use super::*;
use crate::testutil::{shipped_policies, Fixture, MAIN};

#[test]
fn shipped_default_policies_load() {
    let pol = shipped_policies();
    let refs: Vec<(&str, &str)> = pol.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let fx = Fixture::new(MAIN, &refs);
    let cfg = load(&fx.main()).unwrap_or_else(|e| panic!("default policy must load:\n{e}"));
    let names: Vec<&str> = cfg.policy.zones.keys().map(ZoneId::as_str).collect();
    assert_eq!(names, ["guest", "iot", "quarantine", "trusted"]);
    assert_eq!(cfg.policy.unknown_zone.as_str(), "quarantine");
    assert_eq!(cfg.policy.approved_zone.as_ref().map(ZoneId::as_str), Some("trusted"));
    let iot = &cfg.policy.zones[&ZoneId::new("iot").expect("id")];
    assert!(iot.internet);
    assert!(iot.reach_zones.is_empty(), "iot never initiates into other zones");
    let q = &cfg.policy.zones[&ZoneId::new("quarantine").expect("id")];
    assert!(!q.internet);
    assert_eq!(
        q.router_services.iter().copied().collect::<Vec<_>>(),
        [RouterService::Dns, RouterService::Dhcp]
    );
    assert_eq!(cfg.state_dir, fx.dir.join("state"));
    assert_eq!(
        cfg.segments[0].dhcp_pool.map(|p| p.start.to_string()),
        Some("10.0.1.100".into())
    );
}

const ZONES: &str = r#"
unknown_zone = "quarantine"
[zones.trusted]
internet = true
reach_zones = ["iot"]
router_services = ["dns", "dhcp", "web-ui"]
[zones.iot]
internet = true
[zones.quarantine]
router_services = ["dns", "dhcp"]
"#;

#[test]
fn every_error_is_reported_with_position_and_field() {
    let bad_main = MAIN
        .replace("10.0.2.1/24", "10.0.2.0/24")
        .replace("10.0.1.100-10.0.1.199", "10.0.1.1-10.0.1.199");
    let bad_policy = r#"
[zones.guest]
reach_zones = ["nowhere"]
router_services = ["dns", "telnet"]

[segment_zones]
lan = "trusted"
attic = "guest"

[[devices]]
mac = "02:00:00:00:00:zz"
zone = "iot"
"#;
    let fx = Fixture::new(&bad_main, &[("10-zones.toml", ZONES), ("20-bad.toml", bad_policy)]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(has("bulkhead.toml:") && has("segments[0].dhcp_pool"), "{text:#?}");
    assert!(
        has("segments[1].ipv4: the router's address must be a host address"),
        "{text:#?}"
    );
    // Policy errors are only checked once the main file is valid enough to know the segments.
    let fx = Fixture::new(MAIN, &[("10-zones.toml", ZONES), ("20-bad.toml", bad_policy)]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(
        has("20-bad.toml:3:16: zones.guest.reach_zones[0]: unknown zone `nowhere`"),
        "{text:#?}"
    );
    assert!(
        has("20-bad.toml:4:27: zones.guest.router_services[1]: unknown router service `telnet`"),
        "{text:#?}"
    );
    assert!(has("segment_zones.attic: unknown segment `attic`"), "{text:#?}");
    assert!(has("devices[0].mac"), "{text:#?}");
    assert_eq!(errs.len(), 4, "{text:#?}");
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let main = MAIN.replace("[wan]\n", "[wan]\ncolour = \"red\"\n");
    let fx = Fixture::new(&main, &[("zones.toml", ZONES)]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "colour");
    assert_eq!(errs[0].line, 6);
    assert!(errs[0].file.ends_with("bulkhead.toml"));
}

#[test]
fn syntax_error_and_missing_file() {
    let fx = Fixture::new("[wan\ninterface = 1", &[]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert_eq!(errs[0].line, 1);
    let errs = load(&fx.dir.join("nope.toml")).expect_err("must fail").0;
    assert!(errs[0].message.contains("cannot read"));
}

#[test]
fn vlan_segment_and_kind_mismatch() {
    let main = MAIN.replace(
        "kind = \"bridge\"\nipv4 = \"10.0.2.1/24\"",
        "kind = \"vlan\"\nparent = \"eth0\"\nvlan_id = 20\nipv4 = \"10.0.2.1/24\"",
    );
    let fx = Fixture::new(&main, &[("zones.toml", ZONES)]);
    let cfg = load(&fx.main()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.segments[1].kind,
        SegmentKind::Vlan {
            parent: "eth0".into(),
            id: 20
        }
    );

    let main = main
        .replace("vlan_id = 20", "vlan_id = 5000")
        .replace("kind = \"bridge\"\nports", "kind = \"existing\"\nports");
    let fx = Fixture::new(&main, &[("zones.toml", ZONES)]);
    let text = load(&fx.main()).expect_err("must fail").to_string();
    assert!(
        text.contains("segments[1].vlan_id: VLAN id must be between 1 and 4094"),
        "{text}"
    );
    assert!(text.contains("segments[0].ports: `ports` only applies"), "{text}");
}

#[test]
fn missing_unknown_zone_and_duplicate_zone() {
    let fx = Fixture::new(MAIN, &[("a.toml", "[zones.trusted]\ninternet = true\n")]);
    let text = load(&fx.main()).expect_err("must fail").to_string();
    assert!(text.contains("unknown_zone"), "{text}");
    let fx = Fixture::new(MAIN, &[("a.toml", ZONES), ("b.toml", "[zones.iot]\n")]);
    let text = load(&fx.main()).expect_err("must fail").to_string();
    assert!(
        text.contains("b.toml:1:1: zones.iot: zone `iot` is defined in more than one"),
        "{text}"
    );
}

#[test]
fn dhcp_settings_modes_and_static_leases() {
    let main = MAIN.replace(
        "kind = \"bridge\"\nipv4 = \"10.0.2.1/24\"",
        "kind = \"bridge\"\nipv4 = \"10.0.2.1/24\"\ndhcp = \"observe\"",
    ) + "\n[dhcp]\ndomain = \"home.arpa\"\nlease_secs = 3600\nobserve_lease_file = \"leases\"\n";
    let devices = r#"
[[devices]]
mac = "02:00:00:00:00:01"
ip = "10.0.1.50"
"#;
    let fx = Fixture::new(&main, &[("10-zones.toml", ZONES), ("20-dev.toml", devices)]);
    let cfg = load(&fx.main()).unwrap_or_else(|e| panic!("must load:\n{e}"));
    assert_eq!(cfg.segments[0].dhcp, DhcpMode::Serve, "a pool means serve by default");
    assert_eq!(cfg.segments[1].dhcp, DhcpMode::Observe);
    assert_eq!(cfg.dhcp.domain.as_deref(), Some("home.arpa"));
    assert_eq!(cfg.dhcp.lease_secs, 3600);
    assert_eq!(cfg.dhcp.observe_lease_file, fx.dir.join("leases"));
    let mac: MacAddr = "02:00:00:00:00:01".parse().expect("mac");
    assert_eq!(cfg.policy.devices[&mac].ip, Some("10.0.1.50".parse().expect("ip")));
}

#[test]
fn bad_dhcp_settings_name_file_line_and_field() {
    let main = MAIN.replace(
        "kind = \"bridge\"\nipv4 = \"10.0.2.1/24\"",
        "kind = \"bridge\"\nipv4 = \"10.0.2.1/24\"\ndhcp = \"relay\"",
    ) + "\n[dhcp]\ndomain = \"bad domain\"\nlease_secs = 5\n";
    let devices = r#"
[[devices]]
mac = "02:00:00:00:00:01"
ip = "192.168.9.9"

[[devices]]
mac = "02:00:00:00:00:02"
ip = "10.0.1.50"

[[devices]]
mac = "02:00:00:00:00:03"
ip = "10.0.1.50"
"#;
    let fx = Fixture::new(&main, &[("10-zones.toml", ZONES), ("20-dev.toml", devices)]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let has = |field: &str, msg: &str| {
        assert!(
            errs.iter()
                .any(|e| e.field == field && e.message.contains(msg) && e.line > 0),
            "no error for {field} containing {msg:?} in:\n{}",
            text.join("\n")
        )
    };
    has("segments[1].dhcp", "unknown DHCP mode `relay`");
    has("dhcp.domain", "labels");
    has("dhcp.lease_secs", "120 seconds");
    let main_errors = errs.iter().filter(|e| e.file.ends_with("bulkhead.toml")).count();
    assert_eq!(main_errors, 3, "{}", text.join("\n"));
    // The policy files are only read once the main file is valid.
    let fx = Fixture::new(MAIN, &[("10-zones.toml", ZONES), ("20-dev.toml", devices)]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        errs.iter()
            .any(|e| e.field == "devices[0].ip" && e.message.contains("not a host address") && e.line == 4),
        "{}",
        text.join("\n")
    );
    assert!(
        errs.iter()
            .any(|e| e.field == "devices[2].ip" && e.message.contains("given to two devices") && e.line == 12),
        "{}",
        text.join("\n")
    );
}
const RULES: &str = r#"
approved_zone = "trusted"

[[classify]]
id = "esp-plug"
class = "plug"
zone = "iot"
confidence = "medium"
source = "  common knowledge: ESP8266 firmware names itself ESP_xxxxxx  "
[classify.match]
vendor = ["Espressif*"]
hostname = ["ESP_*"]
dhcp_params_prefix = ["1, 3,28"]
txt = { MD = ["x*", "y?"] }
randomized_mac = false

[[classify]]
id = "any-apple"
class = "other"
confidence = "low"
source = "IEEE registry"
match = { vendor = ["Apple"] }
"#;

#[test]
fn classify_rules_and_approved_zone_load_in_file_order() {
    let later = "[[classify]]\nid = \"later\"\nclass = \"tv\"\nconfidence = \"high\"\nsource = \"s\"\nmatch = { mdns_service = [\"_androidtvremote2._tcp\"] }\n";
    let fx = Fixture::new(
        MAIN,
        &[
            ("10-zones.toml", ZONES),
            ("20-rules.toml", RULES),
            ("30-more.toml", later),
        ],
    );
    let cfg = load(&fx.main()).unwrap_or_else(|e| panic!("{e}"));
    let p = &cfg.policy;
    assert_eq!(p.approved_zone.as_ref().map(ZoneId::as_str), Some("trusted"));
    let ids: Vec<&str> = p.classify.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["esp-plug", "any-apple", "later"]);
    let r = &p.classify[0];
    assert_eq!(r.class, crate::classify::DeviceClass::Plug);
    assert_eq!(r.zone.as_ref().map(ZoneId::as_str), Some("iot"));
    assert_eq!(r.confidence, crate::classify::Confidence::Medium);
    assert_eq!(r.source, "common knowledge: ESP8266 firmware names itself ESP_xxxxxx");
    assert_eq!(r.conditions.dhcp_params_prefix, [vec![1, 3, 28]]);
    assert_eq!(
        r.conditions.txt.keys().collect::<Vec<_>>(),
        ["md"],
        "TXT keys are lower-cased"
    );
    assert_eq!(r.conditions.randomized_mac, Some(false));
    assert_eq!(r.conditions.count(), 5);
    assert_eq!(p.classify[1].zone, None);

    // No approved_zone anywhere is fine.
    let fx = Fixture::new(MAIN, &[("10-zones.toml", ZONES)]);
    let cfg = load(&fx.main()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.policy.approved_zone, None);
    assert!(cfg.policy.classify.is_empty());
}

#[test]
fn every_rule_error_is_reported_with_position_and_path() {
    let bad = r#"
[[classify]]
id = "Bad_Id"
class = "toaster"
zone = "nowhere"
confidence = "certain"
source = "  "
[classify.match]
vendor = ["Espressif*", "[ab]"]
dhcp_params = ["1,3,300"]
dhcp_params_prefix = ["1,,3"]
hostname = []
txt = { md = ["*"] }

[[classify]]
id = "no-conditions"
class = "plug"
confidence = "low"
source = "x"
[classify.match]

[[classify]]
id = "no-match-table"
class = "plug"
confidence = "low"

[[classify]]
id = "dup"
class = "plug"
confidence = "low"
source = "x"
match = { vendor = ["A*"] }
"#;
    let dup = "[[classify]]\nid = \"dup\"\nclass = \"plug\"\nconfidence = \"low\"\nsource = \"x\"\nmatch = { vendor = [\"B*\"] }\n";
    let fx = Fixture::new(
        MAIN,
        &[("10-zones.toml", ZONES), ("20-bad.toml", bad), ("30-dup.toml", dup)],
    );
    let errs = load(&fx.main()).expect_err("must fail").0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    for needle in [
        "20-bad.toml:3:6: classify[0].id: `Bad_Id` is not a valid rule id",
        "20-bad.toml:4:9: classify[0].class: unknown class `toaster` (expected one of: camera plug",
        "20-bad.toml:5:8: classify[0].zone: unknown zone `nowhere`",
        "20-bad.toml:6:14: classify[0].confidence: unknown confidence `certain`",
        "20-bad.toml:7:10: classify[0].source: `source` cannot be empty",
        "20-bad.toml:9:25: classify[0].match.vendor[1]: `[ab]` is not a usable pattern: `[` is not supported",
        "20-bad.toml:10:16: classify[0].match.dhcp_params[0]: `1,3,300` is not a DHCP option list",
        "20-bad.toml:11:23: classify[0].match.dhcp_params_prefix[0]: `1,,3` is not a DHCP option list",
        "20-bad.toml:12:12: classify[0].match.hostname: an empty list matches nothing",
        "20-bad.toml:13:15: classify[0].match.txt.md[0]: `*` is not a usable pattern: a pattern of only `*`",
        "classify[1].match: a rule needs at least one condition",
        "classify[2].source: a rule needs a `source`",
        "classify[2].match: a rule needs at least one condition",
        "30-dup.toml:2:6: classify[0].id: rule id `dup` is already used by the rule at ",
    ] {
        assert!(has(needle), "missing {needle:?} in {text:#?}");
    }
    assert!(has("20-bad.toml:28:6"), "the first definition is named: {text:#?}");
    assert_eq!(errs.len(), 14, "{text:#?}");
}

#[test]
fn approved_zone_is_checked_like_unknown_zone() {
    let fx = Fixture::new(
        MAIN,
        &[("10-zones.toml", ZONES), ("20-a.toml", "approved_zone = \"nowhere\"\n")],
    );
    let text = load(&fx.main()).expect_err("must fail").to_string();
    assert!(
        text.contains("20-a.toml:1:17: approved_zone: unknown zone `nowhere`"),
        "{text}"
    );
    let fx = Fixture::new(
        MAIN,
        &[
            ("10-zones.toml", ZONES),
            ("20-a.toml", "approved_zone = \"trusted\"\n"),
            ("30-b.toml", "approved_zone = \"iot\"\n"),
        ],
    );
    let text = load(&fx.main()).expect_err("must fail").to_string();
    assert!(
        text.contains("30-b.toml:1:17: approved_zone: `approved_zone` is set in more than one policy file"),
        "{text}"
    );
}

#[test]
fn unknown_rule_field_is_named() {
    let typo = "[[classify]]\nid = \"x\"\nclass = \"plug\"\nconfidence = \"low\"\nsource = \"s\"\n[classify.match]\nhostnme = [\"a*\"]\n";
    let fx = Fixture::new(MAIN, &[("10-zones.toml", ZONES), ("20-typo.toml", typo)]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "hostnme");
    assert_eq!(errs[0].line, 7);
}

// ---- [tunnel] ----

use crate::tunnel::keys::{format_key, generate_private, public_key};

/// A fresh public key as base64.
fn new_public() -> String {
    format_key(&public_key(&generate_private()))
}

fn tunnel_main(peer_key: &str, extra_peer: &str) -> String {
    format!(
        r#"{MAIN}
[tunnel]
private_key_file = "tunnel.key"
addresses = ["10.64.0.2/32", "fd64::2/128"]
listen_port = 51820

[[tunnel.peers]]
public_key = "{peer_key}"
preshared_key_file = "tunnel.key.psk0"
endpoint = "vpn.example.net:51820"
allowed_ips = ["0.0.0.0/0", "::/0"]
persistent_keepalive = 25
{extra_peer}"#
    )
}

fn write_0600(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

const TUNNEL_POLICY_A: &str = r#"
[tunnel]
zones = ["iot"]
devices = ["02:00:00:00:00:01"]
destinations = ["203.0.113.0/24", "2001:db8:1::/48", "198.51.100.7"]
domain_sets = ["streaming"]

[tunnel.exclude]
devices = ["02:00:00:00:00:09"]
destinations = ["203.0.113.128/25"]
"#;

const TUNNEL_POLICY_B: &str = r#"
[tunnel]
zones = ["trusted", "iot"]
devices = ["02:00:00:00:00:02"]
destinations = ["203.0.113.0/24"]
"#;

#[test]
fn tunnel_and_selectors_load() {
    let peer = new_public();
    let endpoint6 = format!(
        "\n[[tunnel.peers]]\npublic_key = \"{}\"\npreshared_key = \"{}\"\nendpoint = \"[2001:db8::7]:443\"\nallowed_ips = [\"10.64.0.1/32\"]\npersistent_keepalive = 0\n",
        new_public(),
        format_key(&generate_private())
    );
    let fx = Fixture::new(
        &tunnel_main(&peer, &endpoint6),
        &[
            ("10-zones.toml", ZONES),
            ("20-a.toml", TUNNEL_POLICY_A),
            ("30-b.toml", TUNNEL_POLICY_B),
        ],
    );
    let psk = generate_private();
    write_0600(&fx.dir.join("tunnel.key.psk0"), &format_key(&psk));
    let cfg = load(&fx.main()).unwrap_or_else(|e| panic!("must load:\n{e}"));
    let t = cfg.tunnel.expect("tunnel");
    assert_eq!(t.interface, "bhwg0");
    assert_eq!(t.mtu, 1420);
    assert_eq!(t.listen_port, Some(51820));
    assert_eq!(t.private_key, PrivateKeySource::File(fx.dir.join("tunnel.key")));
    assert_eq!(t.addresses.len(), 2);
    assert_eq!(t.peers.len(), 2);
    let p = &t.peers[0];
    assert_eq!(format_key(&p.public_key), peer);
    assert_eq!(p.preshared_key, Some(psk));
    assert_eq!(
        p.endpoint.as_ref().map(|e| e.to_string()).as_deref(),
        Some("vpn.example.net:51820")
    );
    assert_eq!(p.allowed_ips.len(), 2);
    assert_eq!(p.persistent_keepalive, Some(25));
    let p = &t.peers[1];
    assert_eq!(p.endpoint.as_ref().map(|e| e.host.as_str()), Some("2001:db8::7"));
    assert_eq!(p.persistent_keepalive, None, "0 means none");
    assert!(p.preshared_key.is_some());

    let s = &cfg.policy.tunnel;
    let zones: Vec<&str> = s.zones.iter().map(ZoneId::as_str).collect();
    assert_eq!(zones, ["iot", "trusted"], "a union over the files");
    assert_eq!(s.devices.len(), 2);
    let dests: Vec<String> = s.destinations.iter().map(|d| d.to_string()).collect();
    assert_eq!(dests, ["203.0.113.0/24", "2001:db8:1::/48", "198.51.100.7/32"]);
    assert_eq!(
        s.domain_sets.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
        ["streaming"]
    );
    assert_eq!(s.exclude_devices.len(), 1);
    assert_eq!(s.exclude_destinations.len(), 1);

    // No [tunnel] anywhere: none, and nothing selected.
    let fx = Fixture::new(MAIN, &[("10-zones.toml", ZONES)]);
    let cfg = load(&fx.main()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.tunnel, None);
    assert!(cfg.policy.tunnel.is_empty());
}

#[test]
fn inline_private_key_and_options() {
    let private = generate_private();
    let main = format!(
        "{MAIN}\n[tunnel]\ninterface = \"wg-vpn\"\nprivate_key = \"{}\"\naddresses = [\"10.64.0.2/32\"]\nmtu = 1280\n\n[[tunnel.peers]]\npublic_key = \"{}\"\nallowed_ips = [\"0.0.0.0/0\"]\n",
        format_key(&private),
        new_public()
    );
    let fx = Fixture::new(&main, &[("10-zones.toml", ZONES)]);
    let t = load(&fx.main())
        .unwrap_or_else(|e| panic!("{e}"))
        .tunnel
        .expect("tunnel");
    assert_eq!(t.interface, "wg-vpn");
    assert_eq!(t.mtu, 1280);
    assert_eq!(t.listen_port, None);
    assert_eq!(t.private_key, PrivateKeySource::Inline(private));
    assert_eq!(t.peers[0].endpoint, None);
}

/// The errors as `file-name:line:col: field: message`, file name without its directory.
fn error_lines(errs: &[ConfigError]) -> Vec<String> {
    errs.iter()
        .map(|e| {
            let name = e
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{name}:{}:{}: {}: {}", e.line, e.column, e.field, e.message)
        })
        .collect()
}

fn assert_errors(errs: &[ConfigError], expected: &[&str]) {
    let text = error_lines(errs);
    for needle in expected {
        assert!(
            text.iter().any(|t| t.starts_with(needle)),
            "missing {needle:?} in\n{}",
            text.join("\n")
        );
    }
    assert_eq!(errs.len(), expected.len(), "{}", text.join("\n"));
}

#[test]
fn every_tunnel_error_is_reported_with_position_and_field() {
    let secret = format_key(&generate_private());
    let peer = new_public();
    let main = format!(
        r#"{MAIN}
[tunnel]
interface = "br-lan"
private_key = "{short}"
addresses = ["10.64.0.2", "fd64::2/129"]
mtu = 1000
listen_port = 0

[[tunnel.peers]]
public_key = "{peer}"
preshared_key_file = "missing.psk"
endpoint = "vpn.example.net"
allowed_ips = ["10.0.0.1/8"]
persistent_keepalive = 70000

[[tunnel.peers]]
public_key = "{peer}"
endpoint = "2001:db8::1:51820"
allowed_ips = []

[[tunnel.peers]]
endpoint = "bad host!:1"
"#,
        short = &secret[..43]
    );
    let fx = Fixture::new(&main, &[("10-zones.toml", ZONES)]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert_errors(
        &errs,
        &[
            "bulkhead.toml:24:13: tunnel.interface: interface `br-lan` is already used by the WAN or a segment",
            "bulkhead.toml:25:15: tunnel.private_key: not a WireGuard key: expected 44 characters",
            "bulkhead.toml:26:14: tunnel.addresses[0]: `10.64.0.2` is not an address/prefix",
            "bulkhead.toml:26:27: tunnel.addresses[1]: `fd64::2/129` is not an address/prefix",
            "bulkhead.toml:27:7: tunnel.mtu: the MTU must be between 1280 and 9000",
            "bulkhead.toml:28:15: tunnel.listen_port: a UDP port is 1-65535",
            "bulkhead.toml:32:22: tunnel.peers[0].preshared_key_file: ",
            "bulkhead.toml:33:12: tunnel.peers[0].endpoint: `vpn.example.net` is not an endpoint",
            "bulkhead.toml:34:16: tunnel.peers[0].allowed_ips[0]: `10.0.0.1/8` is not a network: its host bits are not zero (did you mean 10.0.0.0/8?)",
            "bulkhead.toml:35:24: tunnel.peers[0].persistent_keepalive: the keepalive interval is 1-65535 seconds",
            "bulkhead.toml:39:12: tunnel.peers[1].endpoint: `2001:db8::1:51820`: write an IPv6 endpoint in brackets",
            "bulkhead.toml:40:15: tunnel.peers[1].allowed_ips: give at least one network",
            "bulkhead.toml:42:1: tunnel.peers[2].public_key: a peer needs its `public_key`",
            "bulkhead.toml:43:12: tunnel.peers[2].endpoint: `bad host!:1` is not an endpoint",
            "bulkhead.toml:42:1: tunnel.peers[2].allowed_ips: a peer needs `allowed_ips`",
        ],
    );
    let all = error_lines(&errs).join("\n");
    assert!(
        !all.contains(&secret[..43]),
        "the private key's text is never echoed:\n{all}"
    );
    assert!(
        all.contains("missing.psk: cannot read the key file: No such file"),
        "{all}"
    );
}

#[test]
fn tunnel_needs_a_key_addresses_peers_and_unique_peer_keys() {
    let main = format!("{MAIN}\n[tunnel]\n");
    let fx = Fixture::new(&main, &[("10-zones.toml", ZONES)]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert_errors(
        &errs,
        &[
            "bulkhead.toml:23:1: tunnel.private_key_file: the tunnel needs `private_key_file`",
            "bulkhead.toml:23:1: tunnel.addresses: the tunnel needs `addresses`",
            "bulkhead.toml:23:1: tunnel.peers: the tunnel needs at least one [[tunnel.peers]]",
        ],
    );

    let peer = new_public();
    let dup = format!("\n[[tunnel.peers]]\npublic_key = \"{peer}\"\nallowed_ips = [\"::/0\"]\n");
    let main = tunnel_main(&peer, &dup).replace(
        "private_key_file = \"tunnel.key\"",
        &format!(
            "private_key_file = \"tunnel.key\"\nprivate_key = \"{}\"",
            format_key(&generate_private())
        ),
    );
    let fx = Fixture::new(&main, &[("10-zones.toml", ZONES)]);
    write_0600(&fx.dir.join("tunnel.key.psk0"), &format_key(&generate_private()));
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert_errors(
        &errs,
        &[
            "bulkhead.toml:24:20: tunnel.private_key_file: give either `private_key` or `private_key_file`, not both",
            "bulkhead.toml:37:14: tunnel.peers[1].public_key: this peer's public key is already used by the peer at ",
        ],
    );
    assert!(
        error_lines(&errs)[1].ends_with("bulkhead.toml:30:14"),
        "{:?}",
        error_lines(&errs)
    );

    // A world-readable preshared key file is refused, naming the file and its mode.
    let fx = Fixture::new(&tunnel_main(&peer, ""), &[("10-zones.toml", ZONES)]);
    std::fs::write(fx.dir.join("tunnel.key.psk0"), format_key(&generate_private())).expect("write");
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert_errors(&errs, &["bulkhead.toml:30:22: tunnel.peers[0].preshared_key_file: "]);
    assert!(
        errs[0]
            .message
            .contains("tunnel.key.psk0: the key file is accessible by group or others (mode 0644)"),
        "{}",
        errs[0]
    );
}

#[test]
fn every_selector_error_is_reported_with_position_and_field() {
    let bad = r#"
[tunnel]
zones = ["nowhere"]
devices = ["02:00:00:00:00:zz", "02:00:00:00:00:01"]
destinations = ["203.0.113.1/24", "not-a-net"]
domain_sets = ["Streaming"]

[tunnel.exclude]
devices = ["02:00:00:00:00:02"]
destinations = ["2001:db8::1/32"]
"#;
    let fx = Fixture::new(
        &tunnel_main(&new_public(), ""),
        &[
            ("10-zones.toml", ZONES),
            ("20-a.toml", TUNNEL_POLICY_A),
            ("30-b.toml", TUNNEL_POLICY_B),
            ("40-bad.toml", bad),
        ],
    );
    write_0600(&fx.dir.join("tunnel.key.psk0"), &format_key(&generate_private()));
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert_errors(
        &errs,
        &[
            "40-bad.toml:3:10: tunnel.zones[0]: unknown zone `nowhere`",
            "40-bad.toml:4:12: tunnel.devices[0]: `02:00:00:00:00:zz` is not a MAC address",
            "40-bad.toml:5:17: tunnel.destinations[0]: `203.0.113.1/24` is not a network: its host bits are not zero (did you mean 203.0.113.0/24?)",
            "40-bad.toml:5:35: tunnel.destinations[1]: `not-a-net` is not a network",
            "40-bad.toml:6:16: tunnel.domain_sets[0]: `Streaming` is not a valid name",
            "40-bad.toml:10:17: tunnel.exclude.destinations[0]: `2001:db8::1/32` is not a network",
            "40-bad.toml:9:12: tunnel.exclude.devices[0]: device 02:00:00:00:00:02 is excluded here but selected at ",
        ],
    );
    let text = error_lines(&errs).join("\n");
    assert!(
        text.contains("selected at ") && text.contains("30-b.toml:4:12"),
        "{text}"
    );

    // Selected after being excluded (in a later file) is reported too.
    let later = "[tunnel]\ndevices = [\"02:00:00:00:00:09\"]\n";
    let fx = Fixture::new(
        &tunnel_main(&new_public(), ""),
        &[
            ("10-zones.toml", ZONES),
            ("20-a.toml", TUNNEL_POLICY_A),
            ("30-later.toml", later),
        ],
    );
    write_0600(&fx.dir.join("tunnel.key.psk0"), &format_key(&generate_private()));
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert_errors(
        &errs,
        &["30-later.toml:2:12: tunnel.devices[0]: device 02:00:00:00:00:09 is selected here but excluded at "],
    );
}

#[test]
fn selectors_without_a_tunnel_are_an_error() {
    let only_exclude = "[tunnel.exclude]\ndevices = [\"02:00:00:00:00:05\"]\n";
    let empty = "[tunnel]\nzones = []\n";
    let fx = Fixture::new(
        MAIN,
        &[
            ("10-zones.toml", ZONES),
            ("20-a.toml", TUNNEL_POLICY_A),
            ("30-x.toml", only_exclude),
            ("40-e.toml", empty),
        ],
    );
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert_errors(
        &errs,
        &[
            "20-a.toml:3:9: tunnel.zones: tunnel selectors need a [tunnel] section in ",
            "30-x.toml:2:11: tunnel.exclude.devices: tunnel selectors need a [tunnel] section in ",
        ],
    );
    assert!(errs[0].message.ends_with("bulkhead.toml"), "{}", errs[0]);
}

#[test]
fn implied_tunnel_table_is_reported_at_its_first_value() {
    // Only `[[tunnel.peers]]`, no `[tunnel]` header: the section's errors point at the peer.
    let main = format!(
        "{MAIN}
[[tunnel.peers]]
public_key = \"{}\"\nallowed_ips = [\"::/0\"]\n",
        new_public()
    );
    let fx = Fixture::new(&main, &[("10-zones.toml", ZONES)]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert_errors(
        &errs,
        &[
            "bulkhead.toml:23:1: tunnel.private_key_file: the tunnel needs",
            "bulkhead.toml:23:1: tunnel.addresses: the tunnel needs",
        ],
    );
}

#[test]
fn web_listens_only_on_loopback_or_segment_addresses() {
    let pol = shipped_policies();
    let refs: Vec<(&str, &str)> = pol.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let main = format!(
        "{MAIN}\n[web]\nlisten = [\"127.0.0.1:8080\", \"10.0.1.1:8080\", \"0.0.0.0:8080\", \"192.0.2.1:80\"]\nhostnames = [\"Router.lan\", \"bad name\"]\n"
    );
    let fx = Fixture::new(&main, &refs);
    let err = load(&fx.main())
        .expect_err("wildcard and foreign addresses refused")
        .to_string();
    assert!(err.contains("web.listen[2]") && err.contains("not on 0.0.0.0"), "{err}");
    assert!(err.contains("web.listen[3]") && err.contains("192.0.2.1"), "{err}");
    assert!(err.contains("web.hostnames[1]"), "{err}");
    assert!(
        !err.contains("web.listen[0]") && !err.contains("web.listen[1]"),
        "{err}"
    );

    let main = format!("{MAIN}\n[web]\nlisten = [\"127.0.0.1:8080\", \"10.0.1.1:80\"]\nhostnames = [\"Router.lan\"]\n");
    let fx = Fixture::new(&main, &refs);
    let cfg = load(&fx.main()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.web.allowed_hosts(),
        [
            "10.0.1.1:80",
            "127.0.0.1:8080",
            "localhost:8080",
            "router.lan:80",
            "router.lan:8080"
        ]
    );
    // Hostnames alone keep the default listener.
    let main = format!("{MAIN}\n[web]\nhostnames = [\"router.lan\"]\n");
    let fx = Fixture::new(&main, &refs);
    let cfg = load(&fx.main()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.web.listen, [std::net::SocketAddr::from(([127, 0, 0, 1], 8080))]);
}

#[test]
fn dns_settings_load_and_every_dns_error_names_its_place() {
    let good = format!(
        r#"{MAIN}
[dns]
listen = ["10.0.1.1", "127.0.0.1:5353"]
upstreams = ["192.0.2.53", "tcp://[2001:db8::53]:53", "tls://198.51.100.53"]
block_answer = "nxdomain"
bypass = "refuse"
doh_servers = ["192.0.2.44/32"]
rebind_allow = ["Plex.Direct."]

[[dns.blocklists]]
name = "ads"
file = "lists/ads.txt"

[[dns.blocklists]]
name = "trackers"
url = "https://lists.example/trackers.txt"
refresh_hours = 6
"#
    );
    let zones = format!("{ZONES}dns_blocklists = [\"ads\"]\n");
    let fx = Fixture::new(&good, &[("10-zones.toml", &zones)]);
    let dns = load(&fx.main()).unwrap_or_else(|e| panic!("{e}")).dns;
    assert_eq!(dns.listen.len(), 2);
    assert_eq!(dns.upstreams[1].protocol, UpstreamProtocol::Tcp);
    assert_eq!(dns.upstreams[2].addr.port(), 853, "tls:// defaults to 853");
    assert_eq!(dns.block_answer, BlockAnswer::Nxdomain);
    assert_eq!(dns.bypass, BypassMode::Refuse);
    assert_eq!(dns.rebind_allow, ["plex.direct"]);
    assert_eq!(dns.blocklists[0].file, fx.dir.join("lists/ads.txt"));
    assert_eq!(
        dns.blocklists[1].file,
        fx.dir.join("state/blocklists/trackers.txt"),
        "a URL list's last good copy lives in the state directory"
    );
    assert_eq!(dns.blocklists[1].refresh_hours, 6);

    let bad = format!(
        r#"{MAIN}
[dns]
listen = ["0.0.0.0", "198.51.100.2"]
upstreams = ["tls://dns.example.test", "nonsense"]
block_answer = "maybe"
cache_entries = -1

[[dns.blocklists]]
name = "Ads!"
file = "a.txt"

[[dns.blocklists]]
name = "both"
file = "b.txt"
url = "https://x.example/b.txt"

[[dns.blocklists]]
name = "ftp"
url = "ftp://x.example/c.txt"
"#
    );
    let fx = Fixture::new(&bad, &[("10-zones.toml", ZONES)]);
    let errs = load(&fx.main()).expect_err("bad dns").0;
    assert_errors(
        &errs,
        &[
            "bulkhead.toml:24:11: dns.listen[0]: the resolver listens only on loopback",
            "bulkhead.toml:24:22: dns.listen[1]: the resolver listens only on loopback",
            "bulkhead.toml:25:14: dns.upstreams[0]: `tls://dns.example.test:853` is given by name and no `dns.bootstrap`",
            "bulkhead.toml:25:40: dns.upstreams[1]: `nonsense` is not an upstream",
            "bulkhead.toml:26:16: dns.block_answer:",
            "bulkhead.toml:27:17: dns.cache_entries: must be between",
            "bulkhead.toml:30:8: dns.blocklists[0].name: a list name is 1-32",
            "bulkhead.toml:33:1: dns.blocklists[1]: a list has either `file` or `url`",
            "bulkhead.toml:40:7: dns.blocklists[2].url: `ftp://x.example/c.txt` is not an http",
        ],
    );
    // Upstreams by name: pinned, or found through dns.bootstrap; a zone's
    // too. Bad forms name their field and place.
    let named = format!(
        r#"{MAIN}
[dns]
upstreams = ["tls://dns.example.test", "https://192.0.2.53#DNS.example.test./q", "tls://[2001:db8::53]:8853#dns.example.test"]
tunnel_upstreams = ["https://dns.example.test:8443"]
bootstrap = ["192.0.2.53", "tcp://198.51.100.53"]
"#
    );
    let zones = format!("{ZONES}dns_upstreams = [\"tls://kids.example.test\"]\n");
    let fx = Fixture::new(&named, &[("10-zones.toml", &zones)]);
    let config = load(&fx.main()).unwrap_or_else(|e| panic!("{e}"));
    let dns = &config.dns;
    let shown: Vec<String> = dns
        .upstreams
        .iter()
        .chain(&dns.tunnel_upstreams)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown,
        [
            "tls://dns.example.test:853",
            "https://192.0.2.53:443#dns.example.test/q",
            "tls://[2001:db8::53]:8853#dns.example.test",
            "https://dns.example.test:8443/dns-query",
        ]
    );
    assert!(dns.upstreams[0].by_bootstrap() && !dns.upstreams[1].by_bootstrap());
    assert_eq!(dns.bootstrap.len(), 2);
    assert_eq!(dns.bootstrap[1].protocol, UpstreamProtocol::Tcp);
    let bad = format!(
        r#"{MAIN}
[dns]
upstreams = ["udp://192.0.2.53#dns.example.test", "https://dns.example.test/q?x=1", "tls://dns.example.test:99999", "tls://0.0.0.0#dns.example.test", "tls://192.0.2.53#-bad-"]
bootstrap = ["tls://192.0.2.53"]
"#
    );
    let fx = Fixture::new(&bad, &[("10-zones.toml", ZONES)]);
    let errs = load(&fx.main()).expect_err("bad upstreams").0;
    assert_errors(
        &errs,
        &[
            "bulkhead.toml:24:14: dns.upstreams[0]: `udp://192.0.2.53#dns.example.test`: a server name (#NAME) is only for tls:// and https://",
            "bulkhead.toml:24:51: dns.upstreams[1]: `https://dns.example.test/q?x=1`: the path of a DNS-over-HTTPS upstream is plain",
            "bulkhead.toml:24:85: dns.upstreams[2]: `tls://dns.example.test:99999`: `99999` is not a port",
            "bulkhead.toml:24:117: dns.upstreams[3]: `tls://0.0.0.0#dns.example.test` is not an address a question can be sent to",
            "bulkhead.toml:24:151: dns.upstreams[4]: `tls://192.0.2.53#-bad-`: `-bad-` is not a server name",
            "bulkhead.toml:25:14: dns.bootstrap[0]: `tls://192.0.2.53`: bootstrap servers are asked in plain DNS",
        ],
    );
    // A zone's upstream by name without dns.bootstrap.
    let zones = format!("{ZONES}dns_upstreams = [\"https://kids.example.test/dns-query\"]\n");
    let fx = Fixture::new(MAIN, &[("10-zones.toml", &zones)]);
    let errs = load(&fx.main()).expect_err("no bootstrap").0;
    assert_errors(
        &errs,
        &["10-zones.toml:11:18: zones.quarantine.dns_upstreams[0]: `https://kids.example.test:443/dns-query` is given by name and no `dns.bootstrap`"],
    );
    // A zone naming a list the main file does not define.
    let zones = format!("{ZONES}dns_blocklists = [\"missing\"]\n");
    let fx = Fixture::new(MAIN, &[("10-zones.toml", &zones)]);
    let errs = load(&fx.main()).expect_err("unknown list").0;
    assert_errors(
        &errs,
        &["10-zones.toml:11:19: zones.quarantine.dns_blocklists[0]: unknown blocklist `missing`"],
    );
}

#[test]
fn notify_channels_load_with_quiet_hours_and_say_what_they_send() {
    let main = format!(
        "{MAIN}\n[[notify.webhook]]\nname = \"home\"\nurl = \"http://10.0.1.10:8099/hook\"\nquiet_hours = \"22:00-07:00\"\n\
         \n[notify.mqtt]\nbroker = \"10.0.1.10\"\ncommands = true\nquiet_hours = \"0:30-6:00\"\nquiet_min_severity = \"warning\"\n"
    );
    let fx = Fixture::new(&main, &[("zones.toml", ZONES)]);
    let c = load(&fx.main()).expect("loads");
    let hook = &c.notify.webhooks[0];
    assert_eq!(
        hook.filter.quiet,
        Some(QuietHours {
            start: 22 * 60,
            end: 7 * 60
        })
    );
    assert_eq!(
        hook.filter.quiet_min_severity,
        crate::alerts::Severity::Critical,
        "the default"
    );
    assert_eq!(
        hook.filter.describe(),
        "every kind, warning and above, at most 60 an hour; quiet 22:00-07:00 (only critical and above)"
    );
    let mqtt = c.notify.mqtt.as_ref().expect("mqtt");
    assert_eq!(mqtt.broker, "10.0.1.10:1883");
    assert!(mqtt.commands);
    assert_eq!(mqtt.filter.quiet, Some(QuietHours { start: 30, end: 6 * 60 }));
}

#[test]
fn bad_notify_settings_name_file_line_and_field() {
    let main = format!(
        "{MAIN}\n[[notify.ntfy]]\nname = \"phone\"\nurl = \"ftp://x\"\nquiet_hours = \"22-7\"\nquiet_min_severity = \"loud\"\nper_hour = 0\n"
    );
    let fx = Fixture::new(&main, &[("zones.toml", ZONES)]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    let text = error_lines(&errs);
    let base = MAIN.lines().count() + 2;
    for (field, line) in [
        ("notify.ntfy[0].url", base + 2),
        ("notify.ntfy[0].quiet_hours", base + 3),
        ("notify.ntfy[0].quiet_min_severity", base + 4),
        ("notify.ntfy[0].per_hour", base + 5),
    ] {
        assert!(
            errs.iter().any(|e| e.field == field && e.line == line && e.column > 0),
            "{field} at line {line}: {text:#?}"
        );
    }
}

#[test]
fn quiet_hours_parse_strictly_and_may_cross_midnight() {
    let night = QuietHours::parse("22:00-07:00").expect("night");
    assert!(night.contains(23 * 60) && night.contains(0) && night.contains(6 * 60 + 59));
    assert!(!night.contains(7 * 60) && !night.contains(12 * 60) && !night.contains(21 * 60 + 59));
    let lunch = QuietHours::parse(" 12:00 - 13:30 ").expect("lunch");
    assert!(lunch.contains(12 * 60) && lunch.contains(13 * 60 + 29) && !lunch.contains(13 * 60 + 30));
    assert_eq!(lunch.to_string(), "12:00-13:30");
    for bad in [
        "",
        "22:00",
        "22:00-22:00",
        "24:00-07:00",
        "22:60-07:00",
        "22:0-07:00",
        "x:00-07:00",
        "-1:00-07:00",
        "22:00-07:00-08:00",
    ] {
        assert_eq!(QuietHours::parse(bad), None, "{bad}");
    }
}

#[test]
fn mqtt_brokers_take_a_default_port_and_mqtts_means_tls() {
    for (written, broker, tls) in [
        ("10.0.1.10", "10.0.1.10:1883", false),
        ("mqtt://broker.lan:1884", "broker.lan:1884", false),
        ("mqtts://broker.lan", "broker.lan:8883", true),
        ("mqtts://10.0.1.10:8884", "10.0.1.10:8884", true),
    ] {
        let main = format!("{MAIN}\n[notify.mqtt]\nbroker = \"{written}\"\n");
        let fx = Fixture::new(&main, &[("zones.toml", ZONES)]);
        let c = load(&fx.main()).unwrap_or_else(|e| panic!("{written}: {e:?}"));
        let m = c.notify.mqtt.expect("mqtt");
        assert_eq!((m.broker.as_str(), m.tls), (broker, tls), "{written}");
    }
    for bad in ["mqtts://", "broker.lan:99999", "http://broker.lan", "mqtt://a/b"] {
        let main = format!("{MAIN}\n[notify.mqtt]\nbroker = \"{bad}\"\n");
        let fx = Fixture::new(&main, &[("zones.toml", ZONES)]);
        let errs = load(&fx.main()).expect_err(bad).0;
        assert!(
            errs.iter().any(|e| e.field == "notify.mqtt.broker" && e.line > 0),
            "{bad}: {errs:?}"
        );
    }
}

/// The example configuration (`examples/bulkhead.toml`) with the shipped
/// policies goes through the loader `check-config` uses without an error,
/// and says what its comments say.
#[test]
fn the_example_configuration_is_valid_and_means_what_it_says() {
    let text = include_str!("../../../examples/bulkhead.toml");
    let policies: Vec<(std::path::PathBuf, String)> = shipped_policies()
        .into_iter()
        .map(|(name, text)| (std::path::PathBuf::from(format!("/etc/bulkhead/policies/{name}")), text))
        .collect();
    let c = load_from_texts(std::path::Path::new("/etc/bulkhead/bulkhead.toml"), text, &policies)
        .unwrap_or_else(|e| panic!("examples/bulkhead.toml does not load:\n{e}"));
    assert_eq!(c.wan_interface, "eth0");
    assert_eq!(
        c.segments.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["lan", "iot"]
    );
    assert!(c.dns.enabled && c.detect.enabled && c.traffic.enabled);
    assert_eq!(c.traffic.sample_secs, crate::config::DEFAULT_SAMPLE_SECS);
    assert_eq!(c.notify.ntfy.len(), 1);
    assert!(c.notify.webhooks.is_empty() && c.notify.mqtt.is_none() && c.tunnel.is_none());
    // Every setting the loader knows appears in the example, set or commented.
    for key in [
        "state_dir",
        "policies_dir",
        "control_socket",
        "police_input",
        "flow_offload",
        "ports",
        "parent",
        "vlan_id",
        "ipv6",
        "dhcp_pool",
        "lease_secs",
        "observe_lease_file",
        "hostnames",
        "tunnel_upstreams",
        "cache_entries",
        "block_answer",
        "rebind_protection",
        "rebind_allow",
        "client_qps",
        "query_log_entries",
        "bypass",
        "doh_servers",
        "tls_ca_file",
        "refresh_hours",
        "nflog_group",
        "samples_per_second",
        "sample_secs",
        "forget_private_after_days",
        "private_key_file",
        "mtu",
        "listen_port",
        "persistent_keepalive",
        "secret_file",
        "min_severity",
        "kinds",
        "per_hour",
        "quiet_hours",
        "quiet_min_severity",
        "password_file",
        "discovery_prefix",
        "topic_prefix",
        "commands",
        "private_key",
        "preshared_key_file",
        "preshared_key",
        "public_key",
        "endpoint",
        "allowed_ips",
        "addresses",
        "interface",
        "kind",
        "ipv4",
        "dhcp",
        "domain",
        "listen",
        "upstreams",
        "enabled",
        "url",
        "file",
        "broker",
        "username",
        "name",
    ] {
        assert!(
            text.contains(&format!("{key} = ")),
            "examples/bulkhead.toml does not mention `{key}`"
        );
    }
}

#[test]
fn shares_name_a_preset_or_services_and_known_zones() {
    let presets = include_str!("../../../policies/shares.toml");
    let good = r#"
[[share]]
preset = "chromecast"
from = ["iot"]
to = ["trusted"]

[[share]]
services = ["_IPP._tcp"]
ports = ["tcp/631"]
from = ["iot"]
to = ["trusted", "quarantine"]
"#;
    let fx = Fixture::new(
        MAIN,
        &[
            ("10-zones.toml", ZONES),
            ("shares.toml", presets),
            ("50-home.toml", good),
        ],
    );
    let cfg = load(&fx.main()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.policy.shares.len(), 2);
    let cast = &cfg.policy.shares[0];
    assert_eq!(cast.name, "chromecast");
    assert_eq!(
        cast.ports.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["tcp/8008-8009"]
    );
    assert_eq!(
        cfg.policy.shares[1]
            .services
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
        ["_ipp._tcp"]
    );
    assert!(cfg.policy.share_presets.len() >= 5, "the shipped presets");
    assert!(cfg.policy.share_presets.iter().all(|p| !p.source.is_empty()));

    let bad = r#"
[[share]]
preset = "teleporter"
from = ["iot"]
to = ["trusted"]

[[share]]
services = ["googlecast"]
ports = ["tcp/1-1000"]
from = ["iot"]
to = ["nowhere"]

[[share]]
services = ["_x._tcp"]
from = ["iot"]
to = ["iot"]
"#;
    let fx = Fixture::new(
        MAIN,
        &[
            ("10-zones.toml", ZONES),
            ("shares.toml", presets),
            ("50-home.toml", bad),
        ],
    );
    let errs = load(&fx.main()).expect_err("must fail").0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(
        has("50-home.toml:3:10: share[0].preset: unknown preset `teleporter`"),
        "{text:#?}"
    );
    assert!(
        has("50-home.toml:8:13: share[1].services[0]: `googlecast` is not a service type"),
        "{text:#?}"
    );
    assert!(has("share[1].ports[0]: `tcp/1-1000` opens 1000 ports"), "{text:#?}");
    assert!(has("share[1].to[0]: unknown zone `nowhere`"), "{text:#?}");
    assert!(has("share[2].to: zone `iot` is on both sides"), "{text:#?}");
}

#[test]
fn nothing_is_shared_by_default() {
    let pol = shipped_policies();
    let refs: Vec<(&str, &str)> = pol.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let fx = Fixture::new(MAIN, &refs);
    let cfg = load(&fx.main()).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.policy.shares.is_empty());
    let names: Vec<&str> = cfg.policy.share_presets.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "chromecast",
            "airplay",
            "spotify-connect",
            "sonos",
            "printer",
            "dlna",
            "homekit"
        ]
    );
}

#[test]
fn upnp_conditions_name_known_fields() {
    let rules = r#"
[[classify]]
id = "nas"
class = "nas"
confidence = "medium"
source = "s"
match = { upnp = { manufacturer = ["Synology*"], colour = ["red"] } }
"#;
    let fx = Fixture::new(MAIN, &[("10-zones.toml", ZONES), ("20-rules.toml", rules)]);
    let errs = load(&fx.main()).expect_err("must fail").0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("upnp.colour: unknown UPnP field `colour`")),
        "{text:#?}"
    );
}

#[test]
fn traffic_settings_load_and_a_bad_interval_names_its_line() {
    let fx = Fixture::new(
        &format!("{MAIN}\n[traffic]\nenabled = false\nsample_secs = 5\n"),
        &[("10-zones.toml", ZONES)],
    );
    let c = load(&fx.main()).expect("loads");
    assert!(!c.traffic.enabled);
    assert_eq!(c.traffic.sample_secs, 5);
    let fx = Fixture::new(
        &format!("{MAIN}\n[traffic]\nsample_secs = 0\n"),
        &[("10-zones.toml", ZONES)],
    );
    let errs = load(&fx.main()).expect_err("must fail").0;
    assert!(
        errs.iter()
            .any(|e| e.field == "traffic.sample_secs" && e.line == MAIN.lines().count() + 3),
        "{errs:?}"
    );
}
