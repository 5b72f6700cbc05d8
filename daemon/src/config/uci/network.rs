//! OpenWrt's `/etc/config/network`: which device and address an interface
//! name (`lan`, `wan`, `iot`) stands for, so `/etc/config/bulkhead` names
//! networks the way LuCI does instead of kernel devices.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::parse::{Section, UciFile};

/// What Bulkhead needs of one `config interface 'NAME'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The device its traffic crosses (layer 3: `pppoe-wan` for PPPoE).
    pub device: String,
    /// Its static IPv4 address with the prefix, when `proto` is `static`.
    pub ipv4: Option<Ipv4Net>,
}

/// The interface called `name`, or why it cannot be used.
pub fn lookup(network: &UciFile, name: &str) -> Result<Network, String> {
    let Some(section) = network
        .sections
        .iter()
        .find(|s| s.kind == "interface" && s.name.as_deref() == Some(name))
    else {
        let known: Vec<&str> = network
            .sections
            .iter()
            .filter(|s| s.kind == "interface")
            .filter_map(|s| s.name.as_deref())
            .filter(|n| *n != "loopback")
            .collect();
        return Err(format!(
            "no interface `{name}` in the network configuration (it has: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    };
    let single = |option: &str| {
        section
            .option(option)
            .and_then(|o| o.values.last())
            .map(|v| v.text.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let proto = single("proto").unwrap_or_else(|| "none".into());
    let device = match proto.as_str() {
        // PPP protocols make their own link, named after the interface.
        "pppoe" | "pppoa" | "pptp" | "l2tp" | "3g" | "ppp" => format!("{proto}-{name}"),
        _ => device_of(section, &single, name)?,
    };
    if let Some(parent) = device.strip_prefix('@') {
        return Err(format!(
            "interface `{name}` is an alias of `{parent}`; name that interface instead"
        ));
    }
    let ipv4 = if proto == "static" { static_ipv4(section)? } else { None };
    Ok(Network { device, ipv4 })
}

/// `option device` (OpenWrt 21.02 on), else the older `ifname` (with
/// `type bridge` meaning netifd's `br-NAME`).
fn device_of(section: &Section, single: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<String, String> {
    if let Some(d) = single("device") {
        return Ok(d);
    }
    if single("type").as_deref() == Some("bridge") {
        return Ok(format!("br-{name}"));
    }
    let ifname = section
        .option("ifname")
        .and_then(|o| o.values.first())
        .map(|v| v.text.split_whitespace().next().unwrap_or_default().to_string())
        .filter(|v| !v.is_empty());
    ifname.ok_or_else(|| format!("interface `{name}` has no `device`"))
}

/// `ipaddr` + `netmask`, or `ipaddr` written as `ADDRESS/PREFIX` (also as a
/// list, whose first item counts).
fn static_ipv4(section: &Section) -> Result<Option<Ipv4Net>, String> {
    let Some(addr) = section.option("ipaddr").and_then(|o| o.values.first()) else {
        return Ok(None);
    };
    let addr = addr.text.trim();
    if let Ok(net) = addr.parse::<Ipv4Net>() {
        return Ok(Some(net));
    }
    let ip: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("`{}` is not an IPv4 address (ipaddr)", addr.escape_debug()))?;
    let mask = section
        .option("netmask")
        .and_then(|o| o.values.last())
        .map(|v| v.text.trim().to_string())
        .unwrap_or_else(|| "255.255.255.0".into());
    let mask: Ipv4Addr = mask
        .parse()
        .map_err(|_| format!("`{}` is not a netmask", mask.escape_debug()))?;
    let net = Ipv4Net::with_netmask(ip, mask).map_err(|_| format!("`{mask}` is not a netmask"))?;
    Ok(Some(net))
}
