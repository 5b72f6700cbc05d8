//! PURE: the few facts of a UPnP device description (the XML at an SSDP
//! LOCATION) that say what a device is: its root device's manufacturer,
//! model name and number, device type and friendly name. Not an XML parser:
//! the first `<tag>text</tag>` of each, within the first `<device>`, with the
//! five predefined entities decoded; anything else (CDATA, nested markup, a
//! missing close) leaves that field out. Every value is bounded text.

use std::collections::BTreeMap;

use crate::classify::bounded;

/// Descriptions longer than this are cut (they are a few KiB).
pub const MAX_DESCRIPTION: usize = 64 * 1024;

/// (XML element, evidence field).
const FIELDS: [(&str, &str); 5] = [
    ("manufacturer", "manufacturer"),
    ("modelName", "model"),
    ("modelNumber", "model_number"),
    ("deviceType", "device_type"),
    ("friendlyName", "friendly_name"),
];

/// The facts found, by evidence field (see [`crate::classify::UPNP_FIELDS`]).
pub fn parse_description(xml: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(&xml[..xml.len().min(MAX_DESCRIPTION)]);
    // The root device's own facts come before any embedded device's.
    let device = match text.find("<device>") {
        Some(i) => &text[i..],
        None => return BTreeMap::new(),
    };
    let mut out = BTreeMap::new();
    for (element, field) in FIELDS {
        let open = format!("<{element}>");
        let close = format!("</{element}>");
        let Some(start) = device.find(&open).map(|i| i + open.len()) else {
            continue;
        };
        let Some(len) = device[start..].find(&close) else {
            continue;
        };
        let raw = device[start..start + len].trim();
        if raw.is_empty() || raw.contains('<') {
            continue;
        }
        out.insert(field.to_string(), bounded(unescape(raw).as_bytes()));
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// minidlna 1.3's root description, shortened.
    const MINIDLNA: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion><device><deviceType>urn:schemas-upnp-org:device:MediaServer:1</deviceType><friendlyName>Living Room NAS</friendlyName><manufacturer>Justin Maggard</manufacturer><manufacturerURL>http://www.debian.org/</manufacturerURL><modelDescription>MiniDLNA on Debian</modelDescription><modelName>Windows Media Connect compatible (MiniDLNA)</modelName><modelNumber>1.3.0</modelNumber><serviceList></serviceList></device></root>"#;

    #[test]
    fn reads_the_root_devices_facts() {
        let d = parse_description(MINIDLNA.as_bytes());
        assert_eq!(d["manufacturer"], "Justin Maggard");
        assert_eq!(d["model"], "Windows Media Connect compatible (MiniDLNA)");
        assert_eq!(d["model_number"], "1.3.0");
        assert_eq!(d["device_type"], "urn:schemas-upnp-org:device:MediaServer:1");
        assert_eq!(d["friendly_name"], "Living Room NAS");
    }

    #[test]
    fn hostile_descriptions_give_bounded_data_or_nothing() {
        assert!(parse_description(b"").is_empty());
        assert!(
            parse_description(b"<root><manufacturer>x</manufacturer></root>").is_empty(),
            "no device"
        );
        let nested =
            b"<device><manufacturer><b>x</b></manufacturer><modelName>M &amp; &lt;script&gt;</modelName></device>";
        let d = parse_description(nested);
        assert!(!d.contains_key("manufacturer"), "markup inside is left out");
        assert_eq!(d["model"], "M & <script>", "entities decoded, kept as data");
        let long = format!("<device><friendlyName>{}</friendlyName></device>", "A".repeat(10_000));
        assert!(parse_description(long.as_bytes())["friendly_name"].len() <= crate::classify::MAX_TEXT);
        let unclosed = b"<device><manufacturer>never closed";
        assert!(parse_description(unclosed).is_empty());
        let mut huge = b"<device>".to_vec();
        huge.extend(std::iter::repeat_n(b'x', 200_000));
        huge.extend(b"<manufacturer>late</manufacturer></device>");
        assert!(parse_description(&huge).is_empty(), "past the cap");
    }
}
