//! One HTTP/1.1 POST over TCP or TLS (rustls, the `[notify]` CA file), with
//! a deadline: the webhook's and ntfy's transport. No redirects (a receiver
//! that moved is an error to fix, not a place to send alerts to).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Connect, send and answer, all of it.
const DEADLINE: Duration = Duration::from_secs(15);

/// POSTs `body` with `headers` to `url`; the status, or why not.
pub async fn post(
    url: &str,
    headers: &[(&str, String)],
    content_type: &str,
    body: String,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<u16, String> {
    tokio::time::timeout(DEADLINE, post_once(url, headers, content_type, body, tls))
        .await
        .map_err(|_| format!("no answer within {} s", DEADLINE.as_secs()))?
}

async fn post_once(
    url: &str,
    headers: &[(&str, String)],
    content_type: &str,
    body: String,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<u16, String> {
    let uri: Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("`{url}` is not http:// or https://")),
    };
    let host = uri.host().ok_or_else(|| format!("`{url}` has no host"))?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let tcp = TcpStream::connect((bare_host.as_str(), port))
        .await
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    let mut request = Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "bulkhead")
        .header(hyper::header::CONTENT_TYPE, content_type);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("building the request: {e}"))?;
    let status = if https {
        let config =
            tls.ok_or_else(|| "no CA certificates to check the receiver with ([notify] tls_ca_file)".to_string())?;
        let name = rustls::pki_types::ServerName::try_from(bare_host).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("{host}:{port}: TLS: {e}"))?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
    .map_err(|e| format!("{host}:{port}: {e}"))?;
    Ok(status)
}

async fn send<T>(io: TokioIo<T>, request: Request<Full<Bytes>>) -> Result<u16, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    // Read (and drop) the answer so the receiver sees a clean exchange.
    let _ = response.into_body().collect().await;
    Ok(status)
}
