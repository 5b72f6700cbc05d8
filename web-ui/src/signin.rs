//! Setting the password, signing in and out, changing the password: the steps
//! shared by the forms and the JSON API. Each attempt passes the rate limiter
//! first; the setup token and the password hash come from the daemon.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::app::{backend_status, AppState};
use crate::auth::{check_new_password, secrets_match, AuthError, PASSWORD_MAX_BYTES};
use crate::backend::BackendError;

/// Why a sign-in step did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Too many attempts: wait this long.
    #[error("Too many attempts. Try again in {} seconds.", .0.as_secs().max(1))]
    Limited(Duration),
    /// The password is wrong.
    #[error("That password is not right.")]
    WrongPassword,
    /// The current password (for a change) is wrong.
    #[error("The current password is not right.")]
    WrongCurrentPassword,
    /// The setup token is wrong.
    #[error("That setup token is not right. `bulkhead setup-token` shows it.")]
    WrongToken,
    /// No password is set yet: set up first.
    #[error("No password is set yet: set one up first.")]
    NotSetUp,
    /// A password is set already: setup is over.
    #[error("The password is set already; sign in instead.")]
    AlreadySetUp,
    /// The new password is not acceptable.
    #[error("{0}")]
    Weak(&'static str),
    /// The daemon did not answer.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Hashing or randomness failed.
    #[error("{0}")]
    Internal(#[from] AuthError),
}

impl SignInError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            SignInError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            SignInError::WrongPassword => StatusCode::UNAUTHORIZED,
            SignInError::WrongCurrentPassword | SignInError::WrongToken => StatusCode::FORBIDDEN,
            SignInError::NotSetUp | SignInError::AlreadySetUp => StatusCode::FORBIDDEN,
            SignInError::Weak(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SignInError::Backend(e) => backend_status(e),
            SignInError::Internal(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A sign-in attempt the rate limiter let through. It ends as a failure, a
/// success, or — dropped on any other way out — neither.
struct Attempt<'a> {
    st: &'a AppState,
    peer: IpAddr,
    open: bool,
}

impl Attempt<'_> {
    /// The password or token was wrong.
    fn failed(mut self, e: SignInError) -> SignInError {
        self.open = false;
        self.st.auth.limiter().failure(self.peer, Instant::now());
        e
    }

    /// The password or token was right.
    fn succeeded(mut self) {
        self.open = false;
        self.st.auth.limiter().success(self.peer);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.open {
            self.st.auth.limiter().finish(self.peer);
        }
    }
}

fn admit(st: &AppState, peer: IpAddr) -> Result<Attempt<'_>, SignInError> {
    st.auth
        .limiter()
        .admit(peer, Instant::now())
        .map_err(SignInError::Limited)?;
    Ok(Attempt { st, peer, open: true })
}

/// A new session under `password_hash`, now the one in force.
fn new_session(st: &AppState, password_hash: &str) -> Result<(String, String), SignInError> {
    st.auth.note_password(Some(password_hash.to_string()));
    Ok(st.auth.sessions().create(Instant::now(), password_hash)?)
}

/// The first visit: checks the setup token, sets the password, signs in.
/// Returns the new session's id and CSRF token.
pub async fn setup(
    st: &AppState,
    peer: IpAddr,
    token: &str,
    password: String,
) -> Result<(String, String), SignInError> {
    let attempt = admit(st, peer)?;
    let _one_at_a_time = st.auth.password_change.lock().await;
    let record = st.backend.auth().await?;
    if record.password_hash.is_some() {
        return Err(SignInError::AlreadySetUp);
    }
    let Some(expected) = record.setup_token else {
        return Err(SignInError::AlreadySetUp);
    };
    if !secrets_match(token.trim(), &expected) {
        return Err(attempt.failed(SignInError::WrongToken));
    }
    check_new_password(&password, None).map_err(SignInError::Weak)?;
    let hash = st.auth.hasher.hash(password).await?;
    st.backend.set_password_hash(hash.clone()).await?;
    attempt.succeeded();
    st.auth.sessions().clear();
    new_session(st, &hash)
}

/// Signs in with the password.
pub async fn login(st: &AppState, peer: IpAddr, password: String) -> Result<(String, String), SignInError> {
    let attempt = admit(st, peer)?;
    let record = st.backend.auth().await?;
    let Some(stored) = record.password_hash else {
        return Err(SignInError::NotSetUp);
    };
    if password.len() > PASSWORD_MAX_BYTES || !st.auth.hasher.verify(password, stored.clone()).await? {
        return Err(attempt.failed(SignInError::WrongPassword));
    }
    attempt.succeeded();
    new_session(st, &stored)
}

/// Changes the password: every session ends, and the one asking gets a new one.
pub async fn change_password(
    st: &AppState,
    peer: IpAddr,
    current: &str,
    password: String,
) -> Result<(String, String), SignInError> {
    let attempt = admit(st, peer)?;
    check_new_password(&password, None).map_err(SignInError::Weak)?;
    let _one_at_a_time = st.auth.password_change.lock().await;
    let record = st.backend.auth().await?;
    let Some(stored) = record.password_hash else {
        return Err(SignInError::NotSetUp);
    };
    if current.len() > PASSWORD_MAX_BYTES || !st.auth.hasher.verify(current.to_string(), stored).await? {
        return Err(attempt.failed(SignInError::WrongCurrentPassword));
    }
    let hash = st.auth.hasher.hash(password).await?;
    st.backend.set_password_hash(hash.clone()).await?;
    attempt.succeeded();
    st.auth.sessions().clear();
    new_session(st, &hash)
}

/// Ends one session.
pub fn logout(st: &AppState, session_id: &str) {
    st.auth.sessions().remove(session_id);
}
