//! systemd's readiness protocol (`sd_notify(3)`), so that with `Type=notify`
//! "started" means the rules are applied and the sockets are listening.
//!
//! One datagram to the socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name when it starts with `@`); without it (not under systemd,
//! procd, a terminal) nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Tells the service manager `state` (newline-separated `KEY=VALUE`s).
/// Failures are logged, never fatal: the daemon enforces either way.
pub(super) fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&target, state) {
        tracing::warn!(error = %e, socket = ?target, "could not notify the service manager");
    }
}

fn send(target: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), std::path::Path::new(target))?;
    }
    Ok(())
}

/// `RELOADING=1` with the monotonic time systemd asks for (`Type=notify-reload`
/// requires it; plain `Type=notify` accepts it).
pub(super) fn reloading() -> String {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0;
    if !ok {
        return "RELOADING=1".to_string();
    }
    let usec = (ts.tv_sec as u64).saturating_mul(1_000_000) + (ts.tv_nsec as u64) / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_path_socket_and_an_abstract_one() {
        let dir = crate::testutil::Fixture::new("", &[]);
        let path = dir.dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("bind");
        send(path.as_os_str(), "READY=1\nSTATUS=rules applied").expect("send");
        let mut buf = [0u8; 128];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=rules applied");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("bulkhead-test-notify-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
        let abstract_listener = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").expect("send");
        let n = abstract_listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
        assert!(reloading().starts_with("RELOADING=1\nMONOTONIC_USEC="));
    }
}
