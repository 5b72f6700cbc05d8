//! The web UI's credentials: the password hash (argon2id PHC string, opaque
//! here: the UI hashes and checks) and, while none is set, the one-time setup
//! token that lets the first visitor set one (printed at start, `bulkhead
//! setup-token`). The hash lives in the store; the token only in memory.

use crate::control::Response;
use crate::firewall::error_chain;
use crate::store::{Store, StoreError, WEB_PASSWORD_HASH};

/// The longest password hash accepted (an argon2id PHC string is ~100 bytes).
const MAX_PASSWORD_HASH: usize = 512;

/// A fresh one-time setup token: 128 bits from the OS, as eight groups of four
/// lower-case hex digits (`3f9a-0c1b-…`), easy to read off a console and type.
/// None (logged) if the OS has no randomness to give.
fn new_setup_token() -> Option<String> {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    if let Err(e) = rand_core::OsRng.try_fill_bytes(&mut bytes) {
        tracing::error!(error = %e, "no randomness for the web UI setup token; restart to try again");
        return None;
    }
    let hex: Vec<String> = bytes.chunks(2).map(|c| format!("{:02x}{:02x}", c[0], c[1])).collect();
    Some(hex.join("-"))
}

/// The password hash, or the setup token while there is none.
pub(super) struct WebCredentials {
    password_hash: Option<String>,
    setup_token: Option<String>,
}

impl WebCredentials {
    /// The stored hash; a new setup token if there is none.
    pub(super) fn load(store: &Store) -> Result<Self, StoreError> {
        let password_hash = store.setting(WEB_PASSWORD_HASH)?;
        let setup_token = if password_hash.is_none() {
            new_setup_token()
        } else {
            None
        };
        Ok(WebCredentials {
            password_hash,
            setup_token,
        })
    }

    /// What the UI checks sign-ins and setup against.
    pub(super) fn auth(&self) -> Response {
        Response::Auth {
            password_hash: self.password_hash.clone(),
            setup_token: self.setup_token.clone(),
        }
    }

    /// The hash in force, if any.
    #[cfg(test)]
    pub(super) fn password_hash(&self) -> Option<&str> {
        self.password_hash.as_deref()
    }

    /// The one-time setup token, while no password is set.
    pub(super) fn setup_token(&self) -> Option<&str> {
        self.setup_token.as_deref()
    }

    /// Stores the new password hash (durably) and spends the setup token. The
    /// hash is checked only for being a PHC string of sane size.
    pub(super) fn set_password_hash(&mut self, store: &mut Store, hash: String) -> Response {
        let phc_like =
            hash.starts_with('$') && hash.len() <= MAX_PASSWORD_HASH && hash.bytes().all(|b| b.is_ascii_graphic());
        if !phc_like {
            return Response::Error {
                message: "not a password hash (expected an argon2id PHC string)".into(),
            };
        }
        if let Err(e) = store.set_setting(WEB_PASSWORD_HASH, Some(&hash)) {
            return Response::Error {
                message: format!("not saved: {}", error_chain(&e)),
            };
        }
        self.password_hash = Some(hash);
        self.setup_token = None;
        tracing::info!("web UI password set");
        Response::Done {
            message: "web UI password set".into(),
        }
    }

    /// `bulkhead reset-password`: forgets the hash and makes a new setup token.
    pub(super) fn reset(&mut self, store: &mut Store) -> Response {
        if let Err(e) = store.set_setting(WEB_PASSWORD_HASH, None) {
            return Response::Error {
                message: format!("not saved: {}", error_chain(&e)),
            };
        }
        self.password_hash = None;
        self.setup_token = new_setup_token();
        tracing::info!("web UI password forgotten; a new setup token was made");
        Response::Done {
            message: "web UI password forgotten: set a new one in the web UI with the setup token".into(),
        }
    }
}
