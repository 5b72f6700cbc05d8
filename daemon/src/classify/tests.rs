//! Classification as a whole ([`classify`] then [`placement`]) with the shipped
//! rule set (policies/classes.toml), against realistic and hostile evidence, with
//! vendors looked up in the real IEEE table. Each part's own tests sit at the
//! bottom of its file.

use super::*;
use crate::config::{Config, MacAddr, ZoneId};
use crate::discovery::oui;
use crate::testutil::default_config;

/// What we expect a device to be classified as: rule, class, zone, confidence.
type Expected = (&'static str, DeviceClass, Option<&'static str>, Confidence);

fn classify_device(cfg: &Config, mac: &str, evidence: &Evidence) -> Option<ClassMatch> {
    let mac: MacAddr = mac.parse().expect("test MAC");
    classify(
        &cfg.policy.classify,
        evidence,
        oui::lookup(&mac),
        oui::is_randomized(&mac),
    )
}

fn services(list: &[&str]) -> std::collections::BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn txt(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn shipped_rules_load_and_keep_their_promises() {
    let cfg = default_config();
    let p = &cfg.policy;
    assert!(p.classify.len() >= 45, "{} rules", p.classify.len());
    assert_eq!(p.approved_zone.as_ref().map(ZoneId::as_str), Some("trusted"));
    let trusted = ZoneId::new("trusted").expect("id");
    let guest = ZoneId::new("guest").expect("id");
    for r in &p.classify {
        assert!(r.source.len() >= 20, "{}: say where the signature comes from", r.id);
        assert_ne!(r.zone.as_ref(), Some(&trusted), "{}: no rule grants trusted", r.id);
        if r.class.is_personal() {
            assert!(
                r.zone.is_none() || r.zone.as_ref() == Some(&guest),
                "{}: personal devices get guest at most",
                r.id
            );
        }
        let vendor_only = !r.conditions.vendor.is_empty() && r.conditions.count() == 1;
        if vendor_only {
            assert_eq!(r.confidence, Confidence::Low, "{}: an OUI alone is a weak signal", r.id);
        }
        if let Some(z) = &r.zone {
            assert!(p.zones.contains_key(z), "{}: zone {z} exists", r.id);
        }
    }
}

#[test]
fn realistic_devices_are_classified() {
    let cfg = default_config();
    let cases: Vec<(&str, &str, Evidence, Expected)> = vec![
        (
            "Chromecast",
            "f4:f5:d8:12:34:56",
            Evidence {
                mdns_services: services(&["_googlecast._tcp.local."]),
                mdns_names: services(&["Chromecast-5c2f3a.local", "Living Room TV._googlecast._tcp.local."]),
                txt: txt(&[("md", "Chromecast"), ("fn", "Living Room TV")]),
                ..Default::default()
            },
            ("chromecast", DeviceClass::Media, Some("iot"), Confidence::High),
        ),
        (
            "Google Nest Mini",
            "f4:f5:d8:00:00:02",
            Evidence {
                mdns_services: services(&["_googlecast._tcp"]),
                txt: txt(&[("md", "Google Nest Mini")]),
                ..Default::default()
            },
            (
                "google-nest-speaker",
                DeviceClass::VoiceAssistant,
                Some("iot"),
                Confidence::High,
            ),
        ),
        (
            "ESP8266 plug",
            "24:6f:28:3a:4b:5c",
            Evidence {
                hostname: Some("ESP_3A4B5C".into()),
                dhcp_params: Some(vec![1, 3, 28, 6, 15, 44, 46, 47, 31, 33, 121, 43]),
                ..Default::default()
            },
            (
                "esp8266-default-hostname",
                DeviceClass::Plug,
                Some("iot"),
                Confidence::Medium,
            ),
        ),
        (
            "HP printer",
            "3c:d9:2b:01:02:03",
            Evidence {
                hostname: Some("HP3CD92B010203".into()),
                mdns_services: services(&[
                    "_ipp._tcp",
                    "_ipps._tcp",
                    "_pdl-datastream._tcp",
                    "_printer._tcp",
                    "_uscan._tcp",
                    "_http._tcp",
                ]),
                txt: txt(&[
                    ("ty", "HP LaserJet MFP M234sdw"),
                    ("usb_mfg", "HP"),
                    ("product", "(HP LaserJet MFP M234sdw)"),
                ]),
                ..Default::default()
            },
            ("ipp-printer-hp", DeviceClass::Printer, Some("iot"), Confidence::High),
        ),
        (
            "iPhone (private address)",
            "ba:12:34:56:78:9a",
            Evidence {
                hostname: Some("Annas-iPhone".into()),
                dhcp_params: Some(vec![1, 121, 3, 6, 15, 108, 114, 119, 252]),
                ..Default::default()
            },
            ("iphone-hostname", DeviceClass::Phone, None, Confidence::Medium),
        ),
        (
            "Android phone (private address)",
            "5e:aa:bb:cc:dd:ee",
            Evidence {
                hostname: Some("Pixel-8".into()),
                vendor_class: Some("android-dhcp-14".into()),
                dhcp_params: Some(vec![1, 3, 6, 15, 26, 28, 51, 58, 59, 43, 114, 108]),
                ..Default::default()
            },
            ("android-dhcp", DeviceClass::Phone, None, Confidence::Medium),
        ),
        (
            "Windows PC",
            "00:d8:61:aa:bb:cc",
            Evidence {
                hostname: Some("DESKTOP-4F2K9QX".into()),
                vendor_class: Some("MSFT 5.0".into()),
                dhcp_params: Some(vec![1, 3, 6, 15, 31, 33, 43, 44, 46, 47, 119, 121, 249, 252]),
                ..Default::default()
            },
            ("windows-dhcp", DeviceClass::Desktop, None, Confidence::Medium),
        ),
        (
            "Hue bridge",
            "00:17:88:6a:7b:8c",
            Evidence {
                mdns_services: services(&["_hue._tcp"]),
                mdns_names: services(&["Philips Hue - 6A7B8C._hue._tcp.local."]),
                txt: txt(&[("bridgeid", "001788fffe6a7b8c"), ("modelid", "BSB002")]),
                ..Default::default()
            },
            ("hue-bridge", DeviceClass::Hub, Some("iot"), Confidence::High),
        ),
        (
            "Sonos speaker",
            "54:2a:1b:11:22:33",
            Evidence {
                mdns_services: services(&["_sonos._tcp", "_spotify-connect._tcp", "_airplay._tcp", "_raop._tcp"]),
                txt: txt(&[("model", "One")]),
                ..Default::default()
            },
            ("sonos", DeviceClass::Speaker, Some("iot"), Confidence::High),
        ),
        (
            "Apple TV",
            "60:8b:0e:44:55:66",
            Evidence {
                mdns_services: services(&["_airplay._tcp", "_raop._tcp", "_companion-link._tcp"]),
                txt: txt(&[("model", "AppleTV11,1")]),
                ..Default::default()
            },
            ("apple-tv", DeviceClass::Media, Some("iot"), Confidence::High),
        ),
        (
            "Shelly Plus 1PM",
            "24:6f:28:aa:bb:cc",
            Evidence {
                hostname: Some("shellyplus1pm-246f28aabbcc".into()),
                mdns_services: services(&["_shelly._tcp", "_http._tcp"]),
                txt: txt(&[("gen", "2"), ("app", "Plus1PM")]),
                ..Default::default()
            },
            ("shelly-gen2", DeviceClass::Switch, Some("iot"), Confidence::High),
        ),
        (
            "Roomba",
            "50:14:79:01:02:03",
            Evidence {
                hostname: Some("iRobot-0123456789ABCDEF".into()),
                ..Default::default()
            },
            ("roomba", DeviceClass::Vacuum, Some("iot"), Confidence::Medium),
        ),
        (
            "TP-Link Kasa plug",
            "50:c7:bf:01:02:03",
            Evidence {
                hostname: Some("HS103".into()),
                ..Default::default()
            },
            ("tplink-kasa-plug", DeviceClass::Plug, Some("iot"), Confidence::Medium),
        ),
        (
            "Matter plug waiting for commissioning",
            "2a:00:00:00:00:01",
            Evidence {
                mdns_services: services(&["_matterc._udp"]),
                txt: txt(&[("d", "3840"), ("vp", "4874+77"), ("dt", "266"), ("cm", "1")]),
                ..Default::default()
            },
            ("matter-plug", DeviceClass::Plug, Some("iot"), Confidence::High),
        ),
        (
            "Synology NAS",
            "00:11:32:aa:bb:cc",
            Evidence {
                mdns_services: services(&["_http._tcp", "_smb._tcp", "_afpovertcp._tcp"]),
                txt: txt(&[("vendor", "Synology"), ("model", "DS920+")]),
                ..Default::default()
            },
            ("synology-nas", DeviceClass::Nas, Some("iot"), Confidence::High),
        ),
        (
            "MacBook",
            "60:8b:0e:77:88:99",
            Evidence {
                hostname: Some("Annas-MacBook-Pro".into()),
                mdns_services: services(&["_device-info._tcp", "_airplay._tcp", "_companion-link._tcp"]),
                txt: txt(&[("model", "MacBookPro18,3")]),
                ..Default::default()
            },
            ("mac-device-info", DeviceClass::Laptop, None, Confidence::High),
        ),
        (
            "Nintendo Switch",
            "98:b6:e9:01:02:03",
            Evidence {
                dhcp_params: Some(vec![1, 3, 6, 15, 28, 33]),
                ..Default::default()
            },
            ("nintendo-vendor", DeviceClass::Console, Some("guest"), Confidence::Low),
        ),
        (
            "a bare Espressif module",
            "24:6f:28:00:00:07",
            Evidence::default(),
            ("espressif-vendor", DeviceClass::Other, Some("iot"), Confidence::Low),
        ),
    ];
    assert!(cases.len() >= 15);
    for (what, mac, evidence, (rule, class, zone, confidence)) in cases {
        let m = classify_device(&cfg, mac, &evidence).unwrap_or_else(|| panic!("{what}: no match"));
        assert_eq!(
            (
                m.rule.as_str(),
                m.class,
                m.zone.as_ref().map(ZoneId::as_str),
                m.confidence
            ),
            (rule, class, zone, confidence),
            "{what}: {:?}",
            m.matched
        );
        assert_eq!(m.matched.len(), {
            let r = cfg.policy.classify.iter().find(|r| r.id == rule).expect("rule exists");
            r.conditions.count()
        });
    }
}

#[test]
fn placement_with_the_shipped_policy() {
    let cfg = default_config();
    let unknown = cfg.policy.unknown_zone.clone();
    let place = |mac: &str, e: &Evidence| {
        let m = classify_device(&cfg, mac, e).expect("match");
        placement(&cfg.policy, &m, &unknown).map(String::from)
    };
    let chromecast = Evidence {
        mdns_services: services(&["_googlecast._tcp"]),
        txt: txt(&[("md", "Chromecast Ultra")]),
        ..Default::default()
    };
    assert_eq!(place("f4:f5:d8:12:34:56", &chromecast), Some("iot".into()));
    // Vendor-only (low) matches never let a device out of quarantine.
    assert_eq!(place("24:6f:28:00:00:07", &Evidence::default()), None);
    assert_eq!(place("98:b6:e9:01:02:03", &Evidence::default()), None);
    // Personal devices have no zone: the homeowner decides.
    let windows = Evidence {
        vendor_class: Some("MSFT 5.0".into()),
        ..Default::default()
    };
    assert_eq!(place("00:d8:61:aa:bb:cc", &windows), None);
}

#[test]
fn nothing_known_classifies_as_nothing() {
    let cfg = default_config();
    assert_eq!(classify_device(&cfg, "02:00:00:00:00:01", &Evidence::default()), None);
    // A registered vendor the rules do not know.
    assert_eq!(classify_device(&cfg, "00:d8:61:00:00:01", &Evidence::default()), None);
    let e = Evidence {
        hostname: Some("raspberrypi".into()),
        dhcp_params: Some(vec![1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42]),
        ..Default::default()
    };
    assert_eq!(classify_device(&cfg, "02:00:00:00:00:02", &e), None);
}

#[test]
fn hostile_evidence_neither_panics_nor_matches_wrongly() {
    let cfg = default_config();
    let random = "02:00:00:00:00:03";
    let long_ascii = "a".repeat(255);
    let long_multibyte = "é".repeat(127);
    let long_esp = format!("ESP_{}", "A".repeat(251));
    let hostile_names = [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "Bob's \"iPhone\"",
        "iPhone\n",
        "Annas-iPhone\r\nX-Injected: 1",
        "\u{202e}enohPi-sannA",
        "iPhone\u{202e}",
        "ESP_\u{202e}ABCDE",
        "MSFT 5.0\0",
        "'; DROP TABLE devices; --",
        "../../etc/passwd",
        long_ascii.as_str(),
        long_multibyte.as_str(),
        long_esp.as_str(),
        "*",
        "?",
        "",
    ];
    for name in hostile_names {
        let as_everything = Evidence {
            hostname: Some(name.into()),
            vendor_class: Some(name.into()),
            client_id: Some(name.into()),
            mdns_services: services(&[name]),
            mdns_names: services(&[name]),
            txt: txt(&[("md", name), ("ty", name), ("model", name), ("ci", name), (name, name)]),
            ..Default::default()
        };
        let m = classify_device(&cfg, random, &as_everything);
        assert_eq!(m, None, "{:?} matched", name.escape_debug().to_string());
    }
    // A hidden character in an otherwise matching name: only the vendor is left.
    let e = Evidence {
        hostname: Some("ESP_\u{202e}ABCDE".into()),
        ..Default::default()
    };
    let m = classify_device(&cfg, "24:6f:28:3a:4b:5c", &e).expect("vendor matches");
    assert_eq!(m.rule, "espressif-vendor");
    // A real service type with a hostile model: the service still says what it is,
    // the hidden model does not make it more specific.
    let e = Evidence {
        mdns_services: services(&["_googlecast._tcp"]),
        txt: txt(&[("md", "Chromecast\u{202e}")]),
        ..Default::default()
    };
    let m = classify_device(&cfg, random, &e).expect("service matches");
    assert_eq!(m.rule, "google-cast-device");
    // A parameter list of 255 entries is just a list.
    let e = Evidence {
        dhcp_params: Some(vec![1; 255]),
        ..Default::default()
    };
    assert_eq!(classify_device(&cfg, random, &e), None);
}
