//! The walls every request passes, as middleware: security headers and
//! Server-Timing on every response; the Host allowlist (DNS rebinding: a page on
//! a foreign name that resolves to the router gets 421 before anything else);
//! the Origin / Sec-Fetch-Site check on every state-changing request.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::model::ErrorBody;

/// The Content-Security-Policy: our own script and style files only, nothing
/// inline, no frames, forms post only to us.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How the UI is reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebSettings {
    /// `Host` header values the UI answers (`192.168.1.1:8080`, `[fd00::1]:8080`,
    /// `router.lan:8080`; without a port, port 80 is meant). Anything else gets
    /// 421 Misdirected Request.
    pub allowed_hosts: Vec<String>,
}

impl WebSettings {
    /// Whether a request's `Host` value is one of ours.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.allowed_hosts.iter().any(|a| normalize_host(a) == host)
    }
}

/// Lower-case, with the port made explicit (80 when absent), a trailing dot on
/// the name dropped.
fn normalize_host(h: &str) -> String {
    let h = h.trim().to_ascii_lowercase();
    let (name, port) = match h.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, "")) => (format!("[{ip}]"), "80"),
            Some((ip, port)) => (format!("[{ip}]"), port.strip_prefix(':').unwrap_or("\u{0}")),
            None => (h.clone(), "\u{0}"),
        },
        None => match h.rsplit_once(':') {
            Some((name, port)) => (name.to_string(), port),
            None => (h.clone(), "80"),
        },
    };
    format!("{}:{port}", name.strip_suffix('.').unwrap_or(&name))
}

/// Whether the request is for the JSON API (errors as JSON).
pub fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// A refusal: JSON `{"error": ..}` on the API, plain text elsewhere.
pub fn refusal(path: &str, status: StatusCode, message: &str) -> Response {
    if is_api(path) {
        (
            status,
            axum::Json(ErrorBody {
                error: message.to_string(),
            }),
        )
            .into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message.to_string(),
        )
            .into_response()
    }
}

/// The request's host: its one `Host` header, else the URI's authority (an
/// absolute-form request line). `None` — refused — when the header is not
/// readable text, is sent twice, or names another host than the request line:
/// whatever the checks see must be what the client meant.
pub fn request_host(req: &Request) -> Option<String> {
    let mut headers = req.headers().get_all(header::HOST).iter();
    let from_header = match (headers.next(), headers.next()) {
        (Some(h), None) => Some(h.to_str().ok()?.to_string()),
        (None, _) => None,
        (Some(_), Some(_)) => return None,
    };
    let from_uri = req.uri().authority().map(|a| a.as_str().to_string());
    match (from_header, from_uri) {
        (Some(h), Some(a)) => (normalize_host(&h) == normalize_host(&a)).then_some(h),
        (h, a) => h.or(a),
    }
}

/// 421 for a `Host` not on the allowlist.
pub async fn host_allowlist(State(settings): State<Arc<WebSettings>>, req: Request, next: Next) -> Response {
    match request_host(&req) {
        Some(h) if settings.host_allowed(&h) => next.run(req).await,
        _ => refusal(
            req.uri().path(),
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected request: this host name is not one of the router's",
        ),
    }
}

/// Whether a state-changing request comes from our own pages (or from no page
/// at all, like curl): `Origin`, when sent, must be `http://<Host>`; without it,
/// `Sec-Fetch-Site`, when sent, must be `same-origin` or `none`.
pub fn same_origin(headers: &HeaderMap, host: &str) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        // The same host and port, however spelled (`:80` or none, case).
        return origin
            .strip_prefix("http://")
            .is_some_and(|o| !o.contains(['/', '@']) && normalize_host(o) == normalize_host(host));
    }
    match headers.get("sec-fetch-site").map(HeaderValue::as_bytes) {
        None | Some(b"same-origin" | b"none") => true,
        Some(_) => false,
    }
}

/// 403 for a state-changing request from another site.
pub async fn origin_check(req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let host = request_host(&req).unwrap_or_default();
        if !same_origin(req.headers(), &host) {
            return refusal(
                req.uri().path(),
                StatusCode::FORBIDDEN,
                "forbidden: this request came from another site",
            );
        }
    }
    next.run(req).await
}

/// Reads the request body whole, within [`crate::Limits`]: 413 when it is too
/// large, 408 when it does not arrive in time. Handlers then see it in memory.
pub async fn read_body(State(limits): State<crate::Limits>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if body.size_hint().exact() == Some(0) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let path = parts.uri.path().to_string();
    let too_large = || {
        refusal(
            &path,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the request body is too large (at most {} bytes)",
                limits.max_body_bytes
            ),
        )
    };
    if body.size_hint().lower() > limits.max_body_bytes as u64 {
        return too_large();
    }
    enum Unread {
        TooLarge,
        Broken,
    }
    let read = async {
        let mut data = Vec::new();
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|_| Unread::Broken)?;
            if data.len() + chunk.len() > limits.max_body_bytes {
                return Err(Unread::TooLarge);
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    };
    match tokio::time::timeout(limits.body_read_timeout, read).await {
        Ok(Ok(data)) => next.run(Request::from_parts(parts, Body::from(data))).await,
        Ok(Err(Unread::TooLarge)) => too_large(),
        Ok(Err(Unread::Broken)) => refusal(&path, StatusCode::BAD_REQUEST, "the request body could not be read"),
        Err(_) => refusal(
            &path,
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        ),
    }
}

/// Security headers and `Server-Timing: app;dur=<ms>` on every response.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let mut res = next.run(req).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let h = res.headers_mut();
    let fixed: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        h.insert(HeaderName::from_static("server-timing"), v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_for_listen_addresses() {
        let s = WebSettings {
            allowed_hosts: vec![
                "192.168.1.1:8080".into(),
                "localhost:8080".into(),
                "[fd00::1]:8080".into(),
                "127.0.0.1:80".into(),
                "localhost:80".into(),
            ],
        };
        for ok in [
            "192.168.1.1:8080",
            "LOCALHOST:8080",
            "[fd00::1]:8080",
            "[FD00::1]:8080",
            "127.0.0.1",
            "localhost",
            "localhost.:8080",
        ] {
            assert!(s.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "192.168.1.1",
            "192.168.1.1:8081",
            "[fd00::1]",
            "fd00::1:8080",
            "",
            "192.168.1.1:8080.evil.example",
            "[fd00::1]x8080",
        ] {
            assert!(!s.host_allowed(bad), "{bad}");
        }
        let named = WebSettings {
            allowed_hosts: vec!["router.lan:8080".into()],
        };
        assert!(named.host_allowed("Router.LAN:8080"));
    }

    #[test]
    fn the_host_is_one_readable_header_agreeing_with_the_request_line() {
        let r = |uri: &str, hosts: &[&[u8]]| {
            let mut b = Request::builder().uri(uri);
            for h in hosts {
                b = b.header(header::HOST, HeaderValue::from_bytes(h).expect("header"));
            }
            request_host(&b.body(axum::body::Body::empty()).expect("request"))
        };
        assert_eq!(r("/", &[b"192.168.1.1:8080"]).as_deref(), Some("192.168.1.1:8080"));
        assert_eq!(r("http://192.168.1.1:8080/", &[]).as_deref(), Some("192.168.1.1:8080"));
        assert_eq!(
            r("http://192.168.1.1:8080/", &[b"192.168.1.1:8080"]).as_deref(),
            Some("192.168.1.1:8080")
        );
        assert_eq!(r("/", &[]), None);
        // Unreadable, doubled, or not what the request line says.
        assert_eq!(r("http://192.168.1.1:8080/", &[b"\xffevil"]), None);
        assert_eq!(r("/", &[b"192.168.1.1:8080", b"evil.example"]), None);
        assert_eq!(r("http://evil.example/", &[b"192.168.1.1:8080"]), None);
        assert_eq!(r("http://192.168.1.1:8080/", &[b"evil.example"]), None);
    }

    #[test]
    fn origin_rules() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        let host = "192.168.1.1:8080";
        assert!(same_origin(&h(&[]), host));
        assert!(same_origin(&h(&[("origin", "http://192.168.1.1:8080")]), host));
        assert!(!same_origin(&h(&[("origin", "http://evil.example")]), host));
        assert!(!same_origin(&h(&[("origin", "https://192.168.1.1:8080")]), host));
        assert!(!same_origin(&h(&[("origin", "null")]), host));
        assert!(!same_origin(&h(&[("origin", "http://192.168.1.1:8080.evil")]), host));
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")]), host));
        assert!(same_origin(&h(&[("sec-fetch-site", "none")]), host));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")]), host));
        assert!(!same_origin(&h(&[("sec-fetch-site", "same-site")]), host));
        // The default port may be spelled or not; case does not matter.
        assert!(same_origin(&h(&[("origin", "http://localhost")]), "LOCALHOST:80"));
        assert!(same_origin(&h(&[("origin", "http://localhost:80")]), "localhost"));
        assert!(!same_origin(&h(&[("origin", "http://localhost:8080")]), "localhost"));
        assert!(!same_origin(&h(&[("origin", "http://x@192.168.1.1:8080")]), host));
        // Origin decides when both are present.
        assert!(!same_origin(
            &h(&[("origin", "http://evil.example"), ("sec-fetch-site", "same-origin")]),
            host
        ));
    }
}
