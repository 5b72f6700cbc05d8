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
