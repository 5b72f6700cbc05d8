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
