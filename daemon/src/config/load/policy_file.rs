//! The policy files: read from `policies_dir` in name order, each parsed and
//! validated (zones, segment zones, devices, classification rules, the
//! tunnel's selectors) and merged into one [`Policy`].

use super::*;

/// One raw policy file with its text (for spans).
pub(crate) struct PolicySource {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
    pub(crate) raw: RawPolicyFile,
}

/// The `*.toml` files of the policy directory, sorted, with their text; an
/// unreadable file is an error (and left out), an unreadable directory `None`.
pub(crate) fn read_policy_dir(dir: &Path, errors: &mut Vec<ConfigError>) -> Option<Vec<(PathBuf, String)>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) => {
            errors.push(unreadable(dir, &e));
            return None;
        }
    };
    files.sort();
    let mut out = Vec::new();
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => out.push((path, text)),
            Err(e) => errors.push(unreadable(&path, &e)),
        }
    }
    Some(out)
}

/// `no_tunnel_in` is the main file when it has no `[tunnel]` section.
pub(crate) fn load_policy(
    dir: &Path,
    files: Vec<(PathBuf, String)>,
    segments: &[Segment],
    blocklists: &BTreeSet<String>,
    no_tunnel_in: Option<&Path>,
    bootstrap: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<Policy> {
    let mut sources = Vec::new();
    for (path, text) in files {
        match toml::from_str::<RawPolicyFile>(&text) {
            Ok(raw) => sources.push(PolicySource { path, text, raw }),
            Err(e) => Reporter::new(&path, &text, errors).toml(&e),
        }
    }
    let before = errors.len();
    let policy = validate_policy(dir, &sources, segments, blocklists, no_tunnel_in, bootstrap, errors);
    (errors.len() == before).then_some(policy).flatten()
}

/// Merges all policy files. Zones and devices may be split across files; a zone,
/// device or setting defined in two files is an error naming the second place.
pub(crate) fn validate_policy(
    dir: &Path,
    sources: &[PolicySource],
    segments: &[Segment],
    blocklists: &BTreeSet<String>,
    no_tunnel_in: Option<&Path>,
    bootstrap: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<Policy> {
    // Pass 1: collect zone names, so references can be checked in any order.
    let mut zone_names = BTreeSet::new();
    for src in sources {
        let mut rep = Reporter::new(&src.path, &src.text, errors);
        for (name, z) in &src.raw.zones {
            match ZoneId::new(name) {
                Ok(id) => {
                    if !zone_names.insert(id) {
                        rep.at(
                            z.span(),
                            format!("zones.{name}"),
                            format!("zone `{name}` is defined in more than one policy file"),
                        );
                    }
                }
                Err(m) => rep.at(z.span(), format!("zones.{}", name.escape_debug()), m),
            }
        }
    }
    let zone_ref = |rep: &mut Reporter<'_>, v: &Spanned<String>, field: String| -> Option<ZoneId> {
        match ZoneId::new(v.get_ref()) {
            Ok(id) if zone_names.contains(&id) => Some(id),
            _ => {
                rep.at(
                    v.span(),
                    field,
                    format!("unknown zone `{}`", v.get_ref().escape_debug()),
                );
                None
            }
        }
    };
    let list_refs = |rep: &mut Reporter<'_>, lists: &[Spanned<String>], field: &dyn Fn(usize) -> String| {
        let mut out = BTreeSet::new();
        for (i, l) in lists.iter().enumerate() {
            if blocklists.contains(l.get_ref()) {
                out.insert(l.get_ref().clone());
            } else {
                rep.at(
                    l.span(),
                    field(i),
                    format!(
                        "unknown blocklist `{}` (lists are defined by [[dns.blocklists]] in the main file)",
                        l.get_ref().escape_debug()
                    ),
                );
            }
        }
        out
    };
    let mut zones = BTreeMap::new();
    let mut unknown_zone: Option<ZoneId> = None;
    let mut approved_zone: Option<Option<ZoneId>> = None;
    let mut classify = Vec::new();
    let mut rule_ids = SeenRuleIds::new();
    let mut segment_zones = BTreeMap::new();
    let mut devices = BTreeMap::new();
    let mut static_ips: BTreeMap<Ipv4Addr, std::ops::Range<usize>> = BTreeMap::new();
    let mut tunnel = SelectorMerge::default();
    let mut doh_servers = Vec::new();
    // Presets first: a share may name one from any file.
    let mut share_presets = Vec::new();
    for src in sources {
        let mut rep = Reporter::new(&src.path, &src.text, errors);
        super::super::share::validate_presets(&src.raw.share_preset, &mut rep, &mut share_presets);
    }
    let mut shares = Vec::new();
    for src in sources {
        let mut rep = Reporter::new(&src.path, &src.text, errors);
        for (i, d) in src.raw.doh_servers.iter().enumerate() {
            match crate::config::tunnel::parse_network(d.get_ref()) {
                Ok(n) if !doh_servers.contains(&n) => doh_servers.push(n),
                Ok(_) => {}
                Err(m) => rep.at(d.span(), format!("doh_servers[{i}]"), m),
            }
        }
        for (name, z) in &src.raw.zones {
            let Ok(id) = ZoneId::new(name) else { continue };
            let z = z.get_ref();
            let mut reach = BTreeSet::new();
            for (i, r) in z.reach_zones.iter().enumerate() {
                if let Some(r) = zone_ref(&mut rep, r, format!("zones.{name}.reach_zones[{i}]")) {
                    reach.insert(r);
                }
            }
            let mut services = BTreeSet::new();
            for (i, s) in z.router_services.iter().enumerate() {
                match s.get_ref().parse::<RouterService>() {
                    Ok(svc) => {
                        services.insert(svc);
                    }
                    Err(m) => rep.at(s.span(), format!("zones.{name}.router_services[{i}]"), m),
                }
            }
            let mut upstreams = Vec::new();
            for (i, u) in z.dns_upstreams.iter().enumerate() {
                match crate::config::dns::parse_upstream(u.get_ref()) {
                    Ok(up) if up.by_bootstrap() && !bootstrap => rep.at(
                        u.span(),
                        format!("zones.{name}.dns_upstreams[{i}]"),
                        crate::config::dns::needs_bootstrap(&up),
                    ),
                    Ok(up) => upstreams.push(up),
                    Err(m) => rep.at(u.span(), format!("zones.{name}.dns_upstreams[{i}]"), m),
                }
            }
            let dns = ZoneDns {
                blocklists: list_refs(&mut rep, &z.dns_blocklists, &|i| {
                    format!("zones.{name}.dns_blocklists[{i}]")
                }),
                log: z.dns_log,
                upstreams,
            };
            zones.entry(id.clone()).or_insert(Zone {
                id,
                description: z.description.clone(),
                internet: z.internet,
                reach_zones: reach,
                router_services: services,
                intra_zone: z.intra_zone,
                dns,
                detect: z.detect,
            });
        }
        if let Some(u) = &src.raw.unknown_zone {
            if unknown_zone.is_some() {
                rep.at(
                    u.span(),
                    "unknown_zone",
                    "`unknown_zone` is set in more than one policy file",
                );
            } else {
                unknown_zone = zone_ref(&mut rep, u, "unknown_zone".into());
            }
        }
        if let Some(a) = &src.raw.approved_zone {
            if approved_zone.is_some() {
                rep.at(
                    a.span(),
                    "approved_zone",
                    "`approved_zone` is set in more than one policy file",
                );
            } else {
                approved_zone = Some(zone_ref(&mut rep, a, "approved_zone".into()));
            }
        }
        super::super::share::validate_shares(&src.raw.share, &mut rep, &share_presets, &zone_ref, &mut shares);
        if let Some(t) = &src.raw.tunnel {
            tunnel.add(t, &mut rep, &zone_ref, no_tunnel_in);
        }
        classify.extend(validate_class_rules(
            &src.raw.classify,
            &mut rep,
            &zone_ref,
            &mut rule_ids,
        ));
        for (seg, zone) in &src.raw.segment_zones {
            let field = format!("segment_zones.{}", seg.escape_debug());
            let known = segments.iter().find(|s| s.id.as_str() == seg);
            match known {
                None => rep.at(
                    zone.span(),
                    field.clone(),
                    format!("unknown segment `{}`", seg.escape_debug()),
                ),
                Some(s) => {
                    if let Some(z) = zone_ref(&mut rep, zone, field.clone()) {
                        if segment_zones.insert(s.id.clone(), z).is_some() {
                            rep.at(
                                zone.span(),
                                field,
                                "this segment's zone is set in more than one policy file",
                            );
                        }
                    }
                }
            }
        }
        for (i, d) in src.raw.devices.iter().enumerate() {
            let d = d.get_ref();
            let field = |n: &str| format!("devices[{i}].{n}");
            let mac = match d.mac.get_ref().parse::<MacAddr>() {
                Ok(m) => Some(m),
                Err(m) => {
                    rep.at(d.mac.span(), field("mac"), m);
                    None
                }
            };
            let zone = d.zone.as_ref().map(|z| zone_ref(&mut rep, z, field("zone")));
            let name = d.name.as_ref().map(|n| n.get_ref().clone());
            if let Some(n) = &d.name {
                if n.get_ref().chars().count() > 64 || n.get_ref().chars().any(char::is_control) {
                    rep.at(
                        n.span(),
                        field("name"),
                        "a device name is at most 64 characters, without control characters",
                    );
                }
            }
            let ip = match &d.ip {
                None => Some(None),
                Some(v) => match v.get_ref().parse::<Ipv4Addr>() {
                    Ok(a) if segments.iter().any(|s| s.ipv4.contains(&a) && s.ipv4.addr() != a) => {
                        if static_ips.insert(a, v.span()).is_some() {
                            rep.at(v.span(), field("ip"), format!("{a} is given to two devices"));
                            None
                        } else {
                            Some(Some(a))
                        }
                    }
                    Ok(a) => {
                        rep.at(
                            v.span(),
                            field("ip"),
                            format!("{a} is not a host address in any segment's subnet (or it is the router's)"),
                        );
                        None
                    }
                    Err(_) => {
                        rep.at(
                            v.span(),
                            field("ip"),
                            format!("`{}` is not an IPv4 address", v.get_ref().escape_debug()),
                        );
                        None
                    }
                },
            };
            if let (Some(mac), Some(Some(_)) | None, Some(ip)) = (mac, &zone, ip) {
                let dns_blocklists = d
                    .dns_blocklists
                    .as_ref()
                    .map(|l| list_refs(&mut rep, l, &|j| format!("devices[{i}].dns_blocklists[{j}]")));
                let over = DeviceOverride {
                    zone: zone.flatten(),
                    name,
                    ip,
                    dns_blocklists,
                    dns_log: d.dns_log,
                };
                if devices.insert(mac, over).is_some() {
                    rep.at(d.mac.span(), field("mac"), format!("device {mac} is listed twice"));
                }
            }
        }
    }
    let Some(unknown_zone) = unknown_zone else {
        if errors.is_empty() {
            errors.push(ConfigError {
                file: dir.to_path_buf(),
                line: 0,
                column: 0,
                field: "unknown_zone".into(),
                message:
                    "no policy file sets `unknown_zone` (the zone for devices nobody knows yet, e.g. \"quarantine\")"
                        .into(),
            });
        }
        return None;
    };
    Some(Policy {
        zones,
        unknown_zone,
        segment_zones,
        devices,
        classify,
        approved_zone: approved_zone.flatten(),
        tunnel: tunnel.finish(),
        doh_servers,
        shares,
        share_presets,
    })
}
