//! Fuzz entry for the configuration loader, shared by `fuzz/fuzz_targets/config`
//! and a stable unit test over a deterministic corpus. It panics only on a real
//! bug: a panic in the loader, or an error that does not point into the input.

use std::path::{Path, PathBuf};

use super::load::load_from_texts;

/// Where the fuzzed main file pretends to live.
const MAIN_PATH: &str = "/etc/bulkhead/bulkhead.toml";

/// Splits `data` (lossily UTF-8) at NUL bytes: the first part is `bulkhead.toml`,
/// each further part a policy file, and loads them with [`load_from_texts`]. A
/// rejected configuration must come back as errors that name one of the files and
/// a line inside it (or just past its end).
#[doc(hidden)]
pub fn fuzz_entry_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let main = parts.next().unwrap_or_default();
    let policies: Vec<(PathBuf, String)> = parts
        .enumerate()
        .map(|(i, t)| {
            (
                PathBuf::from(format!("/etc/bulkhead/policies/{i:02}.toml")),
                t.to_string(),
            )
        })
        .collect();
    let path = Path::new(MAIN_PATH);
    match load_from_texts(path, main, &policies) {
        Ok(config) => {
            assert_eq!(config.source, path);
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a rejected configuration says why");
            for e in &errors.0 {
                let file_text = if e.file == path {
                    main
                } else {
                    match policies.iter().find(|(p, _)| *p == e.file) {
                        Some((_, t)) => t.as_str(),
                        // An error about the policy files as a whole (no file
                        // sets `unknown_zone`) names their directory, at 0:0.
                        None if e.line == 0 && e.column == 0 => continue,
                        None => panic!("error names an unknown file: {e}"),
                    }
                };
                assert!(e.line <= file_text.lines().count() + 1, "line past the end: {e}");
            }
            let _ = errors.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;
    use crate::testutil::{shipped_policies, MAIN};

    /// A `[tunnel]` for `MAIN`, and a policy file selecting into it.
    const TUNNEL: &str = r#"
[tunnel]
private_key_file = "tunnel.key"
addresses = ["10.64.0.2/32", "fd64::2/128"]
listen_port = 51820

[[tunnel.peers]]
public_key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
preshared_key = "/UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak="
endpoint = "vpn.example.net:51820"
allowed_ips = ["0.0.0.0/0", "::/0"]
persistent_keepalive = 25
"#;
    const TUNNEL_POLICY: &str = r#"
[tunnel]
zones = ["iot"]
devices = ["02:00:00:00:00:01"]
destinations = ["203.0.113.0/24", "2001:db8:1::/48", "198.51.100.7"]
domain_sets = ["streaming"]

[tunnel.exclude]
devices = ["02:00:00:00:00:09"]
destinations = ["203.0.113.128/25"]
"#;

    /// `MAIN`, then the shipped policies, separated by NULs; and the same with
    /// a tunnel.
    pub(crate) fn seeds() -> Vec<Vec<u8>> {
        let join = |main: &str, extra: &[&str]| {
            let mut out = main.as_bytes().to_vec();
            for (_, text) in shipped_policies() {
                out.push(0);
                out.extend_from_slice(text.as_bytes());
            }
            for text in extra {
                out.push(0);
                out.extend_from_slice(text.as_bytes());
            }
            out
        };
        vec![join(MAIN, &[]), join(&format!("{MAIN}{TUNNEL}"), &[TUNNEL_POLICY])]
    }

    /// Tokens that steer mutations towards config shapes.
    const TOKENS: &[&str] = &[
        "\n[tunnel]\n",
        "\n[[segments]]\n",
        "\n[zones.x]\n",
        "\n[[devices]]\n",
        "\n[[classify]]\n",
        " = ",
        "\"",
        "[",
        "]",
        "{",
        "}",
        ",",
        "\0",
        "10.0.1.1/24",
        "fd00::1/64",
        "10.0.1.5-10.0.1.1",
        "é",
        "\n",
        "true",
        "-1",
        "99999999999999999999",
    ];

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        rng.mutate_text(seed, TOKENS, 40, 80)
    }

    #[test]
    fn config_fuzz_entry_survives_a_deterministic_corpus() {
        let seeds = seeds();
        // The seeds themselves load: the corpus starts from valid configurations.
        for seed in &seeds {
            let text = String::from_utf8(seed.clone()).expect("utf-8");
            let mut parts = text.split('\0');
            let main = parts.next().expect("main");
            let policies: Vec<(PathBuf, String)> = parts
                .enumerate()
                .map(|(i, t)| (PathBuf::from(format!("/p/{i}.toml")), t.to_string()))
                .collect();
            load_from_texts(Path::new(MAIN_PATH), main, &policies).unwrap_or_else(|e| panic!("seed loads:\n{e}"));
        }
        let mut rng = Rng(0x5eed_c0f1_9000_0001);
        // Each input is a whole configuration (~30 KB): 600 keep this test ~2 s in
        // a debug build; scripts/fuzz.sh does the long runs.
        for i in 0..600 {
            let data = mutate(&mut rng, &seeds[i % seeds.len()]);
            fuzz_entry_config(&data);
        }
        for input in [&b""[..], b"\0", b"\0\0\0", b"[[segments]]\0[zones", b"\xff\xfe"] {
            fuzz_entry_config(input);
        }
    }

    /// Writes the seed corpus (see `write_fuzz_seeds` in `discovery::dhcp::fuzz`).
    #[test]
    #[ignore = "writes files; run by hand to regenerate fuzz/corpus"]
    fn write_config_fuzz_seeds() {
        if std::env::var_os("BULKHEAD_WRITE_FUZZ_SEEDS").is_none() {
            return;
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/config");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (name, seed) in ["shipped", "tunnel"].iter().zip(seeds()) {
            std::fs::write(dir.join(name), seed).expect("write");
        }
    }
}
