//! WireGuard's cross-platform UAPI (<https://www.wireguard.com/xplatform/>), so that
//! `wg show` / `wg set` (wireguard-tools) work against our boringtun-based device.
//!
//! The protocol half is pure: [`format_get`] renders a [`DeviceSnapshot`] exactly
//! like wireguard-go does, [`parse_request`] / [`parse_set`] turn a request into
//! [`SetOp`]s, rejecting hostile input (line, request and peer-count bounds) with
//! a [`UapiError`] instead of panicking.
//!
//! The edge is [`UapiServer`]: a unix stream socket (by default
//! `/var/run/wireguard/<ifname>.sock`, mode 0600) served by a tokio task. Each
//! connection carries one request, read with a timeout; a well-formed one is handed
//! to the daemon's loop as a [`UapiRequest`] over an mpsc channel, and the daemon
//! answers it with [`answer`] against its [`UapiDevice`]. Malformed requests are
//! answered by the server itself (`errno=22`) and never reach the daemon.
//!
//! Keys are hex in this protocol (base64 only in config files). A `get` reply
//! contains the private key, as with every WireGuard implementation: it must never
//! be logged, and the socket is root-only.

use portable_atomic::AtomicU64;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::config::WgKey;

/// Longest accepted line, without its `\n` (the longest legitimate one is a
/// 64-digit key or an IPv6 endpoint with a scope: well under 200 bytes).
pub const MAX_LINE: usize = 4096;
/// Largest accepted request, terminating blank line included.
pub const MAX_REQUEST: usize = 1 << 20;
/// Most peers one `set` request may name.
pub const MAX_PEERS: usize = 1024;
/// How long a client has to send its whole request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the daemon has to answer, and the client to take the answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 8;
/// Directory wireguard-tools looks in for userspace interfaces.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// `EINVAL`: what wireguard-go answers to malformed or invalid requests.
pub const EINVAL: i32 = 22;
/// `EIO`.
pub const EIO: i32 = 5;
/// `EADDRINUSE`: a listen port that cannot be bound.
pub const EADDRINUSE: i32 = 98;

/// The device's state as `wg show` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSnapshot {
    /// Our private key, if one is set.
    pub private_key: Option<WgKey>,
    /// The UDP port we listen on (0: not listening; omitted from the reply).
    pub listen_port: u16,
    /// Mark set on our UDP packets.
    pub fwmark: Option<u32>,
    /// Peers, in the order they are reported.
    pub peers: Vec<PeerSnapshot>,
}

/// One peer's state as `wg show` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// The peer's public key.
    pub public_key: WgKey,
    /// Preshared key, if any (reported as all zeros when none, like wireguard-go).
    pub preshared_key: Option<WgKey>,
    /// Current endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Allowed IPs.
    pub allowed_ips: Vec<IpNet>,
    /// Keepalive interval in seconds.
    pub persistent_keepalive: Option<u16>,
    /// When the last handshake completed.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from this peer.
    pub rx_bytes: u64,
    /// Bytes sent to this peer.
    pub tx_bytes: u64,
}

/// One instruction of a `set=1` request, in request order.
///
/// Peer-level operations (everything from [`SetOp::RemovePeer`] on) apply to the
/// peer named by the closest preceding [`SetOp::Peer`]; [`parse_set`] guarantees
/// there is one, and that device-level operations only come before the first
/// peer. `protocol_version=1` is validated and produces no operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOp {
    /// `private_key=`: set (`Some`) or clear (all-zero key: `None`) our key.
    PrivateKey(Option<WgKey>),
    /// `listen_port=`: listen on this UDP port (0: any).
    ListenPort(u16),
    /// `fwmark=`: mark for our UDP packets (`None`: 0, no mark).
    Fwmark(Option<u32>),
    /// `replace_peers=true`: remove all peers not (re)configured by this request.
    ReplacePeers,
    /// `public_key=`: the following operations concern this peer, created if it
    /// does not exist (unless [`SetOp::UpdateOnly`] follows).
    Peer(WgKey),
    /// `remove=true`: remove the current peer.
    RemovePeer,
    /// `update_only=true`: only change the current peer if it already exists.
    UpdateOnly,
    /// `preshared_key=`: set (`Some`) or clear (all zeros: `None`).
    PresharedKey(Option<WgKey>),
    /// `endpoint=`: the peer's address (IPv6 in brackets in the request).
    Endpoint(SocketAddr),
    /// `persistent_keepalive_interval=`: seconds (`None`: 0, off).
    PersistentKeepalive(Option<u16>),
    /// `replace_allowed_ips=true`: drop the peer's allowed IPs before adding.
    ReplaceAllowedIps,
    /// `allowed_ip=`: add an allowed IP (host bits cleared, as wireguard-go does).
    AllowedIp(IpNet),
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UapiRequestKind {
    /// `get=1`: answer with [`format_get`].
    Get,
    /// `set=1`: apply these operations, answer with [`format_errno`].
    Set(Vec<SetOp>),
}

/// A well-formed request handed to the daemon; answer it with [`answer`].
#[derive(Debug)]
pub struct UapiRequest {
    /// What is asked.
    pub kind: UapiRequestKind,
    /// Where the whole reply text goes (ending `errno=N\n\n`).
    pub reply: oneshot::Sender<String>,
}

/// Why a request was refused. Messages never contain key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UapiError {
    /// A line longer than [`MAX_LINE`].
    #[error("line {line} longer than {MAX_LINE} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
    },
    /// A request larger than [`MAX_REQUEST`].
    #[error("request larger than {MAX_REQUEST} bytes")]
    RequestTooLarge,
    /// More than [`MAX_PEERS`] peers in one request.
    #[error("more than {MAX_PEERS} peers in one request")]
    TooManyPeers,
    /// Bytes that are not UTF-8.
    #[error("request is not UTF-8")]
    NotUtf8,
    /// The client closed the connection before the terminating blank line.
    #[error("request ended before its blank line")]
    Truncated,
    /// Neither `get=1` nor `set=1`.
    #[error("unknown operation (expected get=1 or set=1)")]
    BadOperation,
    /// Content after a `get=1` line, or after the blank line ending a `set`.
    #[error("unexpected content on line {line}")]
    Unexpected {
        /// 1-based line number.
        line: usize,
    },
    /// A line without `=`.
    #[error("line {line} is not key=value")]
    NotKeyValue {
        /// 1-based line number.
        line: usize,
    },
    /// A key this protocol does not have, or one in the wrong place (a device key
    /// after the first `public_key`, a peer key before it).
    #[error("unexpected key `{key}` on line {line}")]
    UnknownKey {
        /// The key, escaped, at most 64 characters.
        key: String,
        /// 1-based line number.
        line: usize,
    },
    /// A known key with a value that does not parse (the value is not echoed: it
    /// may be a key).
    #[error("invalid value for `{key}` on line {line}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// 1-based line number.
        line: usize,
    },
    /// The device refused a well-formed request.
    #[error("device refused the request: {reason}")]
    Rejected {
        /// errno for the reply.
        errno: i32,
        /// Why, for the log.
        reason: String,
    },
    /// Socket setup or I/O failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The error, as text (keeps this type `Clone` and `Eq`).
        error: String,
    },
    /// Another process serves this socket.
    #[error("{0} is served by a running process")]
    InUse(PathBuf),
}

impl UapiError {
    /// The errno to put in the reply.
    pub fn errno(&self) -> i32 {
        match self {
            UapiError::Rejected { errno, .. } => *errno,
            UapiError::Io { .. } => EIO,
            UapiError::InUse(_) => EADDRINUSE,
            _ => EINVAL,
        }
    }

    fn io(context: impl Into<String>, e: std::io::Error) -> Self {
        UapiError::Io {
            context: context.into(),
            error: e.to_string(),
        }
    }
}

// ---------------------------------------------------------------- protocol (pure)

fn hex(out: &mut String, key: &[u8; 32]) {
    for b in key {
        let _ = write!(out, "{b:02x}");
    }
}

fn parse_hex_key(value: &str) -> Option<[u8; 32]> {
    let bytes = value.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        key[i] = (hi * 16 + lo) as u8;
    }
    Some(key)
}

/// A decimal number as Go's `strconv.ParseUint(s, 10, n)` takes it: digits only
/// (no sign, no spaces), non-empty, in range.
fn parse_dec<T: std::str::FromStr>(value: &str) -> Option<T> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The reply to a `get=1` request, byte for byte what wireguard-go sends: device
/// keys (`private_key` and `listen_port` only when set, `fwmark` only when
/// non-zero), then per peer `public_key`, `preshared_key` (all zeros when none),
/// `protocol_version=1`, `endpoint` (when known), `last_handshake_time_sec` /
/// `_nsec` (0 when never), `tx_bytes`, `rx_bytes`,
/// `persistent_keepalive_interval` (0 when off) and `allowed_ip` lines; then
/// `errno=0` and a blank line.
pub fn format_get(dev: &DeviceSnapshot) -> String {
    let mut out = String::with_capacity(256 + 512 * dev.peers.len());
    if let Some(key) = &dev.private_key {
        out.push_str("private_key=");
        hex(&mut out, &key.0);
        out.push('\n');
    }
    if dev.listen_port != 0 {
        let _ = writeln!(out, "listen_port={}", dev.listen_port);
    }
    if let Some(mark) = dev.fwmark.filter(|m| *m != 0) {
        let _ = writeln!(out, "fwmark={mark}");
    }
    for peer in &dev.peers {
        out.push_str("public_key=");
        hex(&mut out, &peer.public_key.0);
        out.push_str("\npreshared_key=");
        hex(&mut out, &peer.preshared_key.as_ref().map_or([0u8; 32], |k| k.0));
        out.push_str("\nprotocol_version=1\n");
        if let Some(ep) = peer.endpoint {
            // SocketAddr's Display brackets IPv6 (and appends a non-zero scope as
            // `%N`), like Go's netip.AddrPort.
            let _ = writeln!(out, "endpoint={ep}");
        }
        let since = peer
            .last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let _ = writeln!(out, "last_handshake_time_sec={}", since.as_secs());
        let _ = writeln!(out, "last_handshake_time_nsec={}", since.subsec_nanos());
        let _ = writeln!(out, "tx_bytes={}", peer.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", peer.rx_bytes);
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            peer.persistent_keepalive.unwrap_or(0)
        );
        for net in &peer.allowed_ips {
            let _ = writeln!(out, "allowed_ip={net}");
        }
    }
    out.push_str("errno=0\n\n");
    out
}

/// The reply to a `set=1` request, or to any refused request: `errno=N` and a
/// blank line.
pub fn format_errno(errno: i32) -> String {
    format!("errno={errno}\n\n")
}

fn escaped_key(key: &str) -> String {
    key.chars().take(64).flat_map(char::escape_debug).collect()
}

/// Parses the body of a `set=1` request: the `key=value` lines after `set=1`,
/// optionally followed by the terminating blank line (nothing may follow it).
///
/// Bounded: lines over [`MAX_LINE`], bodies over [`MAX_REQUEST`] and more than
/// [`MAX_PEERS`] peers are refused. Any unknown key, misplaced key or bad value
/// refuses the whole request (nothing is applied), as `errno=22`.
pub fn parse_set(text: &str) -> Result<Vec<SetOp>, UapiError> {
    parse_set_lines(text, 2)
}

/// `first_line`: the 1-based number of the body's first line, for messages.
fn parse_set_lines(text: &str, first_line: usize) -> Result<Vec<SetOp>, UapiError> {
    if text.len() > MAX_REQUEST {
        return Err(UapiError::RequestTooLarge);
    }
    let mut ops = Vec::new();
    let mut peers = 0usize;
    let mut ended = false;
    for (i, line) in text.split_terminator('\n').enumerate() {
        let n = first_line + i;
        if line.len() > MAX_LINE {
            return Err(UapiError::LineTooLong { line: n });
        }
        if ended {
            return Err(UapiError::Unexpected { line: n });
        }
        if line.is_empty() {
            ended = true;
            continue;
        }
        let (key, value) = line.split_once('=').ok_or(UapiError::NotKeyValue { line: n })?;
        let bad = |key: &'static str| UapiError::BadValue { key, line: n };
        let key_opt = |k: &'static str| -> Result<Option<WgKey>, UapiError> {
            let key = parse_hex_key(value).ok_or(bad(k))?;
            Ok((key != [0u8; 32]).then_some(WgKey(key)))
        };
        let flag = |k: &'static str, op: SetOp| {
            if value == "true" {
                Ok(op)
            } else {
                Err(bad(k))
            }
        };
        let in_peer = peers > 0;
        let op = match (in_peer, key) {
            (_, "public_key") => {
                peers += 1;
                if peers > MAX_PEERS {
                    return Err(UapiError::TooManyPeers);
                }
                SetOp::Peer(WgKey(parse_hex_key(value).ok_or(bad("public_key"))?))
            }
            (false, "private_key") => SetOp::PrivateKey(key_opt("private_key")?),
            (false, "listen_port") => SetOp::ListenPort(parse_dec(value).ok_or(bad("listen_port"))?),
            (false, "fwmark") => {
                let mark: u32 = parse_dec(value).ok_or(bad("fwmark"))?;
                SetOp::Fwmark((mark != 0).then_some(mark))
            }
            (false, "replace_peers") => flag("replace_peers", SetOp::ReplacePeers)?,
            (true, "remove") => flag("remove", SetOp::RemovePeer)?,
            (true, "update_only") => flag("update_only", SetOp::UpdateOnly)?,
            (true, "preshared_key") => SetOp::PresharedKey(key_opt("preshared_key")?),
            (true, "endpoint") => SetOp::Endpoint(value.parse().map_err(|_| bad("endpoint"))?),
            (true, "persistent_keepalive_interval") => {
                let secs: u16 = parse_dec(value).ok_or(bad("persistent_keepalive_interval"))?;
                SetOp::PersistentKeepalive((secs != 0).then_some(secs))
            }
            (true, "replace_allowed_ips") => flag("replace_allowed_ips", SetOp::ReplaceAllowedIps)?,
            (true, "allowed_ip") => {
                let net: IpNet = value.parse().map_err(|_| bad("allowed_ip"))?;
                SetOp::AllowedIp(net.trunc())
            }
            (true, "protocol_version") => {
                if value != "1" {
                    return Err(bad("protocol_version"));
                }
                continue;
            }
            (_, other) => {
                return Err(UapiError::UnknownKey {
                    key: escaped_key(other),
                    line: n,
                })
            }
        };
        ops.push(op);
    }
    Ok(ops)
}

/// Where a complete request ends in `buf`: the index just past its terminating
/// blank line, or `None` while it is incomplete.
pub fn request_end(buf: &[u8]) -> Option<usize> {
    if buf.first() == Some(&b'\n') {
        return Some(1);
    }
    buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

/// Parses one whole request (`get=1\n\n` or `set=1\n...\n\n`), as read from the
/// socket up to [`request_end`]. Never panics; bounded like [`parse_set`].
pub fn parse_request(bytes: &[u8]) -> Result<UapiRequestKind, UapiError> {
    if bytes.len() > MAX_REQUEST {
        return Err(UapiError::RequestTooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| UapiError::NotUtf8)?;
    if !text.ends_with("\n\n") && text != "\n" {
        return Err(UapiError::Truncated);
    }
    let (op, rest) = text.split_once('\n').ok_or(UapiError::Truncated)?;
    if op.len() > MAX_LINE {
        return Err(UapiError::LineTooLong { line: 1 });
    }
    match op {
        "get=1" => {
            if rest == "\n" {
                Ok(UapiRequestKind::Get)
            } else {
                Err(UapiError::Unexpected { line: 2 })
            }
        }
        "set=1" => parse_set_lines(rest, 2).map(UapiRequestKind::Set),
        _ => Err(UapiError::BadOperation),
    }
}

// ---------------------------------------------------------------- the daemon's side

/// The device as the UAPI sees it; implemented by the daemon's tunnel state.
pub trait UapiDevice {
    /// The current state, for `get`.
    fn snapshot(&self) -> DeviceSnapshot;
    /// Applies a whole `set` request (validated by [`parse_set`]); on error the
    /// device should be left as it was, and the error's errno is replied.
    fn apply(&mut self, ops: Vec<SetOp>) -> Result<(), UapiError>;
}

/// Answers a request against the device: the daemon's wiring is
/// `Some(req) = uapi_rx.recv() => uapi::answer(req, &mut device)`.
/// Returns the device's error for a refused `set`, for the daemon to log.
pub fn answer(req: UapiRequest, device: &mut dyn UapiDevice) -> Result<(), UapiError> {
    let (reply, result) = match req.kind {
        UapiRequestKind::Get => (format_get(&device.snapshot()), Ok(())),
        UapiRequestKind::Set(ops) => match device.apply(ops) {
            Ok(()) => (format_errno(0), Ok(())),
            Err(e) => (format_errno(e.errno()), Err(e)),
        },
    };
    // The client may be gone (timed out); nothing to do about it.
    let _ = req.reply.send(reply);
    result
}

// ---------------------------------------------------------------- the server (edge)

/// The default socket of interface `ifname`: `/var/run/wireguard/<ifname>.sock`,
/// where wireguard-tools looks.
pub fn default_socket_path(ifname: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{ifname}.sock"))
}

/// What the server has seen, for the status page and tests.
#[derive(Debug, Default)]
pub struct UapiStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Requests handed to the daemon.
    pub forwarded: AtomicU64,
    /// Connections closed without a request (liveness probes by wireguard-tools).
    pub probes: AtomicU64,
    /// Malformed requests (answered `errno=22` by the server).
    pub malformed: AtomicU64,
    /// Clients too slow to send their request (closed without a reply).
    pub timeouts: AtomicU64,
    /// I/O errors on connections or accept.
    pub io_errors: AtomicU64,
    /// Requests the daemon did not answer (channel closed or full, or too slow).
    pub unanswered: AtomicU64,
}

/// The UAPI socket. Serves connections in a tokio task until dropped; dropping
/// stops accepting and removes the socket file (if it is still ours).
#[derive(Debug)]
pub struct UapiServer {
    path: PathBuf,
    /// (device, inode) of the socket we bound, so Drop never removes a successor's.
    ident: (u64, u64),
    stats: Arc<UapiStats>,
    task: JoinHandle<()>,
}

impl UapiServer {
    /// Binds `path` (see [`default_socket_path`]) and starts serving; requests go
    /// to `requests`. Must be called inside a tokio runtime.
    ///
    /// Creates the parent directory (0755) when missing. An existing socket file
    /// is removed only if nobody answers on it (a crashed predecessor's); a live
    /// one is never taken over ([`UapiError::InUse`]), and a path that is not a
    /// socket is never removed.
    pub fn bind(path: impl Into<PathBuf>, requests: mpsc::Sender<UapiRequest>) -> Result<UapiServer, UapiError> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(|e| UapiError::io(format!("creating {}", dir.display()), e))?;
            }
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => {
                if !meta.file_type().is_socket() {
                    return Err(UapiError::Io {
                        context: format!("binding {}", path.display()),
                        error: "exists and is not a socket".into(),
                    });
                }
                if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                    return Err(UapiError::InUse(path));
                }
                std::fs::remove_file(&path)
                    .map_err(|e| UapiError::io(format!("removing stale socket {}", path.display()), e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(UapiError::io(format!("checking {}", path.display()), e)),
        }
        let listener =
            UnixListener::bind(&path).map_err(|e| UapiError::io(format!("binding {}", path.display()), e))?;
        // Until this chmod the socket has the umask's mode (normally 0755): not
        // connectable by others, who would need write permission.
        let meta = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::symlink_metadata(&path));
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(UapiError::io(format!("securing {}", path.display()), e));
            }
        };
        let stats = Arc::new(UapiStats::default());
        let task = tokio::spawn(accept_loop(listener, requests, stats.clone()));
        Ok(UapiServer {
            path,
            ident: (meta.dev(), meta.ino()),
            stats,
            task,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters.
    pub fn stats(&self) -> &UapiStats {
        &self.stats
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.ident {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

async fn accept_loop(listener: UnixListener, requests: mpsc::Sender<UapiRequest>, stats: Arc<UapiStats>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return; // never closed
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let requests = requests.clone();
                let stats = stats.clone();
                tokio::spawn(async move {
                    serve_connection(stream, requests, &stats).await;
                    drop(permit);
                });
            }
            Err(e) => {
                stats.io_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("uapi: accept failed: {e}");
                // e.g. EMFILE: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request: bytes up to its terminating blank line, at most
/// [`MAX_REQUEST`] of them. `None`: the client closed without sending anything
/// (wireguard-tools connects once just to see whether the socket is alive).
async fn read_request(stream: &mut UnixStream) -> Result<Option<Vec<u8>>, UapiError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| UapiError::io("reading request", e))?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(UapiError::Truncated)
            };
        }
        // Only the new bytes (and the one before them) can complete "\n\n".
        let from = buf.len().saturating_sub(1);
        buf.extend_from_slice(&chunk[..n]);
        let end = if buf.first() == Some(&b'\n') {
            Some(1)
        } else {
            buf[from..].windows(2).position(|w| w == b"\n\n").map(|i| from + i + 2)
        };
        if let Some(end) = end {
            buf.truncate(end);
            return Ok(Some(buf));
        }
        if buf.len() > MAX_REQUEST {
            return Err(UapiError::RequestTooLarge);
        }
    }
}

async fn serve_connection(mut stream: UnixStream, requests: mpsc::Sender<UapiRequest>, stats: &UapiStats) {
    let bytes = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Err(_) => {
            stats.timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("uapi: client too slow, closing");
            return;
        }
        Ok(Err(e @ UapiError::Io { .. })) => {
            stats.io_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("uapi: {e}");
            return;
        }
        Ok(Ok(None)) => {
            stats.probes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Ok(Err(e)) => Err(e),
        Ok(Ok(Some(bytes))) => Ok(bytes),
    };
    let reply = match bytes.and_then(|b| parse_request(&b)) {
        Err(e) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("uapi: refused request: {e}");
            format_errno(e.errno())
        }
        Ok(kind) => {
            let (tx, rx) = oneshot::channel();
            let req = UapiRequest { kind, reply: tx };
            let answered = async {
                requests.send(req).await.ok()?;
                rx.await.ok()
            };
            match tokio::time::timeout(REPLY_TIMEOUT, answered).await {
                Ok(Some(reply)) => {
                    stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    reply
                }
                _ => {
                    stats.unanswered.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("uapi: the daemon did not answer a request");
                    format_errno(EIO)
                }
            }
        }
    };
    let written = tokio::time::timeout(REPLY_TIMEOUT, async {
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        stats.io_errors.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod netns_test;
#[cfg(test)]
mod tests;
