//! TLS for `tls://` and `https://` upstreams: the client configuration, the
//! name a certificate is checked against, and the pool of idle DNS-over-TLS
//! connections (RFC 7766 §6.2.1, RFC 7858 §3.4: reuse, close when idle).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use crate::config::Upstream;

/// How `tls://` and `https://` upstreams are checked: the rustls client config
/// built from `dns.tls_ca_file`, or why there is none.
pub type TlsClient = Result<Arc<rustls::ClientConfig>, String>;

/// Idle connections kept per upstream.
pub const POOL_CAP: usize = 4;
/// An idle connection older than this is closed, not reused (servers close
/// theirs after a few seconds to tens of seconds: unbound 30 s, others 10 s).
pub const POOL_IDLE: Duration = Duration::from_secs(8);

/// Builds the TLS client for `tls://` and `https://` upstreams: certificates
/// must chain to the CA certificates in `ca_file` (PEM) and name the
/// upstream (its name, else its address).
pub fn tls_client(ca_file: &Path) -> TlsClient {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_file.display()))?;
        // A CA the library cannot use is skipped, as the system's tools do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate", ca_file.display()));
    }
    // ring, not aws-lc: no cmake/nasm in the OpenWrt build, and ring is in the
    // binary already (boringtun). rustls 0.23.48 deprecates it for lacking
    // post-quantum key exchange; for questions to a resolver we accept that.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The same client offering only HTTP/2 (ALPN `h2`), for `https://` upstreams.
pub fn with_h2(tls: &TlsClient) -> TlsClient {
    let mut config = tls.as_ref().map_err(Clone::clone)?.as_ref().clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// What the certificate of `up` must name: its name if it has one, else the
/// address it is reached at.
pub fn server_name(up: &Upstream) -> Result<ServerName<'static>, String> {
    match &up.name {
        Some(name) => ServerName::try_from(name.clone()).map_err(|e| format!("`{name}`: {e}")),
        None => Ok(ServerName::IpAddress(up.addr.ip().into())),
    }
}

/// Idle connections of one upstream, newest last; at most [`POOL_CAP`], none
/// idle longer than [`POOL_IDLE`]. Generic for the tests.
#[derive(Debug)]
pub struct Pool<S> {
    idle: Mutex<Vec<(S, Instant)>>,
}

impl<S> Default for Pool<S> {
    fn default() -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
        }
    }
}

impl<S> Pool<S> {
    /// The most recently used idle connection, if one is fresh enough; stale
    /// ones are dropped (closed).
    pub fn take(&self, now: Instant) -> Option<S> {
        let mut idle = self.idle.lock().ok()?;
        idle.retain(|(_, since)| now.saturating_duration_since(*since) < POOL_IDLE);
        idle.pop().map(|(s, _)| s)
    }

    /// Keeps `stream` for the next question, unless [`POOL_CAP`] are kept
    /// already (then it is dropped: closed).
    pub fn put(&self, stream: S, now: Instant) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|(_, since)| now.saturating_duration_since(*since) < POOL_IDLE);
            if idle.len() < POOL_CAP {
                idle.push((stream, now));
            }
        }
    }

    /// Idle connections kept.
    pub fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |i| i.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_upstream;

    #[test]
    fn the_pool_reuses_the_newest_caps_and_expires() {
        let pool = Pool::default();
        let t0 = Instant::now();
        assert_eq!(pool.take(t0), None::<u32>, "empty");
        for i in 0..6 {
            pool.put(i, t0);
        }
        assert_eq!(pool.idle(), POOL_CAP, "at most the cap is kept");
        assert_eq!(pool.take(t0), Some(3), "the newest first");
        pool.put(7, t0 + Duration::from_secs(5));
        assert_eq!(
            pool.take(t0 + POOL_IDLE + Duration::from_secs(1)),
            Some(7),
            "the fresh one"
        );
        assert_eq!(
            pool.take(t0 + POOL_IDLE + Duration::from_secs(1)),
            None,
            "the others were idle too long and are gone"
        );
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn certificates_are_checked_against_the_name_else_the_address() {
        let by_ip = parse_upstream("tls://192.0.2.53").expect("parses");
        assert_eq!(
            server_name(&by_ip).expect("name"),
            ServerName::IpAddress(std::net::IpAddr::from([192, 0, 2, 53]).into())
        );
        for text in [
            "tls://192.0.2.53#dns.example.test",
            "tls://dns.example.test",
            "https://dns.example.test/q",
        ] {
            let up = parse_upstream(text).expect("parses");
            assert_eq!(
                server_name(&up).expect("name"),
                ServerName::try_from("dns.example.test").expect("valid"),
                "{text}"
            );
        }
    }

    #[test]
    fn the_doh_client_offers_h2_only() {
        let none = with_h2(&Err("no CA".into()));
        assert_eq!(none.err().as_deref(), Some("no CA"));
        // The system's bundle, when the machine has one.
        if let Ok(base) = tls_client(Path::new(crate::config::DEFAULT_CA_FILE)) {
            let h2 = with_h2(&Ok(base.clone())).expect("config");
            assert_eq!(h2.alpn_protocols, vec![b"h2".to_vec()]);
            assert!(base.alpn_protocols.is_empty(), "DoT offers no ALPN");
        }
    }
}
