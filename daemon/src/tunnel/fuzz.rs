//! Fuzz entries for the tunnel's text formats, shared by `fuzz/fuzz_targets/*`
//! and a stable unit test over a deterministic corpus. Each panics only on a real
//! bug: a panic in the parser or a broken invariant.

use std::fmt::Write as _;

use super::uapi::{parse_request, parse_set, request_end, SetOp, UapiRequestKind, MAX_PEERS};
use super::wgquick::{import_into, parse};
use crate::config::WgKey;

fn hex_line(out: &mut String, name: &str, key: Option<&WgKey>) {
    let bytes = key.map_or([0u8; 32], |k| k.0);
    out.push_str(name);
    out.push('=');
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out.push('\n');
}

/// The request text that says `ops` (the inverse of `parse_set`).
fn encode_set(ops: &[SetOp]) -> String {
    let mut out = String::from("set=1\n");
    for op in ops {
        match op {
            SetOp::PrivateKey(k) => hex_line(&mut out, "private_key", k.as_ref()),
            SetOp::ListenPort(p) => _ = writeln!(out, "listen_port={p}"),
            SetOp::Fwmark(m) => _ = writeln!(out, "fwmark={}", m.unwrap_or(0)),
            SetOp::ReplacePeers => out.push_str("replace_peers=true\n"),
            SetOp::Peer(k) => hex_line(&mut out, "public_key", Some(k)),
            SetOp::RemovePeer => out.push_str("remove=true\n"),
            SetOp::UpdateOnly => out.push_str("update_only=true\n"),
            SetOp::PresharedKey(k) => hex_line(&mut out, "preshared_key", k.as_ref()),
            SetOp::Endpoint(e) => _ = writeln!(out, "endpoint={e}"),
            SetOp::PersistentKeepalive(s) => _ = writeln!(out, "persistent_keepalive_interval={}", s.unwrap_or(0)),
            SetOp::ReplaceAllowedIps => out.push_str("replace_allowed_ips=true\n"),
            SetOp::AllowedIp(net) => _ = writeln!(out, "allowed_ip={net}"),
        }
    }
    out.push('\n');
    out
}

/// Parses `data` as one UAPI request (as the socket hands it over) and, lossily
/// as UTF-8, as a `set` body. An accepted `set` keeps device operations before
/// the first peer, names at most [`MAX_PEERS`] peers, and says the same thing
/// when written back out and parsed again.
#[doc(hidden)]
pub fn fuzz_entry_uapi(data: &[u8]) {
    if let Some(end) = request_end(data) {
        assert!(end <= data.len());
        let _ = parse_request(&data[..end]);
    }
    let checked = |ops: &[SetOp]| {
        let first_peer = ops.iter().position(|o| matches!(o, SetOp::Peer(_)));
        let device_ops = |o: &SetOp| {
            matches!(
                o,
                SetOp::PrivateKey(_) | SetOp::ListenPort(_) | SetOp::Fwmark(_) | SetOp::ReplacePeers
            )
        };
        match first_peer {
            Some(i) => {
                assert!(ops[..i].iter().all(device_ops), "peer op before the first peer");
                assert!(!ops[i..].iter().any(device_ops), "device op after a peer");
            }
            None => assert!(ops.iter().all(device_ops), "peer op without a peer"),
        }
        assert!(ops.iter().filter(|o| matches!(o, SetOp::Peer(_))).count() <= MAX_PEERS);
        let again = parse_request(encode_set(ops).as_bytes());
        assert_eq!(again, Ok(UapiRequestKind::Set(ops.to_vec())), "set does not round-trip");
    };
    match parse_request(data) {
        Ok(UapiRequestKind::Set(ops)) => checked(&ops),
        Ok(UapiRequestKind::Get) => assert!(data == b"get=1\n\n"),
        Err(e) => assert_ne!(e.errno(), 0),
    }
    if let Ok(ops) = parse_set(&String::from_utf8_lossy(data)) {
        checked(&ops);
    }
}

/// Splits `data` (lossily UTF-8) at its first NUL: a wg-quick file, then a
/// `bulkhead.toml` text. Parses the wg-quick file; if it is accepted, imports it
/// into the TOML text, and an accepted import must parse again as TOML with a
/// `[tunnel]` table holding every peer.
#[doc(hidden)]
pub fn fuzz_entry_wgquick(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (conf, toml_text) = text.split_once('\0').unwrap_or((&text, ""));
    match parse(conf) {
        Ok(imported) => {
            if let Ok(out) = import_into(toml_text, &imported, "wg0.key") {
                let doc: toml_edit::DocumentMut = out.text.parse().expect("an import is valid TOML");
                let tunnel = doc.get("tunnel").and_then(|t| t.as_table()).expect("a [tunnel] table");
                let peers = tunnel
                    .get("peers")
                    .and_then(|p| p.as_array_of_tables())
                    .map_or(0, |p| p.len());
                assert_eq!(peers, imported.peers.len());
                assert!(out.psk_files.len() <= imported.peers.len());
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a rejected file says why");
            let lines = conf.lines().count();
            for e in &errors.0 {
                assert!(e.line <= lines, "error past the end: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    const KEY_HEX: &str = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a";
    const PEER_HEX: &str = "b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33";

    fn uapi_seeds() -> Vec<String> {
        vec![
            "get=1\n\n".into(),
            format!(
                "set=1\nprivate_key={KEY_HEX}\nlisten_port=51820\nfwmark=0\nreplace_peers=true\n\
                 public_key={PEER_HEX}\npreshared_key={}\nprotocol_version=1\nreplace_allowed_ips=true\n\
                 allowed_ip=10.64.0.0/16\nallowed_ip=fd64::1/48\nendpoint=[fe80::1%2]:51820\n\
                 persistent_keepalive_interval=25\n\n",
                "0".repeat(64)
            ),
            format!("set=1\npublic_key={PEER_HEX}\nupdate_only=true\nendpoint=192.0.2.1:1\npublic_key={KEY_HEX}\nremove=true\n\n"),
        ]
    }

    const WGQUICK: &str = "[Interface]\n\
        PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
        Address = 10.64.0.2/32, fd64::2/128\n\
        DNS = 10.64.0.1, example.com\n\
        MTU = 1420\n\
        ListenPort = 51820\n\
        PostUp = iptables -A FORWARD\n\
        \n\
        [Peer]\n\
        PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
        PresharedKey = /UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=\n\
        AllowedIPs = 0.0.0.0/0, ::/0\n\
        Endpoint = vpn.example.net:51820\n\
        PersistentKeepalive = 25\n";

    const BULKHEAD_TOML: &str =
        "policies_dir = \"policies\"\n[wan]\ninterface = \"wan0\"\n\n# old\n[tunnel]\ninterface = \"wg1\"\n";

    fn wgquick_seeds() -> Vec<Vec<u8>> {
        vec![
            WGQUICK.as_bytes().to_vec(),
            format!("{WGQUICK}\0{BULKHEAD_TOML}").into_bytes(),
        ]
    }

    const TOKENS: &[&str] = &[
        "\n",
        "=",
        " = ",
        ",",
        "[Peer]\n",
        "[Interface]\n",
        "#",
        "%",
        "[",
        "]",
        ":",
        "/",
        "0",
        "\0",
        "é",
        "public_key=",
        "allowed_ip=",
        "endpoint=",
        "AllowedIPs = ",
        "Endpoint = ",
        "[::1]:0",
        "65536",
    ];

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        rng.mutate_text(seed, TOKENS, 30, 120)
    }

    #[test]
    fn tunnel_fuzz_entries_survive_a_deterministic_corpus() {
        let uapi: Vec<Vec<u8>> = uapi_seeds().into_iter().map(String::into_bytes).collect();
        let wgq = wgquick_seeds();
        // The seeds are accepted: mutations start from valid input.
        for s in &uapi {
            assert!(parse_request(s).is_ok(), "{}", String::from_utf8_lossy(s));
        }
        assert!(parse(WGQUICK).is_ok());
        let mut rng = Rng(0x7e57_0000_0000_0001);
        for i in 0..10_000 {
            fuzz_entry_uapi(&mutate(&mut rng, &uapi[i % uapi.len()]));
            fuzz_entry_wgquick(&mutate(&mut rng, &wgq[i % wgq.len()]));
        }
        for input in [&b""[..], b"\n", b"\n\n", b"set=1\n\n", b"\0", b"[Peer]\0[tunnel]"] {
            fuzz_entry_uapi(input);
            fuzz_entry_wgquick(input);
        }
    }

    /// Writes the seed corpus (see `write_fuzz_seeds` in `discovery::dhcp::fuzz`).
    #[test]
    #[ignore = "writes files; run by hand to regenerate fuzz/corpus"]
    fn write_tunnel_fuzz_seeds() {
        if std::env::var_os("BULKHEAD_WRITE_FUZZ_SEEDS").is_none() {
            return;
        }
        let write = crate::testutil::write_fuzz_seed;
        for (name, seed) in ["get", "set_full", "set_two_peers"].iter().zip(uapi_seeds()) {
            write("uapi", name, seed.as_bytes());
        }
        for (name, seed) in ["provider", "provider_into_config"].iter().zip(wgquick_seeds()) {
            write("wgquick", name, &seed);
        }
    }
}
