//! The UI's shared state and the extractors that decide who is asking: a signed-in
//! page visitor (else a redirect to the login), an API client (else 401, and 403
//! without the CSRF header on a change), a form post with the session's CSRF
//! token, or a setup/login form with the pre-session double-submit token.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::auth::{Flash, Hasher, RateLimiter, RatePolicy, SessionLimits, Sessions, PRE_COOKIE, SESSION_COOKIE};
use crate::backend::{Backend, BackendError};
use crate::security::{refusal, WebSettings};

/// Live-update refreshes send this header: they neither count as use of the
/// session nor take its flash message.
pub const LIVE_HEADER: &str = "x-bulkhead-live";
/// The JSON API's CSRF header.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Open event streams at most (each holds a broadcast receiver).
pub const MAX_EVENT_STREAMS: usize = 32;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The daemon.
    pub backend: Arc<dyn Backend>,
    /// Sessions, limiter, hasher.
    pub auth: Arc<AuthState>,
    /// Host allowlist.
    pub settings: Arc<WebSettings>,
    /// Permits for open `/events` streams.
    pub event_streams: Arc<Semaphore>,
    /// What a request may cost.
    pub limits: crate::Limits,
}

/// Authentication state, in memory.
pub struct AuthState {
    sessions: Mutex<Sessions>,
    limiter: Mutex<RateLimiter>,
    /// The password hasher.
    pub hasher: Hasher,
    /// Setup and password changes run one at a time (check, hash, store).
    pub password_change: tokio::sync::Mutex<()>,
    /// The password hash in force, as last read from (or written to) the
    /// daemon, and when.
    known_password: Mutex<Option<(Option<String>, Instant)>>,
}

impl AuthState {
    fn new() -> AuthState {
        AuthState {
            sessions: Mutex::new(Sessions::new(SessionLimits::default())),
            limiter: Mutex::new(RateLimiter::new(RatePolicy::default())),
            hasher: Hasher::default(),
            password_change: tokio::sync::Mutex::new(()),
            known_password: Mutex::new(None),
        }
    }

    /// Notes the password hash in force (just read from or written to the
    /// daemon).
    pub fn note_password(&self, hash: Option<String>) {
        *self
            .known_password
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((hash, Instant::now()));
    }

    fn known_password(&self) -> Option<(Option<String>, Instant)> {
        self.known_password
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The sessions (a poisoned lock is taken over: the map stays consistent
    /// whatever panicked while holding it).
    pub fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The login rate limiter.
    pub fn limiter(&self) -> MutexGuard<'_, RateLimiter> {
        self.limiter.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl AppState {
    /// Fresh state for `backend`.
    pub fn new(backend: Arc<dyn Backend>, settings: WebSettings, limits: crate::Limits) -> AppState {
        AppState {
            backend,
            auth: Arc::new(AuthState::new()),
            settings: Arc::new(settings),
            event_streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
            limits,
        }
    }

    /// The password hash in force: as known from at most
    /// [`crate::Limits::auth_recheck`] ago, else asked of the daemon (the
    /// homeowner may have run `bulkhead reset-password`). Visitors without a
    /// session ask this too, so a flood of them costs the daemon's event loop
    /// one question per interval, not one per request.
    pub async fn password_hash(&self) -> Result<Option<String>, BackendError> {
        if let Some((hash, at)) = self.auth.known_password() {
            if at.elapsed() < self.limits.auth_recheck {
                return Ok(hash);
            }
        }
        let record = self.backend.auth().await?;
        self.auth.note_password(record.password_hash.clone());
        Ok(record.password_hash)
    }

    /// [`Self::password_hash`]; when the daemon does not answer, what was known
    /// last, if anything.
    async fn password_in_force(&self) -> Option<Option<String>> {
        match self.password_hash().await {
            Ok(hash) => Some(hash),
            Err(_) => self.auth.known_password().map(|(hash, _)| hash),
        }
    }

    /// The session the request's cookie names, if it is live.
    pub async fn session(&self, headers: &HeaderMap, take_flash: bool) -> Option<SessionCtx> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let live = headers.contains_key(LIVE_HEADER);
        self.session_by_id(id, !live, take_flash && !live).await
    }

    /// The live session `id`; `touch` counts this as use. A session begun under
    /// another password than the one in force ends here.
    pub async fn session_by_id(&self, id: &str, touch: bool, take_flash: bool) -> Option<SessionCtx> {
        // Unknown ids cost no question to the daemon.
        let began_under = self
            .auth
            .sessions()
            .get(id, Instant::now(), false)?
            .password_hash()
            .to_string();
        if let Some(in_force) = self.password_in_force().await {
            if in_force.as_deref() != Some(began_under.as_str()) {
                self.auth.sessions().remove(id);
                return None;
            }
        }
        let mut sessions = self.auth.sessions();
        let s = sessions.get(id, Instant::now(), touch)?;
        Some(SessionCtx {
            id: id.to_string(),
            csrf: s.csrf.clone(),
            flash: if take_flash { s.take_flash() } else { None },
        })
    }

    /// Leaves a message for the session's next page.
    pub fn flash(&self, session_id: &str, flash: Flash) {
        if let Some(s) = self.auth.sessions().get(session_id, Instant::now(), false) {
            s.set_flash(flash);
        }
    }

    /// Where a visitor without a session goes: the login, or the setup while
    /// no password is set.
    pub async fn sign_in_redirect(&self) -> Response {
        match self.password_hash().await {
            Ok(None) => Redirect::to("/setup").into_response(),
            Ok(_) => Redirect::to("/login").into_response(),
            Err(e) => crate::pages::error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub struct SessionCtx {
    /// Its id (the cookie value).
    pub id: String,
    /// Its CSRF token.
    pub csrf: String,
    /// The message left for this page.
    pub flash: Option<Flash>,
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a cookie the pages never read from script.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64) -> HeaderValue {
    let v = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("bulkhead_invalid=; Max-Age=0"))
}

/// The session cookie for `id` (lives as long as the session may).
pub fn session_cookie(id: &str) -> HeaderValue {
    set_cookie(SESSION_COOKIE, id, SessionLimits::default().absolute.as_secs())
}

/// Clears the session cookie.
pub fn clear_session_cookie() -> HeaderValue {
    set_cookie(SESSION_COOKIE, "", 0)
}

/// The client's address (its connection's peer; unknown peers share one).
pub fn peer_ip(parts_extensions: &axum::http::Extensions) -> IpAddr {
    parts_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// A signed-in page visitor; without a session the page redirects to the login.
pub struct PageSession(pub SessionCtx);

impl FromRequestParts<AppState> for PageSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let take_flash = parts.method == Method::GET;
        match state.session(&parts.headers, take_flash).await {
            Some(s) => Ok(PageSession(s)),
            None => Err(state.sign_in_redirect().await),
        }
    }
}

/// A signed-in API client. Changes (anything but GET/HEAD) also need the
/// session's CSRF token in `X-CSRF-Token`.
pub struct ApiSession(pub SessionCtx);

impl FromRequestParts<AppState> for ApiSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path();
        let Some(s) = state.session(&parts.headers, false).await else {
            return Err(refusal(path, StatusCode::UNAUTHORIZED, "not signed in"));
        };
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let given = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !crate::auth::secrets_match(given, &s.csrf) {
                return Err(refusal(
                    path,
                    StatusCode::FORBIDDEN,
                    "forbidden: missing or wrong X-CSRF-Token header",
                ));
            }
        }
        Ok(ApiSession(s))
    }
}

/// A form that carries a CSRF token in its `csrf` field.
pub trait CsrfField {
    /// The token sent.
    fn csrf(&self) -> Option<&str>;
}

/// A form post from a signed-in page, with the session's CSRF token checked:
/// no session → the login; wrong or missing token → 403.
pub struct PageForm<T> {
    /// The session.
    pub session: SessionCtx,
    /// The fields.
    pub form: T,
}

impl<T> FromRequest<AppState> for PageForm<T>
where
    T: DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let PageSession(session) = PageSession::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let Form(form) = Form::<T>::from_request(req, state)
            .await
            .map_err(|e| crate::pages::error_page(StatusCode::BAD_REQUEST, &e.body_text()))?;
        if !crate::auth::secrets_match(form.csrf().unwrap_or(""), &session.csrf) {
            return Err(csrf_refused());
        }
        Ok(PageForm { session, form })
    }
}

/// A setup or login form, with the pre-session double-submit token checked
/// (the `bulkhead_pre` cookie must equal the form's `csrf` field).
pub struct PreForm<T> {
    /// The fields.
    pub form: T,
    /// The client's address.
    pub peer: IpAddr,
}

impl<T> FromRequest<AppState> for PreForm<T>
where
    T: DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let pre = cookie(req.headers(), PRE_COOKIE).unwrap_or("").to_string();
        let peer = peer_ip(req.extensions());
        let Form(form) = Form::<T>::from_request(req, state)
            .await
            .map_err(|e| crate::pages::error_page(StatusCode::BAD_REQUEST, &e.body_text()))?;
        if !crate::auth::secrets_match(form.csrf().unwrap_or(""), &pre) {
            return Err(csrf_refused());
        }
        Ok(PreForm { form, peer })
    }
}

fn csrf_refused() -> Response {
    crate::pages::error_page(
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this page. Go back, reload the page and try again.",
    )
}

/// The HTTP status for a backend error.
pub fn backend_status(e: &BackendError) -> StatusCode {
    match e {
        BackendError::NotFound(_) => StatusCode::NOT_FOUND,
        BackendError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        BackendError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The client's address, for the rate limiter.
pub struct PeerIp(pub IpAddr);

impl FromRequestParts<AppState> for PeerIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(peer_ip(&parts.extensions)))
    }
}

/// `Retry-After` in whole seconds, rounded up.
pub fn add_retry_after(r: &mut Response, wait: Duration) {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
}
