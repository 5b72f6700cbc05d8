//! WireGuard keys: base64 text <-> [`WgKey`], the public key of a private one, new
//! private keys, and key files (one base64 key, mode 0600, like `wg genkey >`).
//!
//! Pure except for [`generate_private`] (the OS's random source) and the key file
//! functions. No error message ever contains a key's text.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use boringtun::x25519::{PublicKey, StaticSecret};

use crate::config::{PrivateKeySource, WgKey};

/// Why a key or key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not 32 bytes of base64 (the reason never quotes the text).
    #[error("not a WireGuard key: {0}")]
    Malformed(&'static str),
    /// A key file could not be read.
    #[error("{}: cannot read the key file", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file could not be written.
    #[error("{}: cannot write the key file", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file others may read: refused, like wg(8) warns about it.
    #[error(
        "{}: the key file is accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file whose content is not a key.
    #[error("{}: the key file does not hold a WireGuard key", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with the content.
        #[source]
        source: Box<KeyError>,
    },
    /// A key file exists and holds another key than the one to be written.
    #[error("{}: exists and holds a different key (use --force to replace it)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// Parses a base64 WireGuard key (44 characters, 32 bytes; surrounding whitespace
/// is ignored).
pub fn parse_key(text: &str) -> Result<WgKey, KeyError> {
    let text = text.trim();
    if text.len() != 44 {
        return Err(KeyError::Malformed(
            "expected 44 characters of base64 (32 bytes), as `wg genkey` prints",
        ));
    }
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| KeyError::Malformed("not valid base64 (32 bytes, as `wg genkey` prints)"))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| KeyError::Malformed("does not decode to 32 bytes"))?;
    Ok(WgKey(arr))
}

/// The key as base64, as `wg` prints it.
pub fn format_key(key: &WgKey) -> String {
    STANDARD.encode(key.0)
}

/// The public key of a private key.
pub fn public_key(private: &WgKey) -> WgKey {
    let secret = StaticSecret::from(private.0);
    WgKey(PublicKey::from(&secret).to_bytes())
}

/// A new private key from the OS's random source, clamped like `wg genkey`'s.
pub fn generate_private() -> WgKey {
    let mut b = StaticSecret::random_from_rng(rand_core::OsRng).to_bytes();
    b[0] &= 248;
    b[31] &= 127;
    b[31] |= 64;
    WgKey(b)
}

/// Reads a key file: one base64 key, whitespace around it ignored. Refuses a file
/// group or others can access (any of the 0o077 bits).
pub fn read_key_file(path: &Path) -> Result<WgKey, KeyError> {
    let read_err = |source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    parse_key(&text).map_err(|e| KeyError::BadFile {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

/// Reads the private key file at `path`, or, when it does not exist, generates a
/// key and creates the file (mode 0600, written and synced under a temporary name
/// and then linked into place, so that the file appears complete or not at all
/// and an existing file is never replaced). The parent directory must exist.
pub fn load_or_create_key_file(path: &Path) -> Result<WgKey, KeyError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => read_key_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = generate_private();
            match create_key_file(path, &key) {
                Ok(()) => Ok(key),
                // Someone else created it meanwhile: theirs wins.
                Err(KeyError::Write { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                    read_key_file(path)
                }
                Err(e) => Err(e),
            }
        }
        Err(source) => Err(KeyError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `key` to `path` (mode 0600). Without `replace`, an existing file is an
/// error ([`KeyError::Exists`]) unless it already holds this very key; with it, the
/// file is replaced atomically (rename).
pub fn write_key_file(path: &Path, key: &WgKey, replace: bool) -> Result<(), KeyError> {
    if std::fs::symlink_metadata(path).is_ok() {
        if matches!(read_key_file(path), Ok(k) if k == *key) {
            return Ok(());
        }
        if !replace {
            return Err(KeyError::Exists {
                path: path.to_path_buf(),
            });
        }
        let tmp = temp_name(path);
        write_new(&tmp, key, path)?;
        return std::fs::rename(&tmp, path)
            .and_then(|()| sync_parent(path))
            .map_err(|source| {
                let _ = std::fs::remove_file(&tmp);
                KeyError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            });
    }
    create_key_file(path, key)
}

/// Creates `path` holding `key`, never replacing an existing file (a temporary file,
/// synced, hard-linked to `path`).
fn create_key_file(path: &Path, key: &WgKey) -> Result<(), KeyError> {
    let tmp = temp_name(path);
    write_new(&tmp, key, path)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked
        .and_then(|()| sync_parent(path))
        .map_err(|source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        })
}

fn temp_name(path: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// create_new + mode 0600 + write + fsync.
/// Errors name `target`, the file the temporary one becomes.
fn write_new(path: &Path, key: &WgKey, target: &Path) -> Result<(), KeyError> {
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(format!("{}\n", format_key(key)).as_bytes())?;
        f.sync_all()
    })();
    res.map_err(|source| {
        let _ = std::fs::remove_file(path);
        KeyError::Write {
            path: target.to_path_buf(),
            source,
        }
    })
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => std::fs::File::open(p)?.sync_all(),
        _ => Ok(()),
    }
}

/// The tunnel's private key: the inline one, or the key file's (created when
/// missing, see [`load_or_create_key_file`]).
pub fn resolve_private_key(source: &PrivateKeySource) -> Result<WgKey, KeyError> {
    match source {
        PrivateKeySource::Inline(k) => Ok(k.clone()),
        PrivateKeySource::File(path) => load_or_create_key_file(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!("bulkhead-keys-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("mkdir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn parse_and_format_round_trip() {
        let k = generate_private();
        let text = format_key(&k);
        assert_eq!(text.len(), 44);
        assert_eq!(parse_key(&format!("  {text}\n")).expect("valid"), k);
        assert!(matches!(parse_key("abc"), Err(KeyError::Malformed(_))));
        // 44 characters, but not base64.
        let bad = "!".repeat(43) + "=";
        assert!(matches!(parse_key(&bad), Err(KeyError::Malformed(_))));
        // 44 characters of base64 whose last character has stray low bits.
        let mut stray = text[..42].to_string();
        stray.push_str("B=");
        assert!(matches!(parse_key(&stray), Err(KeyError::Malformed(_))));
        // The message never quotes the text.
        let secret = format_key(&generate_private());
        let msg = parse_key(&secret[..40]).expect_err("short").to_string();
        assert!(!msg.contains(&secret[..40]), "{msg}");
    }

    #[test]
    fn public_key_matches_wg_pubkey() {
        // RFC 7748 6.1: Alice's private key and public key.
        let hex = |s: &str| -> [u8; 32] {
            let v: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            v.try_into().expect("32")
        };
        let private = WgKey(hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
        let public = WgKey(hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"));
        assert_eq!(public_key(&private), public);
        let g = generate_private();
        assert_eq!(g.0[0] & 7, 0, "clamped");
        assert_eq!(g.0[31] & 0xc0, 0x40, "clamped");
        assert_ne!(generate_private(), g);
    }

    #[test]
    fn key_file_is_created_0600_and_read_back() {
        let dir = TempDir::new("create");
        let path = dir.0.join("tunnel.key");
        let k = load_or_create_key_file(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_key_file(&path).expect("read"), k);
        assert_eq!(
            resolve_private_key(&PrivateKeySource::File(path.clone())).expect("read"),
            k
        );
        assert_eq!(
            resolve_private_key(&PrivateKeySource::Inline(k.clone())).expect("inline"),
            k
        );
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(&dir.0)
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("tunnel.key")]);
        // Whitespace around the key is fine (`wg genkey > file` ends with a newline).
        std::fs::write(&path, format!("\n  {}  \n\n", format_key(&k))).expect("write");
        assert_eq!(read_key_file(&path).expect("read"), k);
    }

    #[test]
    fn key_file_errors_name_the_path_and_never_the_key() {
        let dir = TempDir::new("errors");
        let path = dir.0.join("tunnel.key");
        let secret = format_key(&generate_private());
        std::fs::write(&path, &secret).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load_or_create_key_file(&path).expect_err("world-readable");
        let msg = e.to_string();
        assert!(matches!(e, KeyError::Permissions { mode: 0o644, .. }), "{e:?}");
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("mode 0644"),
            "{msg}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(read_key_file(&path), Err(KeyError::Permissions { .. })));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, &secret[..30]).expect("write");
        let e = load_or_create_key_file(&path).expect_err("truncated");
        let chain = format!("{e}: {}", std::error::Error::source(&e).expect("source"));
        assert!(
            chain.contains("does not hold a WireGuard key: not a WireGuard key"),
            "{chain}"
        );
        assert!(!chain.contains(&secret[..30]), "{chain}");

        let missing_dir = dir.0.join("nope").join("tunnel.key");
        let e = load_or_create_key_file(&missing_dir).expect_err("no parent");
        assert!(matches!(e, KeyError::Write { .. }), "{e:?}");
        assert!(e.to_string().contains("nope/tunnel.key"), "{e}");
    }

    #[test]
    fn write_key_file_refuses_a_different_key_unless_replacing() {
        let dir = TempDir::new("write");
        let path = dir.0.join("k");
        let a = generate_private();
        let b = generate_private();
        write_key_file(&path, &a, false).expect("new");
        write_key_file(&path, &a, false).expect("same key again is fine");
        assert!(matches!(write_key_file(&path, &b, false), Err(KeyError::Exists { .. })));
        write_key_file(&path, &b, true).expect("replace");
        assert_eq!(read_key_file(&path).expect("read"), b);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(&dir.0).expect("ls").count(),
            1,
            "no temporary files left"
        );
    }
}
