//! Who may change things: sessions in memory, CSRF tokens, password hashing
//! (argon2id, one hash at a time) and login rate limiting. The logic here is
//! functions of data and an explicit `now`, so the tests can move time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// The session cookie.
pub const SESSION_COOKIE: &str = "bulkhead_session";
/// The pre-session (setup and login forms) double-submit cookie.
pub const PRE_COOKIE: &str = "bulkhead_pre";
/// Passwords: at least this many characters…
pub const PASSWORD_MIN_CHARS: usize = 10;
/// …and at most this many bytes (argon2 takes any length; this bounds the work
/// an anonymous request can ask for).
pub const PASSWORD_MAX_BYTES: usize = 1024;

/// What went wrong in authentication plumbing (not "wrong password").
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The OS random source failed.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// argon2 refused (cannot happen with valid parameters).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The stored hash is not a valid PHC string.
    #[error("the stored password hash is not valid: {0}")]
    StoredHash(String),
    /// The hashing task died.
    #[error("the password hashing task failed")]
    Task(#[source] tokio::task::JoinError),
    /// Too many requests were waiting for the hasher.
    #[error("the password hasher is busy")]
    Busy,
}

/// 32 random bytes from the OS, hex-encoded (64 characters).
pub fn random_token() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn secrets_match(given: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Why a new password is not acceptable.
pub fn check_new_password(password: &str, confirm: Option<&str>) -> Result<(), &'static str> {
    if password.len() > PASSWORD_MAX_BYTES {
        return Err("The password is too long (at most 1024 bytes).");
    }
    if password.chars().count() < PASSWORD_MIN_CHARS {
        return Err("The password must be at least 10 characters long.");
    }
    if confirm.is_some_and(|c| c != password) {
        return Err("The two passwords differ.");
    }
    Ok(())
}

/// A one-shot message shown on the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Good news (else an error).
    pub ok: bool,
    /// The message.
    pub text: String,
}

impl Flash {
    /// Good news.
    pub fn ok(text: impl Into<String>) -> Flash {
        Flash {
            ok: true,
            text: text.into(),
        }
    }

    /// Something went wrong.
    pub fn error(text: impl Into<String>) -> Flash {
        Flash {
            ok: false,
            text: text.into(),
        }
    }
}

/// One signed-in browser or API client.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its CSRF token.
    pub csrf: String,
    created: Instant,
    last_used: Instant,
    flash: Option<Flash>,
    /// The password hash in force when it began: when the password changes
    /// (here, or `bulkhead reset-password` at the daemon), the session ends.
    password_hash: String,
}

/// Session bounds.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// At most this many sessions; the least recently used goes first.
    pub max: usize,
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub absolute: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max: 64,
            idle: Duration::from_secs(12 * 3600),
            absolute: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The sessions, in memory (a restart signs everyone out).
#[derive(Debug, Default)]
pub struct Sessions {
    map: HashMap<String, Session>,
    limits: SessionLimits,
}

impl Sessions {
    /// An empty store.
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions {
            map: HashMap::new(),
            limits,
        }
    }

    /// Starts a session under the password hash in force; returns its id (the
    /// cookie value) and CSRF token.
    pub fn create(&mut self, now: Instant, password_hash: &str) -> Result<(String, String), AuthError> {
        self.expire(now);
        while self.map.len() >= self.limits.max.max(1) {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.map.remove(&id),
                None => break,
            };
        }
        let id = random_token()?;
        let csrf = random_token()?;
        self.map.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                created: now,
                last_used: now,
                flash: None,
                password_hash: password_hash.to_string(),
            },
        );
        Ok((id, csrf))
    }

    /// The live session `id`; `touch` counts this as use (page refreshes made by
    /// the live-update script do not, so an open tab still times out).
    pub fn get(&mut self, id: &str, now: Instant, touch: bool) -> Option<&mut Session> {
        let limits = self.limits;
        let expired = self.map.get(id).map(|s| is_expired(s, limits, now))?;
        if expired {
            self.map.remove(id);
            return None;
        }
        let s = self.map.get_mut(id)?;
        if touch {
            s.last_used = now;
        }
        Some(s)
    }

    /// Ends one session.
    pub fn remove(&mut self, id: &str) {
        self.map.remove(id);
    }

    /// Ends every session (the password changed).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No sessions.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        let limits = self.limits;
        self.map.retain(|_, s| !is_expired(s, limits, now));
    }
}

fn is_expired(s: &Session, limits: SessionLimits, now: Instant) -> bool {
    now.saturating_duration_since(s.last_used) > limits.idle
        || now.saturating_duration_since(s.created) > limits.absolute
}

impl Session {
    /// Leaves a message for the next page.
    pub fn set_flash(&mut self, flash: Flash) {
        self.flash = Some(flash);
    }

    /// Takes the message left for this page.
    pub fn take_flash(&mut self) -> Option<Flash> {
        self.flash.take()
    }

    /// The password hash in force when the session began.
    pub fn password_hash(&self) -> &str {
        &self.password_hash
    }
}

/// Login throttling: per client (IPv6 by /64), a few free failures, then a
/// lockout that doubles with each further failure; and one global bucket of
/// attempts so many clients together cannot keep the hasher busy.
#[derive(Debug)]
pub struct RateLimiter {
    clients: HashMap<IpAddr, Failures>,
    max_clients: usize,
    bucket: f64,
    bucket_at: Option<Instant>,
    policy: RatePolicy,
}

/// The limiter's numbers.
#[derive(Debug, Clone, Copy)]
pub struct RatePolicy {
    /// Failures before the first lockout.
    pub free_failures: u32,
    /// The first lockout; each further failure doubles it.
    pub first_lockout: Duration,
    /// The longest lockout.
    pub max_lockout: Duration,
    /// A client's failures are forgotten after this long without one.
    pub forget_after: Duration,
    /// Clients remembered (the oldest is forgotten first).
    pub max_clients: usize,
    /// Attempts the global bucket holds.
    pub bucket_size: f64,
    /// Attempts added to it per second.
    pub bucket_refill_per_sec: f64,
}

impl Default for RatePolicy {
    fn default() -> Self {
        RatePolicy {
            free_failures: 5,
            first_lockout: Duration::from_secs(30),
            max_lockout: Duration::from_secs(3600),
            forget_after: Duration::from_secs(24 * 3600),
            max_clients: 256,
            bucket_size: 20.0,
            bucket_refill_per_sec: 0.5,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
    /// Attempts admitted and not judged yet.
    in_flight: u32,
}

/// How long a client waits while its one allowed attempt is being judged.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);

/// The client key: the address, or its /64 for IPv6 (one host has a whole /64).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

impl RateLimiter {
    /// A limiter with `policy`.
    pub fn new(policy: RatePolicy) -> RateLimiter {
        RateLimiter {
            clients: HashMap::new(),
            max_clients: policy.max_clients.max(1),
            bucket: policy.bucket_size,
            bucket_at: None,
            policy,
        }
    }

    /// May `ip` try a password now? `Err(wait)` if not. An allowed attempt
    /// takes one from the global bucket and is in flight until
    /// [`Self::failure`], [`Self::success`] or [`Self::finish`]: beyond its free
    /// failures a client's attempts go one at a time, so sending many at once,
    /// before the first is judged, gains nothing.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = client_key(ip);
        let policy = self.policy;
        if let Some(f) = self.clients.get(&key) {
            if let Some(until) = f.locked_until.filter(|u| *u > now) {
                return Err(until - now);
            }
            let count = if now.saturating_duration_since(f.last) >= policy.forget_after {
                0
            } else {
                f.count
            };
            if f.in_flight > 0 && count.saturating_add(f.in_flight) >= policy.free_failures {
                return Err(IN_FLIGHT_WAIT);
            }
        }
        self.refill(now);
        if self.bucket < 1.0 {
            let wait = (1.0 - self.bucket) / self.policy.bucket_refill_per_sec.max(1e-6);
            return Err(Duration::from_secs_f64(wait.min(3600.0)));
        }
        self.bucket -= 1.0;
        let f = self.client(key, now);
        f.in_flight = f.in_flight.saturating_add(1);
        Ok(())
    }

    fn refill(&mut self, now: Instant) {
        if let Some(at) = self.bucket_at {
            let secs = now.saturating_duration_since(at).as_secs_f64();
            self.bucket = (self.bucket + secs * self.policy.bucket_refill_per_sec).min(self.policy.bucket_size);
        }
        self.bucket_at = Some(now);
    }

    /// The record of client `key`, made if new (the table stays bounded: the
    /// forgotten go first, then the oldest with no attempt in flight).
    fn client(&mut self, key: IpAddr, now: Instant) -> &mut Failures {
        let policy = self.policy;
        if !self.clients.contains_key(&key) && self.clients.len() >= self.max_clients {
            self.clients
                .retain(|_, f| f.in_flight > 0 || now.saturating_duration_since(f.last) < policy.forget_after);
            if self.clients.len() >= self.max_clients {
                let oldest = self
                    .clients
                    .iter()
                    .min_by_key(|(_, f)| (f.in_flight > 0, f.last))
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.clients.remove(&k);
                }
            }
        }
        self.clients.entry(key).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
            in_flight: 0,
        })
    }

    /// `ip` gave a wrong password (or setup token).
    pub fn failure(&mut self, ip: IpAddr, now: Instant) {
        let policy = self.policy;
        let f = self.client(client_key(ip), now);
        f.in_flight = f.in_flight.saturating_sub(1);
        if now.saturating_duration_since(f.last) >= policy.forget_after {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count >= policy.free_failures {
            let doublings = (f.count - policy.free_failures).min(20);
            let lockout = policy
                .first_lockout
                .saturating_mul(1u32 << doublings)
                .min(policy.max_lockout);
            f.locked_until = Some(now + lockout);
        }
    }

    /// `ip` signed in: its failures are forgotten.
    pub fn success(&mut self, ip: IpAddr) {
        let key = client_key(ip);
        if let Some(f) = self.clients.get_mut(&key) {
            f.in_flight = f.in_flight.saturating_sub(1);
            f.count = 0;
            f.locked_until = None;
            if f.in_flight == 0 {
                self.clients.remove(&key);
            }
        }
    }

    /// An attempt of `ip` ended without a verdict on the password (the daemon
    /// did not answer, the new password was not acceptable, the request went
    /// away).
    pub fn finish(&mut self, ip: IpAddr) {
        let key = client_key(ip);
        if let Some(f) = self.clients.get_mut(&key) {
            f.in_flight = f.in_flight.saturating_sub(1);
            if f.in_flight == 0 && f.count == 0 {
                self.clients.remove(&key);
            }
        }
    }
}

/// argon2id hashing and verifying, one at a time, off the async threads: a
/// hash takes 19 MiB and tens of milliseconds (more on a router), so the
/// semaphore bounds both memory and CPU whatever the number of requests.
#[derive(Debug, Clone)]
pub struct Hasher {
    permit: Arc<Semaphore>,
    wait: Duration,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            permit: Arc::new(Semaphore::new(1)),
            wait: Duration::from_secs(20),
        }
    }
}

impl Hasher {
    /// An argon2id PHC string for `password` (OWASP parameters: m=19 MiB, t=2, p=1).
    pub async fn hash(&self, password: String) -> Result<String, AuthError> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| AuthError::Hash(e.to_string()))
        })
        .await
    }

    /// Whether `password` matches the PHC string `stored` (its own parameters).
    pub async fn verify(&self, password: String, stored: String) -> Result<bool, AuthError> {
        self.run(move || {
            let parsed = PasswordHash::new(&stored).map_err(|e| AuthError::StoredHash(e.to_string()))?;
            Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let permit = tokio::time::timeout(self.wait, self.permit.clone().acquire_owned())
            .await
            .map_err(|_| AuthError::Busy)?
            .map_err(|_| AuthError::Busy)?;
        // The permit moves into the task: if the request goes away, the hash
        // still finishes before the next one starts.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(AuthError::Task)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let a = random_token().expect("random");
        let b = random_token().expect("random");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn secrets_compare() {
        assert!(secrets_match("abc", "abc"));
        assert!(!secrets_match("abd", "abc"));
        assert!(!secrets_match("ab", "abc"));
        assert!(!secrets_match("", ""));
    }

    #[test]
    fn new_passwords_are_checked() {
        assert!(check_new_password("correct horse", Some("correct horse")).is_ok());
        assert!(check_new_password("short", None).is_err());
        assert!(check_new_password("ÄÖÜäöüßÄÖÜ", None).is_ok(), "characters, not bytes");
        assert!(check_new_password("correct horse", Some("correct house")).is_err());
        assert!(check_new_password(&"x".repeat(1025), None).is_err());
        assert!(check_new_password(&"x".repeat(1024), None).is_ok());
    }

    #[test]
    fn sessions_expire_idle_and_absolute() {
        let t0 = Instant::now();
        let mut s = Sessions::new(SessionLimits::default());
        let (id, csrf) = s.create(t0, "$h").expect("session");
        assert_eq!(s.get(&id, t0, true).map(|x| x.csrf.clone()), Some(csrf));
        // Used every 11 hours: alive for almost 7 days, then gone.
        let mut t = t0;
        for _ in 0..15 {
            t += Duration::from_secs(11 * 3600);
            assert!(s.get(&id, t, true).is_some());
        }
        t += Duration::from_secs(11 * 3600);
        assert!(s.get(&id, t, true).is_none(), "absolute timeout");
        let (id, _) = s.create(t, "$h").expect("session");
        assert!(
            s.get(&id, t + Duration::from_secs(12 * 3600 + 1), true).is_none(),
            "idle timeout"
        );
        // Untouched reads do not keep a session alive.
        let (id, _) = s.create(t, "$h").expect("session");
        assert!(s.get(&id, t + Duration::from_secs(6 * 3600), false).is_some());
        assert!(s.get(&id, t + Duration::from_secs(12 * 3600 + 1), false).is_none());
        assert!(s.get("nope", t, true).is_none());
    }

    #[test]
    fn sessions_are_bounded_oldest_evicted() {
        let t0 = Instant::now();
        let mut s = Sessions::new(SessionLimits {
            max: 3,
            ..SessionLimits::default()
        });
        let ids: Vec<String> = (0..3)
            .map(|i| s.create(t0 + Duration::from_secs(i), "$h").expect("session").0)
            .collect();
        // The first is used again, so the second is now the least recently used.
        assert!(s.get(&ids[0], t0 + Duration::from_secs(10), true).is_some());
        let (new, _) = s.create(t0 + Duration::from_secs(11), "$h").expect("session");
        assert_eq!(s.len(), 3);
        let now = t0 + Duration::from_secs(12);
        assert!(s.get(&ids[0], now, false).is_some());
        assert!(s.get(&ids[1], now, false).is_none());
        assert!(s.get(&ids[2], now, false).is_some());
        assert!(s.get(&new, now, false).is_some());
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn flash_is_taken_once() {
        let t0 = Instant::now();
        let mut s = Sessions::new(SessionLimits::default());
        let (id, _) = s.create(t0, "$h").expect("session");
        s.get(&id, t0, true).expect("live").set_flash(Flash::ok("Renamed"));
        assert_eq!(
            s.get(&id, t0, true).and_then(Session::take_flash),
            Some(Flash::ok("Renamed"))
        );
        assert_eq!(s.get(&id, t0, true).and_then(Session::take_flash), None);
    }

    #[test]
    fn lockout_after_five_failures_doubles() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.168.1.50".parse().expect("ip");
        let other: IpAddr = "192.168.1.51".parse().expect("ip");
        let mut r = RateLimiter::new(RatePolicy::default());
        for _ in 0..5 {
            assert!(r.admit(ip, t0).is_ok());
            r.failure(ip, t0);
        }
        assert_eq!(r.admit(ip, t0), Err(Duration::from_secs(30)));
        assert!(r.admit(other, t0).is_ok(), "other clients are not locked out");
        let t1 = t0 + Duration::from_secs(31);
        assert!(r.admit(ip, t1).is_ok());
        r.failure(ip, t1);
        assert_eq!(r.admit(ip, t1), Err(Duration::from_secs(60)));
        r.success(ip);
        assert!(r.admit(ip, t1).is_ok(), "a success forgets the failures");
    }

    #[test]
    fn attempts_sent_at_once_count_before_they_are_judged() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.168.1.50".parse().expect("ip");
        let mut r = RateLimiter::new(RatePolicy::default());
        // Five free attempts may be in flight together; the sixth waits.
        for _ in 0..5 {
            assert!(r.admit(ip, t0).is_ok());
        }
        assert_eq!(r.admit(ip, t0), Err(IN_FLIGHT_WAIT));
        assert!(
            r.admit("192.168.1.51".parse().expect("ip"), t0).is_ok(),
            "others are not held up"
        );
        // One ends without a verdict: room for one more.
        r.finish(ip);
        assert!(r.admit(ip, t0).is_ok());
        assert!(r.admit(ip, t0).is_err());
        // All five fail: locked out, as if sent one by one.
        for _ in 0..5 {
            r.failure(ip, t0);
        }
        assert_eq!(r.admit(ip, t0), Err(Duration::from_secs(30)));
        // After the lockout, one at a time.
        let t1 = t0 + Duration::from_secs(31);
        assert!(r.admit(ip, t1).is_ok());
        assert_eq!(r.admit(ip, t1), Err(IN_FLIGHT_WAIT));
        r.success(ip);
        assert!(!r.clients.contains_key(&ip), "a success forgets the client");
        assert!(r.admit(ip, t1).is_ok());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_slash_64() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RatePolicy::default());
        for i in 0..5 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().expect("ip");
            r.failure(ip, t0);
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        assert!(r.admit(same_64, t0).is_err());
        let other_64: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert!(r.admit(other_64, t0).is_ok());
    }

    #[test]
    fn global_bucket_limits_many_clients() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RatePolicy::default());
        for i in 0..20u8 {
            assert!(r.admit(IpAddr::from([10, 0, 0, i]), t0).is_ok());
        }
        let wait = r.admit(IpAddr::from([10, 0, 1, 1]), t0).expect_err("bucket empty");
        assert_eq!(wait, Duration::from_secs(2));
        assert!(r
            .admit(IpAddr::from([10, 0, 1, 1]), t0 + Duration::from_secs(2))
            .is_ok());
    }

    #[test]
    fn the_client_table_is_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RatePolicy {
            max_clients: 4,
            bucket_size: 1000.0,
            ..RatePolicy::default()
        });
        for i in 0..10u8 {
            for _ in 0..5 {
                r.failure(IpAddr::from([10, 0, 0, i]), t0 + Duration::from_secs(u64::from(i)));
            }
        }
        assert!(r.clients.len() <= 4);
        assert!(r
            .admit(IpAddr::from([10, 0, 0, 9]), t0 + Duration::from_secs(10))
            .is_err());
    }

    #[tokio::test]
    async fn hashes_verify() {
        let h = Hasher::default();
        let phc = h.hash("correct horse battery".into()).await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(h
            .verify("correct horse battery".into(), phc.clone())
            .await
            .expect("verify"));
        assert!(!h.verify("wrong horse battery".into(), phc).await.expect("verify"));
        assert!(h.verify("x".into(), "not a hash".into()).await.is_err());
    }
}
