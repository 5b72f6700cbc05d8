//! `bulkhead vpn import`: a wg-quick `.conf` (what VPN providers hand out) ->
//! `[tunnel]` in `bulkhead.toml`.
//!
//! [`parse`] and [`import_into`] are pure; [`import_files`] is the edge: it writes
//! the key files and rewrites the config file, undoing that when the result does
//! not load.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table};

use super::keys::{self, format_key, parse_key};
use crate::config::{self, parse_endpoint, Config, TunnelPeer, WgKey};

/// What a wg-quick file says, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedTunnel {
    /// `[Interface] PrivateKey`.
    pub private_key: WgKey,
    /// `Address` (all lines, comma-separated).
    pub addresses: Vec<IpNet>,
    /// `DNS` servers (search domains are listed in `ignored`).
    pub dns: Vec<IpAddr>,
    /// `MTU`.
    pub mtu: Option<u16>,
    /// `ListenPort`.
    pub listen_port: Option<u16>,
    /// The `[Peer]` sections.
    pub peers: Vec<TunnelPeer>,
    /// Keys Bulkhead does not use (wg-quick's hooks, `Table`, ...), with their line.
    pub ignored: Vec<(usize, String)>,
}

/// One problem in a wg-quick file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgQuickError {
    /// 1-based line; 0 for the file as a whole.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for WgQuickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Every problem found in a wg-quick file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WgQuickErrors(pub Vec<WgQuickError>);

impl fmt::Display for WgQuickErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::config::write_lines(f, &self.0)
    }
}

/// wg-quick keys Bulkhead ignores: it does its own routing and firewalling.
const IGNORED_KEYS: [&str; 7] = [
    "table",
    "preup",
    "postup",
    "predown",
    "postdown",
    "saveconfig",
    "fwmark",
];

#[derive(Default)]
struct PeerBuild {
    line: usize,
    public_key: Option<WgKey>,
    preshared_key: Option<WgKey>,
    endpoint: Option<crate::config::Endpoint>,
    allowed_ips: Vec<IpNet>,
    keepalive: Option<u16>,
    seen: BTreeSet<String>,
}

/// Parses a wg-quick `.conf`. Keys are case-insensitive, `#` starts a comment;
/// `Address`, `DNS` and `AllowedIPs` may repeat and hold comma-separated lists.
pub fn parse(text: &str) -> Result<ImportedTunnel, WgQuickErrors> {
    let mut errors = Vec::new();
    let mut err = |line: usize, message: String| errors.push(WgQuickError { line, message });
    #[derive(PartialEq)]
    enum Section {
        None,
        Interface,
        Peer,
        /// After an unknown section header (reported once): its keys are skipped.
        Unknown,
    }
    let mut section = Section::None;
    let mut interface_line = None;
    let mut interface_seen = BTreeSet::new();
    let mut private_key = None;
    let mut addresses = Vec::new();
    let mut address_given = false;
    let mut dns = Vec::new();
    let mut mtu = None;
    let mut listen_port = None;
    let mut ignored = Vec::new();
    let mut peers: Vec<PeerBuild> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            match line.to_ascii_lowercase().as_str() {
                "[interface]" => {
                    if interface_line.is_some() {
                        err(n, "a second [Interface] section".into());
                    }
                    interface_line = Some(n);
                    section = Section::Interface;
                }
                "[peer]" => {
                    peers.push(PeerBuild {
                        line: n,
                        ..PeerBuild::default()
                    });
                    section = Section::Peer;
                }
                _ => {
                    err(
                        n,
                        format!(
                            "unknown section `{}` (expected [Interface] or [Peer])",
                            line.escape_debug()
                        ),
                    );
                    section = Section::Unknown;
                }
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            err(n, "expected `Key = value`".into());
            continue;
        };
        let (key_text, value) = (key.trim(), value.trim());
        let key = key_text.to_ascii_lowercase();
        let list = || value.split(',').map(str::trim).filter(|s| !s.is_empty());
        let repeatable = matches!(key.as_str(), "address" | "dns" | "allowedips");
        match section {
            Section::None => err(
                n,
                format!("`{key_text}` is outside of any [Interface] or [Peer] section"),
            ),
            Section::Unknown => {}
            Section::Interface => {
                if !repeatable && !IGNORED_KEYS.contains(&key.as_str()) && !interface_seen.insert(key.clone()) {
                    err(n, format!("`{key_text}` is given twice in [Interface]"));
                    continue;
                }
                match key.as_str() {
                    "privatekey" => match parse_key(value) {
                        Ok(k) => private_key = Some(k),
                        Err(e) => err(n, format!("PrivateKey: {e}")),
                    },
                    "address" => {
                        address_given = true;
                        for a in list() {
                            match a.parse::<IpNet>().or_else(|_| a.parse::<IpAddr>().map(IpNet::from)) {
                                Ok(net) => addresses.push(net),
                                Err(_) => err(n, format!("Address: `{}` is not an address/prefix", a.escape_debug())),
                            }
                        }
                    }
                    "dns" => {
                        for d in list() {
                            match d.parse::<IpAddr>() {
                                Ok(a) => dns.push(a),
                                // A search domain: wg-quick hands it to resolvconf.
                                Err(_) => ignored.push((n, format!("DNS search domain {}", d.escape_debug()))),
                            }
                        }
                    }
                    "mtu" => match value.parse::<u16>() {
                        Ok(m) => mtu = Some(m),
                        Err(_) => err(n, format!("MTU: `{}` is not a number", value.escape_debug())),
                    },
                    "listenport" => match value.parse::<u16>() {
                        Ok(0) => listen_port = None,
                        Ok(p) => listen_port = Some(p),
                        Err(_) => err(n, format!("ListenPort: `{}` is not a port", value.escape_debug())),
                    },
                    k if IGNORED_KEYS.contains(&k) => ignored.push((n, key_text.to_string())),
                    _ => err(n, format!("unknown key `{}` in [Interface]", key_text.escape_debug())),
                }
            }
            Section::Peer => {
                let Some(p) = peers.last_mut() else { continue };
                if !repeatable && !p.seen.insert(key.clone()) {
                    err(n, format!("`{key_text}` is given twice in this [Peer]"));
                    continue;
                }
                match key.as_str() {
                    "publickey" => match parse_key(value) {
                        Ok(k) => p.public_key = Some(k),
                        Err(e) => err(n, format!("PublicKey: {e}")),
                    },
                    "presharedkey" => match parse_key(value) {
                        Ok(k) => p.preshared_key = Some(k),
                        Err(e) => err(n, format!("PresharedKey: {e}")),
                    },
                    "endpoint" => match parse_endpoint(value) {
                        Ok(e) => p.endpoint = Some(e),
                        Err(m) => err(n, format!("Endpoint: {m}")),
                    },
                    "allowedips" => {
                        for a in list() {
                            match config::parse_network(a) {
                                Ok(net) => p.allowed_ips.push(net),
                                Err(m) => err(n, format!("AllowedIPs: {m}")),
                            }
                        }
                    }
                    "persistentkeepalive" => match value {
                        "off" => p.keepalive = None,
                        v => match v.parse::<u16>() {
                            Ok(0) => p.keepalive = None,
                            Ok(k) => p.keepalive = Some(k),
                            Err(_) => err(
                                n,
                                format!("PersistentKeepalive: `{}` is not 0-65535 or off", v.escape_debug()),
                            ),
                        },
                    },
                    _ => err(n, format!("unknown key `{}` in [Peer]", key_text.escape_debug())),
                }
            }
        }
    }
    let Some(interface_line) = interface_line else {
        err(0, "no [Interface] section".into());
        return Err(WgQuickErrors(errors));
    };
    if !interface_seen.contains("privatekey") {
        err(interface_line, "[Interface] has no PrivateKey".into());
    }
    if !address_given {
        err(interface_line, "[Interface] has no Address".into());
    }
    if peers.is_empty() {
        err(0, "no [Peer] section".into());
    }
    let mut out_peers = Vec::new();
    let mut keys_seen = BTreeSet::new();
    for p in peers {
        let Some(public_key) = p.public_key else {
            if !p.seen.contains("publickey") {
                err(p.line, "this [Peer] has no PublicKey".into());
            }
            continue;
        };
        if !keys_seen.insert(public_key.0) {
            err(
                p.line,
                "this [Peer]'s PublicKey is already used by an earlier [Peer]".into(),
            );
        }
        if p.allowed_ips.is_empty() && !p.seen.contains("allowedips") {
            err(
                p.line,
                "this [Peer] has no AllowedIPs (Bulkhead needs at least one)".into(),
            );
        }
        out_peers.push(TunnelPeer {
            public_key,
            preshared_key: p.preshared_key,
            endpoint: p.endpoint,
            allowed_ips: p.allowed_ips,
            persistent_keepalive: p.keepalive,
        });
    }
    match private_key {
        Some(private_key) if errors.is_empty() => Ok(ImportedTunnel {
            private_key,
            addresses,
            dns,
            mtu,
            listen_port,
            peers: out_peers,
            ignored,
        }),
        _ => Err(WgQuickErrors(errors)),
    }
}

/// `bulkhead.toml` with a new `[tunnel]`, and the preshared key files it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedConfig {
    /// The new text of `bulkhead.toml`.
    pub text: String,
    /// Preshared key files to write (mode 0600) next to the config file: (name as
    /// written in `preshared_key_file`, key).
    pub psk_files: Vec<(String, WgKey)>,
}

/// Replaces (or adds) the `[tunnel]` table of `config_text`, keeping every other
/// line and comment (and the comments above an old `[tunnel]`, and its
/// `interface`). The private key goes to `key_file_name` (written by the caller,
/// not in the text), a peer's preshared key to `<key_file_name>.psk<N>` (N: the
/// peer's index from 0), also listed in the result for the caller to write.
pub fn import_into(
    config_text: &str,
    imported: &ImportedTunnel,
    key_file_name: &str,
) -> Result<ImportedConfig, toml_edit::TomlError> {
    let mut doc: DocumentMut = config_text.parse()?;
    let old = doc.get("tunnel").and_then(Item::as_table);
    let mut t = Table::new();
    if let Some(old) = old {
        if let Some(pos) = old.position() {
            t.set_position(pos);
        }
        *t.decor_mut() = old.decor().clone();
        if let Some(i) = old.get("interface") {
            t.insert("interface", i.clone());
        }
    } else {
        t.decor_mut()
            .set_prefix("\n# The WireGuard tunnel, from `bulkhead vpn import`.\n");
    }
    t.insert("private_key_file", toml_edit::value(key_file_name));
    let strings = |v: &mut dyn Iterator<Item = String>| {
        let mut a = Array::new();
        for s in v {
            a.push(s);
        }
        toml_edit::value(a)
    };
    t.insert(
        "addresses",
        strings(&mut imported.addresses.iter().map(|a| a.to_string())),
    );
    if let Some(mtu) = imported.mtu {
        t.insert("mtu", toml_edit::value(i64::from(mtu)));
    }
    if let Some(port) = imported.listen_port {
        t.insert("listen_port", toml_edit::value(i64::from(port)));
    }
    let mut peers = ArrayOfTables::new();
    let mut psk_files = Vec::new();
    for (i, p) in imported.peers.iter().enumerate() {
        let mut pt = Table::new();
        pt.insert("public_key", toml_edit::value(format_key(&p.public_key)));
        if let Some(psk) = &p.preshared_key {
            let name = format!("{key_file_name}.psk{i}");
            pt.insert("preshared_key_file", toml_edit::value(name.clone()));
            psk_files.push((name, psk.clone()));
        }
        if let Some(e) = &p.endpoint {
            pt.insert("endpoint", toml_edit::value(e.to_string()));
        }
        pt.insert("allowed_ips", strings(&mut p.allowed_ips.iter().map(|a| a.to_string())));
        if let Some(k) = p.persistent_keepalive {
            pt.insert("persistent_keepalive", toml_edit::value(i64::from(k)));
        }
        peers.push(pt);
    }
    t.insert("peers", Item::ArrayOfTables(peers));
    doc.insert("tunnel", Item::Table(t));
    Ok(ImportedConfig {
        text: doc.to_string(),
        psk_files,
    })
}

/// What [`import_files`] did.
#[derive(Debug)]
pub struct ImportReport {
    /// The tunnel as parsed from the wg-quick file.
    pub imported: ImportedTunnel,
    /// The private key file.
    pub key_file: PathBuf,
    /// The configuration as loaded after the import.
    pub config: Config,
}

/// Why an import failed. Files written before the failure have been removed again
/// and the config file restored.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The wg-quick file could not be read.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The wg-quick file has errors.
    #[error("{}: not a usable wg-quick file:\n{errors}", path.display())]
    WgQuick {
        /// The file.
        path: PathBuf,
        /// Every problem, with its line.
        errors: WgQuickErrors,
    },
    /// The config file is not TOML.
    #[error("{}: cannot edit", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: toml_edit::TomlError,
    },
    /// A key file could not be written (or holds another key).
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// The config file could not be rewritten.
    #[error("{}: cannot write", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The rewritten config did not load; the original is back in place.
    #[error("the imported configuration does not load (the original {} is restored):\n{errors}", path.display())]
    Load {
        /// The config file.
        path: PathBuf,
        /// The loader's errors.
        errors: config::ConfigErrors,
    },
}

/// `bulkhead vpn import`: reads `conf` (wg-quick), writes the private key to
/// `key_file_name` (relative: next to `config_path`) and preshared keys to
/// `<key_file_name>.psk<N>`, all mode 0600; an existing key file holding another
/// key is only replaced with `force`. Then rewrites `config_path` atomically
/// (keeping its mode) and loads it; if that fails, puts the original back, removes
/// the key files this call created, and returns the loader's errors.
pub fn import_files(
    config_path: &Path,
    conf: &Path,
    key_file_name: &str,
    force: bool,
) -> Result<ImportReport, ImportError> {
    let conf_text = std::fs::read_to_string(conf).map_err(|source| ImportError::Read {
        path: conf.to_path_buf(),
        source,
    })?;
    let imported = parse(&conf_text).map_err(|errors| ImportError::WgQuick {
        path: conf.to_path_buf(),
        errors,
    })?;
    let original = std::fs::read_to_string(config_path).map_err(|source| ImportError::Read {
        path: config_path.to_path_buf(),
        source,
    })?;
    let edited = import_into(&original, &imported, key_file_name).map_err(|source| ImportError::Toml {
        path: config_path.to_path_buf(),
        source,
    })?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let resolve = |name: &str| {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let key_file = resolve(key_file_name);
    let mut to_write = vec![(key_file.clone(), imported.private_key.clone())];
    to_write.extend(edited.psk_files.iter().map(|(n, k)| (resolve(n), k.clone())));
    let mut created = Vec::new();
    let cleanup = |created: &[PathBuf]| {
        for p in created {
            let _ = std::fs::remove_file(p);
        }
    };
    for (path, key) in &to_write {
        let existed = std::fs::symlink_metadata(path).is_ok();
        if let Err(e) = keys::write_key_file(path, key, force) {
            cleanup(&created);
            return Err(e.into());
        }
        if !existed {
            created.push(path.clone());
        }
    }
    if let Err(source) = replace_file(config_path, &edited.text) {
        cleanup(&created);
        return Err(ImportError::Write {
            path: config_path.to_path_buf(),
            source,
        });
    }
    match config::load(config_path) {
        Ok(config) => Ok(ImportReport {
            imported,
            key_file,
            config,
        }),
        Err(errors) => {
            let restored = replace_file(config_path, &original);
            cleanup(&created);
            match restored {
                Ok(()) => Err(ImportError::Load {
                    path: config_path.to_path_buf(),
                    errors,
                }),
                Err(source) => Err(ImportError::Write {
                    path: config_path.to_path_buf(),
                    source,
                }),
            }
        }
    }
}

/// Replaces `path`'s content atomically: a temporary file in the same directory
/// with the same mode, synced, renamed over it.
fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have taken bits away.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => std::fs::File::open(p)?.sync_all(),
            _ => Ok(()),
        }
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Fixture, MAIN};
    use crate::tunnel::keys::{generate_private, public_key};

    fn b64(k: &WgKey) -> String {
        format_key(k)
    }

    struct Sample {
        private: WgKey,
        server: WgKey,
        psk: WgKey,
        text: String,
    }

    /// Like a Mullvad or Proton VPN download, with made-up keys.
    fn sample() -> Sample {
        let private = generate_private();
        let server = public_key(&generate_private());
        let psk = generate_private();
        let text = format!(
            "# Device: Happy Otter\n\
             [Interface]\n\
             PrivateKey = {}\n\
             Address = 10.64.12.34/32,fc00:bbbb:bbbb:bb01::1:c21/128\n\
             DNS = 10.64.0.1, home.example\n\
             \n\
             # Key for router\n\
             [Peer]\n\
             publickey={}\n\
             PresharedKey = {}\n\
             AllowedIPs = 0.0.0.0/0\n\
             AllowedIPs = ::/0   # both families\n\
             Endpoint = 185.213.154.68:51820\n\
             PersistentKeepalive = 25\n",
            b64(&private),
            b64(&server),
            b64(&psk)
        );
        Sample {
            private,
            server,
            psk,
            text,
        }
    }

    #[test]
    fn parses_a_provider_file() {
        let s = sample();
        let t = parse(&s.text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.private_key, s.private);
        let addrs: Vec<String> = t.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["10.64.12.34/32", "fc00:bbbb:bbbb:bb01::1:c21/128"]);
        assert_eq!(t.dns, ["10.64.0.1".parse::<IpAddr>().expect("ip")]);
        assert_eq!(t.mtu, None);
        assert_eq!(t.peers.len(), 1);
        let p = &t.peers[0];
        assert_eq!(p.public_key, s.server);
        assert_eq!(p.preshared_key.as_ref(), Some(&s.psk));
        assert_eq!(
            p.endpoint.as_ref().map(|e| e.to_string()).as_deref(),
            Some("185.213.154.68:51820")
        );
        let allowed: Vec<String> = p.allowed_ips.iter().map(|a| a.to_string()).collect();
        assert_eq!(allowed, ["0.0.0.0/0", "::/0"]);
        assert_eq!(p.persistent_keepalive, Some(25));
        assert_eq!(t.ignored, [(5, "DNS search domain home.example".to_string())]);
    }

    #[test]
    fn hooks_and_table_are_ignored_with_their_line() {
        let s = sample();
        let text = s.text.replace(
            "DNS = 10.64.0.1, home.example\n",
            "MTU = 1380\nListenPort = 51000\nTable = off\nPostUp = iptables -A FORWARD -i %i -j ACCEPT\nPreDown = true\nSaveConfig = false\nFwMark = 0xca6c\n",
        );
        let t = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.mtu, Some(1380));
        assert_eq!(t.listen_port, Some(51000));
        let keys: Vec<(usize, &str)> = t.ignored.iter().map(|(l, k)| (*l, k.as_str())).collect();
        assert_eq!(
            keys,
            [
                (7, "Table"),
                (8, "PostUp"),
                (9, "PreDown"),
                (10, "SaveConfig"),
                (11, "FwMark")
            ]
        );
    }

    #[test]
    fn every_error_has_its_line_and_never_the_key() {
        let secret = b64(&generate_private());
        let text = format!(
            "Stray = 1\n\
             [Interface]\n\
             PrivateKey = {}\n\
             Address = 10.64.0.2/33\n\
             MTU = big\n\
             Colour = red\n\
             [Peer]\n\
             Endpoint = [2001:db8::1]\n\
             AllowedIPs = 10.0.0.1/8\n\
             PersistentKeepalive = -1\n\
             [Peer]\n\
             PublicKey = abc\n\
             [Wat]\n\
             no equals sign\n",
            &secret[..40]
        );
        let errs = parse(&text).expect_err("must fail");
        let lines: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
        for needle in [
            "line 1: `Stray` is outside of any [Interface] or [Peer] section",
            "line 3: PrivateKey: not a WireGuard key",
            "line 4: Address: `10.64.0.2/33` is not an address/prefix",
            "line 5: MTU: `big` is not a number",
            "line 6: unknown key `Colour` in [Interface]",
            "line 8: Endpoint: `[2001:db8::1]` is not an endpoint",
            "line 9: AllowedIPs: `10.0.0.1/8` is not a network: its host bits are not zero",
            "line 10: PersistentKeepalive: `-1` is not 0-65535 or off",
            "line 12: PublicKey: not a WireGuard key",
            "line 13: unknown section `[Wat]`",
            "line 14: expected `Key = value`",
            "line 7: this [Peer] has no PublicKey",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(needle)),
                "missing {needle:?} in {lines:#?}"
            );
        }
        assert_eq!(lines.len(), 12, "{lines:#?}");
        assert!(!errs.to_string().contains(&secret[..40]));

        let errs = parse("# nothing\n").expect_err("empty");
        assert_eq!(errs.to_string(), "line 0: no [Interface] section");
        let errs = parse("[Interface]\n").expect_err("bare");
        let text = errs.to_string();
        assert!(text.contains("line 1: [Interface] has no PrivateKey"), "{text}");
        assert!(text.contains("line 1: [Interface] has no Address"), "{text}");
        assert!(text.contains("line 0: no [Peer] section"), "{text}");
    }

    #[test]
    fn duplicate_keys_and_peers_are_errors() {
        let s = sample();
        let text = s.text.replace(
            "PersistentKeepalive = 25\n",
            "PersistentKeepalive = 25\nEndpoint = 1.2.3.4:5\n",
        ) + &format!("[Peer]\nPublicKey = {}\nAllowedIPs = 10.0.0.0/8\n", b64(&s.server));
        let lines: Vec<String> = parse(&text).expect_err("dup").0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "line 15: `Endpoint` is given twice in this [Peer]",
                "line 16: this [Peer]'s PublicKey is already used by an earlier [Peer]"
            ]
        );
    }

    const COMMENTED: &str = "# My router\npolicies_dir = \"policies\" # where the zones live\n";

    #[test]
    fn import_keeps_the_rest_of_the_file_and_loads() {
        let s = sample();
        let t = parse(&s.text).unwrap_or_else(|e| panic!("{e}"));
        let main = MAIN.replace("\npolicies_dir = \"policies\"\n", COMMENTED)
            + "\n# after the segments\n[web]\nlisten = [\"127.0.0.1:8080\"]\n";
        let out = import_into(&main, &t, "tunnel.key").unwrap_or_else(|e| panic!("{e}"));
        assert!(out.text.starts_with(&main), "appended after everything:\n{}", out.text);
        assert!(
            !out.text.contains(&b64(&s.private)),
            "the private key is not in the text"
        );
        assert!(!out.text.contains(&b64(&s.psk)), "nor the preshared key");
        assert_eq!(out.psk_files, [("tunnel.key.psk0".to_string(), s.psk.clone())]);

        let fx = Fixture::new(&out.text, &[("10-zones.toml", "unknown_zone = \"q\"\n[zones.q]\n")]);
        let psk = fx.dir.join("tunnel.key.psk0");
        keys::write_key_file(&psk, &s.psk, false).expect("psk");
        let cfg = config::load(&fx.main()).unwrap_or_else(|e| panic!("{e}\n{}", out.text));
        let tun = cfg.tunnel.expect("tunnel");
        assert_eq!(
            tun.private_key,
            config::PrivateKeySource::File(fx.dir.join("tunnel.key"))
        );
        assert_eq!(tun.addresses, t.addresses);
        assert_eq!(tun.peers, t.peers);
        assert_eq!(tun.mtu, config::DEFAULT_TUNNEL_MTU);

        // Importing again replaces the section in place (an old one in the middle of
        // the file, with its own peers), keeping what surrounds it and its comments.
        let middle = format!(
            "{MAIN}\n# my VPN\n[tunnel]\ninterface = \"wg-mull\"\nmtu = 1300 # small\n\n[[tunnel.peers]]\npublic_key = \"old\"\n\n[[tunnel.peers]]\npublic_key = \"older\"\n\n# the web UI\n[web]\nlisten = [\"127.0.0.1:8080\"]\n"
        );
        let mut t2 = t.clone();
        t2.mtu = Some(1380);
        t2.peers[0].preshared_key = None;
        let out2 = import_into(&middle, &t2, "vpn.key").unwrap_or_else(|e| panic!("{e}"));
        let expected = format!(
            "{MAIN}\n# my VPN\n[tunnel]\ninterface = \"wg-mull\"\nprivate_key_file = \"vpn.key\"\naddresses = [\"10.64.12.34/32\", \"fc00:bbbb:bbbb:bb01::1:c21/128\"]\nmtu = 1380\n\n[[tunnel.peers]]\npublic_key = \"{}\"\nendpoint = \"185.213.154.68:51820\"\nallowed_ips = [\"0.0.0.0/0\", \"::/0\"]\npersistent_keepalive = 25\n\n# the web UI\n[web]\nlisten = [\"127.0.0.1:8080\"]\n",
            b64(&s.server)
        );
        assert_eq!(out2.text, expected);
        assert!(out2.psk_files.is_empty());
    }

    #[test]
    fn import_files_writes_keys_and_restores_on_failure() {
        use std::os::unix::fs::PermissionsExt;
        let s = sample();
        let fx = Fixture::new(MAIN, &[("10-zones.toml", "unknown_zone = \"q\"\n[zones.q]\n")]);
        std::fs::set_permissions(fx.main(), std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let conf = fx.dir.join("mullvad.conf");
        std::fs::write(&conf, &s.text).expect("write");
        let report = import_files(&fx.main(), &conf, "tunnel.key", false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.key_file, fx.dir.join("tunnel.key"));
        assert_eq!(keys::read_key_file(&report.key_file).expect("key"), s.private);
        assert_eq!(
            keys::read_key_file(&fx.dir.join("tunnel.key.psk0")).expect("psk"),
            s.psk
        );
        assert_eq!(report.config.tunnel.as_ref().map(|t| t.peers.len()), Some(1));
        let mode = std::fs::metadata(fx.main()).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the config keeps its mode");
        assert!(std::fs::read_to_string(fx.main()).expect("read").starts_with(MAIN));

        // Another key: refused without --force, config untouched.
        let other = sample();
        std::fs::write(&conf, &other.text).expect("write");
        let before = std::fs::read_to_string(fx.main()).expect("read");
        let e = import_files(&fx.main(), &conf, "tunnel.key", false).expect_err("different key");
        assert!(
            e.to_string().contains("tunnel.key: exists and holds a different key"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(fx.main()).expect("read"), before);
        import_files(&fx.main(), &conf, "tunnel.key", true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys::read_key_file(&report.key_file).expect("key"), other.private);

        // A result that does not load (MTU out of range): the original comes back,
        // and the key files this import created are removed.
        let bad = s.text.replace("DNS = ", "MTU = 100\nDNS = ");
        std::fs::write(&conf, bad).expect("write");
        let before = std::fs::read_to_string(fx.main()).expect("read");
        let e = import_files(&fx.main(), &conf, "other.key", false).expect_err("does not load");
        let msg = e.to_string();
        assert!(
            msg.contains("tunnel.mtu: the MTU must be between 1280 and 9000"),
            "{msg}"
        );
        assert!(msg.contains("is restored"), "{msg}");
        assert_eq!(std::fs::read_to_string(fx.main()).expect("read"), before);
        assert!(!fx.dir.join("other.key").exists());
        assert!(!fx.dir.join("other.key.psk0").exists());
        let leftovers: Vec<_> = std::fs::read_dir(&fx.dir)
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
