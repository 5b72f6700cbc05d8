//! Fetching a blocklist from a URL: one HTTP/1.1 GET over TCP or TLS
//! (rustls, the resolver's CA file), a few redirects, a size cap and a
//! deadline. No cookies, no compression, no proxy: a list is a text file.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Largest list accepted (a 1M-domain list is ~25 MB).
pub const MAX_LIST_BYTES: usize = 64 << 20;
/// Whole fetch, redirects included.
const DEADLINE: Duration = Duration::from_secs(60);
/// Redirects followed.
const MAX_REDIRECTS: usize = 3;

/// Why a list could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an http:// or https:// URL with a host.
    #[error("`{0}` is not an http:// or https:// URL")]
    BadUrl(String),
    /// Connecting, TLS or HTTP failed.
    #[error("{0}")]
    Transport(String),
    /// Not 200.
    #[error("HTTP {0}")]
    Status(StatusCode),
    /// Larger than [`MAX_LIST_BYTES`].
    #[error("larger than {} MiB", MAX_LIST_BYTES >> 20)]
    TooLarge,
    /// Redirected too often.
    #[error("more than {MAX_REDIRECTS} redirects")]
    Redirects,
    /// No answer in time.
    #[error("no complete answer within {}s", DEADLINE.as_secs())]
    Timeout,
}

/// GETs `url`; the body if the answer is 200.
pub async fn fetch(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Vec<u8>, FetchError> {
    tokio::time::timeout(DEADLINE, fetch_following(url, tls))
        .await
        .map_err(|_| FetchError::Timeout)?
}

async fn fetch_following(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Vec<u8>, FetchError> {
    let mut uri: Uri = url.parse().map_err(|_| FetchError::BadUrl(url.to_string()))?;
    for _ in 0..=MAX_REDIRECTS {
        match get_once(&uri, tls.clone()).await? {
            Answer::Body(b) => return Ok(b),
            Answer::Redirect(location) => {
                uri = location.parse().map_err(|_| FetchError::BadUrl(location.clone()))?;
            }
        }
    }
    Err(FetchError::Redirects)
}

enum Answer {
    Body(Vec<u8>),
    Redirect(String),
}

async fn get_once(uri: &Uri, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Answer, FetchError> {
    let bad = || FetchError::BadUrl(uri.to_string());
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad()),
    };
    let host = uri.host().ok_or_else(bad)?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let transport = |e: &dyn std::fmt::Display| FetchError::Transport(format!("{host}:{port}: {e}"));
    let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let tcp = TcpStream::connect((bare_host.as_str(), port))
        .await
        .map_err(|e| transport(&e))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(hyper::header::HOST, host.as_str())
        .header(hyper::header::USER_AGENT, "bulkhead")
        .body(Empty::<Bytes>::new())
        .map_err(|e| transport(&e))?;
    let response = if https {
        let config = tls.ok_or_else(|| transport(&"no CA certificates to check the server with"))?;
        let name = rustls::pki_types::ServerName::try_from(bare_host.clone()).map_err(|e| transport(&e))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| transport(&e))?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
    .map_err(|e| transport(&e))?;
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or(FetchError::Status(status))?;
        return Ok(Answer::Redirect(location.to_string()));
    }
    if status != StatusCode::OK {
        return Err(FetchError::Status(status));
    }
    let body = Limited::new(response.into_body(), MAX_LIST_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                FetchError::TooLarge
            } else {
                transport(&e)
            }
        })?;
    Ok(Answer::Body(body.to_bytes().to_vec()))
}

async fn send<T>(
    io: TokioIo<T>,
    request: Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        // Ends with the response (or the error the request then reports).
        let _ = connection.await;
    });
    sender.send_request(request).await
}
