//! PURE: the kernel's counters, from `nft -j list meter inet bulkhead NAME`
//! (see `crate::firewall::render::traffic`), as readings. An element that
//! does not parse (a key this version does not know) is skipped and counted,
//! never a failure of the whole reading.

use std::net::IpAddr;

use serde_json::Value;

use crate::config::MacAddr;

/// Who a counter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    /// A sending device (`traffic_out`).
    Mac(MacAddr),
    /// A receiving address on the LAN (`traffic_in_v4`, `traffic_in_v6`).
    Ip(IpAddr),
}

/// One meter element: who, through which interface, how much so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// Who.
    pub who: Who,
    /// The other interface: where it went (out) or came from (in).
    pub interface: String,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// Why a listing could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not JSON.
    #[error("the meter listing is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON without the `nftables` array.
    #[error("the meter listing has no `nftables` array")]
    Shape,
}

/// The readings in one listing, and how many elements were skipped.
pub fn parse(listing: &str) -> Result<(Vec<Reading>, usize), ReadError> {
    let doc: Value = serde_json::from_str(listing)?;
    let objects = doc.get("nftables").and_then(Value::as_array).ok_or(ReadError::Shape)?;
    let mut readings = Vec::new();
    let mut skipped = 0;
    for object in objects {
        let Some(set) = object.get("meter").or_else(|| object.get("set")) else {
            continue;
        };
        for element in set.get("elem").and_then(Value::as_array).into_iter().flatten() {
            match reading(element) {
                Some(r) => readings.push(r),
                None => skipped += 1,
            }
        }
    }
    Ok((readings, skipped))
}

fn reading(element: &Value) -> Option<Reading> {
    let elem = element.get("elem")?;
    let parts = elem.get("val")?.get("concat")?.as_array()?;
    let [who, interface] = parts.as_slice() else {
        return None;
    };
    let who = who.as_str()?;
    let who = match who.parse::<MacAddr>() {
        Ok(mac) => Who::Mac(mac),
        Err(_) => Who::Ip(who.parse().ok()?),
    };
    let counter = elem.get("counter")?;
    Some(Reading {
        who,
        interface: interface.as_str()?.to_string(),
        packets: counter.get("packets")?.as_u64()?,
        bytes: counter.get("bytes")?.as_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What nft 1.0.6 printed for a meter in a namespace (trimmed), with a
    /// malformed element added.
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"meter": {"family": "inet", "name": "traffic_out", "table": "bulkhead", "type": ["ether_addr", "ifname"],
        "handle": 2, "size": 65535, "flags": ["timeout"], "elem": [
        {"elem": {"val": {"concat": ["f4:f5:d8:12:34:30", "wan0"]}, "timeout": 3600, "expires": 3599,
                  "counter": {"packets": 4, "bytes": 236}}},
        {"elem": {"val": {"concat": ["10.0.1.10", "br-lan"]}, "timeout": 3600, "counter": {"packets": 3, "bytes": 93}}},
        {"elem": {"val": {"concat": ["fd00::10", "bh-wg0"]}, "counter": {"packets": 1, "bytes": 80}}},
        {"elem": {"val": {"concat": ["not an address", "wan0"]}, "counter": {"packets": 1, "bytes": 1}}},
        {"elem": {"val": "no concat"}}
      ]}}]}"#;

    #[test]
    fn elements_become_readings_and_the_odd_one_is_skipped() {
        let (readings, skipped) = parse(LISTING).expect("parses");
        assert_eq!(skipped, 2);
        assert_eq!(
            readings[0],
            Reading {
                who: Who::Mac("f4:f5:d8:12:34:30".parse().expect("mac")),
                interface: "wan0".into(),
                packets: 4,
                bytes: 236,
            }
        );
        assert_eq!(readings[1].who, Who::Ip("10.0.1.10".parse().expect("ip")));
        assert_eq!(readings[2].who, Who::Ip("fd00::10".parse().expect("ip")));
        assert_eq!(readings[2].interface, "bh-wg0");
    }

    #[test]
    fn an_empty_meter_and_garbage() {
        let empty = r#"{"nftables": [{"meter": {"name": "traffic_in_v4"}}]}"#;
        assert_eq!(parse(empty).expect("parses"), (Vec::new(), 0));
        assert!(matches!(parse("{}"), Err(ReadError::Shape)));
        assert!(matches!(parse("not json"), Err(ReadError::Json(_))));
    }
}
