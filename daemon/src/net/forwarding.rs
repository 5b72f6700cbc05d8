//! Routing between the WAN and the home networks: a router forwards. A fresh
//! Debian or Ubuntu box does not (`net.ipv4.ip_forward = 0`), so the daemon
//! turns forwarding on once its firewall is in force (before that, the zones
//! are not enforced and nothing may be routed).
//!
//! IPv6 forwarding makes Linux ignore router adverts on every interface whose
//! `accept_ra` is 1, which would drop the WAN's IPv6 address and default
//! route from the ISP. The WAN is set to `accept_ra = 2` (accept even when
//! forwarding) first, unless someone chose 0 for it.

use std::io;

/// What [`enable`] changed, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ForwardingReport {
    /// Settings written, as `key=value`.
    pub changed: Vec<String>,
}

/// Where the sysctls live (tests point it elsewhere).
pub trait Sysctls {
    /// Reads one, trimmed.
    fn read(&self, key: &str) -> io::Result<String>;
    /// Writes one.
    fn write(&self, key: &str, value: &str) -> io::Result<()>;
}

/// This network namespace's `/proc/sys`.
pub struct ProcSys;

impl Sysctls for ProcSys {
    fn read(&self, key: &str) -> io::Result<String> {
        Ok(std::fs::read_to_string(path(key))?.trim().to_string())
    }
    fn write(&self, key: &str, value: &str) -> io::Result<()> {
        std::fs::write(path(key), format!("{value}\n"))
    }
}

fn path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Turns forwarding on for IPv4 and IPv6, keeping the WAN's router adverts.
/// Only what differs is written. `wan` is a checked interface name (no dots:
/// the key would not split right; such a WAN keeps its setting).
pub fn enable(sys: &dyn Sysctls, wan: &str) -> io::Result<ForwardingReport> {
    let mut report = ForwardingReport::default();
    let mut set = |key: String, value: &str| -> io::Result<()> {
        if sys.read(&key)? != value {
            sys.write(&key, value)?;
            report.changed.push(format!("{key}={value}"));
        }
        Ok(())
    };
    let wan_ra = format!("net.ipv6.conf.{wan}.accept_ra");
    if !wan.contains('.') && sys.read(&wan_ra).is_ok_and(|v| v == "1") {
        set(wan_ra, "2")?;
    }
    set("net.ipv4.ip_forward".into(), "1")?;
    // Hosts without IPv6 have no such key: IPv4 routing is enough.
    if sys.read("net.ipv6.conf.all.forwarding").is_ok() {
        set("net.ipv6.conf.all.forwarding".into(), "1")?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    struct Fake(RefCell<BTreeMap<String, String>>);

    impl Sysctls for Fake {
        fn read(&self, key: &str) -> io::Result<String> {
            self.0
                .borrow()
                .get(key)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn write(&self, key: &str, value: &str) -> io::Result<()> {
            self.0.borrow_mut().insert(key.into(), value.into());
            Ok(())
        }
    }

    fn fresh_debian() -> Fake {
        Fake(RefCell::new(BTreeMap::from([
            ("net.ipv4.ip_forward".into(), "0".into()),
            ("net.ipv6.conf.all.forwarding".into(), "0".into()),
            ("net.ipv6.conf.eth0.accept_ra".into(), "1".into()),
        ])))
    }

    #[test]
    fn a_fresh_box_forwards_and_its_wan_keeps_router_adverts() {
        let sys = fresh_debian();
        let r = enable(&sys, "eth0").expect("enable");
        assert_eq!(
            r.changed,
            [
                "net.ipv6.conf.eth0.accept_ra=2",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1"
            ]
        );
        assert_eq!(enable(&sys, "eth0").expect("again").changed, Vec::<String>::new());
    }

    #[test]
    fn a_wan_without_router_adverts_and_a_host_without_ipv6_are_left_alone() {
        let sys = fresh_debian();
        sys.0
            .borrow_mut()
            .insert("net.ipv6.conf.eth0.accept_ra".into(), "0".into());
        sys.0.borrow_mut().remove("net.ipv6.conf.all.forwarding");
        assert_eq!(enable(&sys, "eth0").expect("enable").changed, ["net.ipv4.ip_forward=1"]);
    }
}
