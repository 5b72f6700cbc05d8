//! The web UI's credentials: the setup token until a password is set, the
//! password hash, a reset.

use super::{done, refused, Harness};
use crate::control::{Request, Response};
use crate::store::Store;
use crate::testutil::default_config;

fn is_token(t: &str) -> bool {
    let groups: Vec<&str> = t.split('-').collect();
    groups.len() == 8
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

#[test]
fn the_setup_token_lives_until_a_password_is_set_and_returns_with_a_reset() {
    let dir = std::env::temp_dir().join(format!("bulkhead-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut h = Harness::with_store(default_config(), Store::open(&dir, 0).expect("store"));
    let Response::Auth {
        password_hash: None,
        setup_token: Some(token),
    } = h.state.handle(Request::Auth, 1)
    else {
        panic!("a new router has a token and no password")
    };
    assert!(is_token(&token), "{token}");
    let other = Harness::new(default_config());
    assert_ne!(other.state.setup_token(), Some(token.as_str()), "random");

    for bad in ["", "hunter2 hunter2", "plain", &format!("${}", "a".repeat(600))] {
        refused(h.state.handle(Request::SetPasswordHash { hash: bad.into() }, 2));
    }
    assert_eq!(h.state.setup_token(), Some(token.as_str()), "a refusal spends nothing");
    done(h.state.handle(Request::SetPasswordHash { hash: HASH.into() }, 2));
    assert_eq!(
        h.state.handle(Request::Auth, 3),
        Response::Auth {
            password_hash: Some(HASH.into()),
            setup_token: None
        }
    );
    drop(h);

    // A restart keeps the password, and makes no token.
    let mut h = Harness::with_store(default_config(), Store::open(&dir, 0).expect("store"));
    assert_eq!(h.state.setup_token(), None);
    assert_eq!(h.state.credentials.password_hash(), Some(HASH));

    done(h.state.handle(Request::ResetPassword, 4));
    let Response::Auth {
        password_hash: None,
        setup_token: Some(fresh),
    } = h.state.handle(Request::Auth, 5)
    else {
        panic!("a reset makes a token")
    };
    assert!(is_token(&fresh) && fresh != token);
    drop(h);
    let h = Harness::with_store(default_config(), Store::open(&dir, 0).expect("store"));
    assert_eq!(h.state.credentials.password_hash(), None, "the reset is on disk");
    let _ = std::fs::remove_dir_all(&dir);
}
