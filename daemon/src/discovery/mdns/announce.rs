//! Announcing one service, for tests and the demo: a device that speaks mDNS.

use std::net::IpAddr;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo, SERVICE_NAME_LEN_MAX_DEFAULT};

use super::convert::service_type_of;
use super::{restricted_daemon, MdnsError};

/// Longest DNS label: instance and host names must fit in one.
const MAX_LABEL: usize = 63;

/// One service to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceSpec {
    /// The only interface to announce and answer on.
    pub interface: String,
    /// Service type, `_googlecast._tcp` (`.local.` optional).
    pub service_type: String,
    /// Instance name, `Living Room TV`.
    pub instance: String,
    /// Host name, `livingroom-tv` (`.local.` optional).
    pub host: String,
    /// Addresses for the host's A/AAAA records; each must be on `interface`'s
    /// subnet, or mdns-sd leaves it out.
    pub addresses: Vec<IpAddr>,
    /// Service port.
    pub port: u16,
    /// TXT pairs, in order.
    pub txt: Vec<(String, String)>,
}

/// Registers `spec` with a new mdns-sd daemon that uses `spec.interface` only.
///
/// The daemon probes for about a second, then announces and answers queries
/// until `shutdown()` is called on the returned handle (which also sends
/// goodbyes). The daemon thread lives in the network namespace of the calling
/// thread. Registration errors found later by the daemon (a name conflict it
/// cannot resolve, say) are reported through its `monitor()` channel.
pub fn announce(spec: &AnnounceSpec) -> Result<ServiceDaemon, MdnsError> {
    let (info, type_len) = service_info_of(spec)?;
    let daemon = restricted_daemon(std::slice::from_ref(&spec.interface))?;
    match register(&daemon, info, type_len) {
        Ok(()) => Ok(daemon),
        Err(source) => {
            let _ = daemon.shutdown();
            Err(MdnsError::Daemon {
                context: "registering the service",
                source,
            })
        }
    }
}

fn register(daemon: &ServiceDaemon, info: ServiceInfo, type_len: usize) -> Result<(), mdns_sd::Error> {
    if type_len > usize::from(SERVICE_NAME_LEN_MAX_DEFAULT) {
        // At most MAX_TYPE_LABEL (30), which is mdns-sd's own cap.
        daemon.set_service_name_len_max(u8::try_from(type_len).unwrap_or(u8::MAX))?;
    }
    daemon.register(info)
}

/// Checks `spec` and builds the service (pure). Also returns the length of the
/// service name (after `_`), which mdns-sd limits.
pub fn service_info_of(spec: &AnnounceSpec) -> Result<(ServiceInfo, usize), MdnsError> {
    let bad = |what: String| Err(MdnsError::BadSpec(what));
    let ty = service_type_of(&spec.service_type).map_err(|_| MdnsError::BadServiceType {
        name: spec.service_type.clone(),
    })?;
    let type_len = ty.split('.').next().map_or(0, |s| s.len().saturating_sub(1));
    if spec.instance.is_empty() || spec.instance.len() > MAX_LABEL {
        return bad(format!("instance name must be 1-{MAX_LABEL} bytes"));
    }
    let host = spec.host.strip_suffix(".local.").unwrap_or(&spec.host);
    let host = host.strip_suffix(".local").unwrap_or(host);
    let host_ok = host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if host.is_empty() || host.len() > MAX_LABEL || !host_ok {
        return bad(format!(
            "host name must be 1-{MAX_LABEL} letters, digits or '-': {:?}",
            spec.host
        ));
    }
    if spec.addresses.is_empty() {
        return bad("at least one address is needed".to_string());
    }
    let info = ServiceInfo::new(
        &format!("{ty}.local."),
        &spec.instance,
        &format!("{host}.local."),
        &spec.addresses[..],
        spec.port,
        &spec.txt[..],
    );
    let mut info = info.map_err(|source| MdnsError::Daemon {
        context: "building the service",
        source,
    })?;
    info.set_interfaces(vec![IfKind::Name(spec.interface.clone())]);
    Ok((info, type_len))
}

/// Parses a `key=value` TXT pair (the value may contain `=` and be empty).
pub fn parse_txt_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{}` is not key=value", s.escape_debug())),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn spec() -> AnnounceSpec {
        AnnounceSpec {
            interface: "eth0".into(),
            service_type: "_googlecast._tcp".into(),
            instance: "Living Room TV".into(),
            host: "livingroom-tv".into(),
            addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 1, 30))],
            port: 8009,
            txt: vec![("md".into(), "Chromecast".into()), ("fn".into(), "Living Room".into())],
        }
    }

    #[test]
    fn a_spec_becomes_a_service() {
        let (info, len) = service_info_of(&spec()).expect("valid");
        assert_eq!(len, "googlecast".len());
        assert_eq!(info.get_type(), "_googlecast._tcp.local.");
        assert_eq!(info.get_fullname(), "Living Room TV._googlecast._tcp.local.");
        assert_eq!(info.get_hostname(), "livingroom-tv.local.");
        assert_eq!(info.get_property_val_str("md"), Some("Chromecast"));
        assert_eq!(info.get_port(), 8009);

        let mut s = spec();
        s.host = "livingroom-tv.local.".into();
        s.service_type = "_googlecast._tcp.local.".into();
        let (info, _) = service_info_of(&s).expect("valid");
        assert_eq!(info.get_hostname(), "livingroom-tv.local.");
        assert_eq!(info.get_type(), "_googlecast._tcp.local.");
    }

    #[test]
    fn bad_specs_are_refused() {
        let cases: [fn(&mut AnnounceSpec); 7] = [
            |s| s.service_type = "googlecast".into(),
            |s| s.instance = String::new(),
            |s| s.instance = "x".repeat(64),
            |s| s.host = "a.b".into(),
            |s| s.host = String::new(),
            |s| s.addresses.clear(),
            |s| s.txt.push(("ké".into(), "v".into())),
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut s = spec();
            case(&mut s);
            assert!(service_info_of(&s).is_err(), "case {i}");
        }
    }

    #[test]
    fn txt_pairs_parse() {
        assert_eq!(parse_txt_pair("md=Chromecast"), Ok(("md".into(), "Chromecast".into())));
        assert_eq!(
            parse_txt_pair("fn=Living Room"),
            Ok(("fn".into(), "Living Room".into()))
        );
        assert_eq!(parse_txt_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_txt_pair("flag="), Ok(("flag".into(), String::new())));
        assert!(parse_txt_pair("novalue").is_err());
        assert!(parse_txt_pair("=x").is_err());
    }
}
