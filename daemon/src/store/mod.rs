//! SQLite store: devices and their addresses, with versioned migrations.
//!
//! WAL mode with `synchronous = NORMAL`... except that a homeowner's decision must
//! survive a power cut, so those writes use FULL sync for their commit. Last-seen
//! times are buffered and written at most once per `SEEN_FLUSH_SECS`, so steady
//! traffic does not wear a router's flash.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::alerts::{Alert, AlertFacts, AlertKind, IdentitySuggestion};
use crate::config::{MacAddr, SegmentId, ZoneId};
use crate::discovery::dhcp::Lease;
use crate::inventory::{Device, UnixTime};

/// How often buffered last-seen times are written.
pub const SEEN_FLUSH_SECS: i64 = 60;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database error while {doing}")]
    Sqlite {
        /// What we were doing.
        doing: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The state directory could not be created.
    #[error("cannot create state directory {path}")]
    Dir {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file was written by a newer Bulkhead.
    #[error("database schema version {found} is newer than this Bulkhead understands ({known})")]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Newest known.
        known: i64,
    },
    /// SQLite's own check found the file damaged.
    #[error("the database file is damaged: {0}")]
    Damaged(String),
}

impl StoreError {
    /// The file itself is damaged (not a database, corrupt pages, a failed
    /// integrity check), as opposed to a disk or permission problem or a
    /// newer schema, which moving the file aside would not mend.
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Damaged(_) => true,
            StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ),
            _ => false,
        }
    }
}

/// What [`Store::open_or_recover`] did with a damaged file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Why the file was taken for damaged.
    pub why: String,
    /// Where the damaged file was kept (for a person, or a tool, to read).
    pub kept_as: Option<PathBuf>,
    /// Devices read back from it into the new database.
    pub salvaged: usize,
    /// No new file could be made either: the store lives in memory only.
    pub in_memory: bool,
}

fn sql(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { doing, source }
}

/// An error and its causes, in one line.
fn error_text(e: &StoreError) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The devices that can still be read from a damaged file (read-only, no
/// migration): all of them when the devices table and its addresses read
/// whole, none when they do not.
fn salvage_devices(path: &Path) -> Vec<Device> {
    let Ok(conn) = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return Vec::new();
    };
    let store = Store {
        conn,
        pending_seen: BTreeMap::new(),
        last_flush: 0,
        unsaved: BTreeSet::new(),
    };
    store.load_devices().unwrap_or_default()
}

/// Migrations, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: devices and addresses.
    "CREATE TABLE devices (
        mac TEXT PRIMARY KEY,
        name TEXT,
        zone TEXT,
        zone_set_by_user INTEGER NOT NULL DEFAULT 0,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
     );
     CREATE TABLE addresses (
        mac TEXT NOT NULL REFERENCES devices(mac) ON DELETE CASCADE,
        ip TEXT NOT NULL UNIQUE,
        family INTEGER NOT NULL,
        first_seen INTEGER NOT NULL
     );
     CREATE INDEX addresses_mac ON addresses(mac);",
    // 2: discovery: evidence on devices, DHCP leases, alerts, identity suggestions.
    "ALTER TABLE devices ADD COLUMN evidence TEXT;
     CREATE TABLE leases (
        segment TEXT NOT NULL,
        mac TEXT NOT NULL,
        client_id BLOB,
        ip TEXT NOT NULL,
        expires INTEGER NOT NULL,
        hostname TEXT,
        PRIMARY KEY (segment, ip)
     );
     CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        mac TEXT,
        message TEXT NOT NULL
     );
     CREATE TABLE identity_suggestions (
        new_mac TEXT NOT NULL,
        known_mac TEXT NOT NULL,
        at INTEGER NOT NULL,
        reasons TEXT NOT NULL,
        accepted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (new_mac, known_mac)
     );",
    // 3: the web UI (issue 5): homeowner's block and tunnel choice per device
    // (tunnel_choice NULL: as the policy says; 1 through; 0 never), acknowledged
    // alerts (and an index for the age-based trim), and a key/value settings
    // table (the web UI's password hash).
    "ALTER TABLE devices ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN tunnel_choice INTEGER;
     ALTER TABLE alerts ADD COLUMN acknowledged INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX alerts_at ON alerts(at);
     CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
     );",
    // 4: storms (issue 16): an alert that happens again within its kind's
    // dedup window counts up instead of being raised again; devices the
    // homeowner watches (told when they go offline and come back).
    "ALTER TABLE alerts ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE alerts ADD COLUMN last_at INTEGER;
     ALTER TABLE devices ADD COLUMN watched INTEGER NOT NULL DEFAULT 0;",
    // 5: alerts as data (issue 18): the facts an alert's sentence is
    // rendered from (JSON, NULL when it has none), so it names the device as
    // it is called when read.
    "ALTER TABLE alerts ADD COLUMN facts TEXT;",
];

/// An alert's facts as stored: JSON, or NULL when it has none.
fn facts_json(facts: &AlertFacts) -> Option<String> {
    (*facts != AlertFacts::default())
        .then(|| serde_json::to_string(facts).ok())
        .flatten()
}

/// Alerts kept; older ones are deleted as new ones arrive.
pub const MAX_ALERTS: i64 = 1000;

/// Alerts older than this are deleted (as new ones arrive, and by
/// [`Store::prune_alerts`]).
pub const ALERT_MAX_AGE_SECS: i64 = 30 * 24 * 3600;

/// The settings key of the web UI's password hash.
pub const WEB_PASSWORD_HASH: &str = "web_password_hash";

/// The store.
pub struct Store {
    conn: Connection,
    pending_seen: BTreeMap<MacAddr, UnixTime>,
    last_flush: UnixTime,
    /// Devices whose last write failed (disk full, a damaged file): in force
    /// and in memory, written again by [`Store::retry_unsaved`].
    unsaved: BTreeSet<MacAddr>,
}

impl Store {
    /// Opens (creating if needed) `state_dir/bulkhead.db` and migrates it.
    pub fn open(state_dir: &Path, now: UnixTime) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            path: state_dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(state_dir.join("bulkhead.db")).map_err(sql("opening the database"))?;
        Self::with_connection(conn, now)
    }

    /// Opens the store; a damaged file (not a database, corrupt pages, a
    /// failed quick check) does not stop the router: the devices that can
    /// still be read are read, the file is kept aside as
    /// `bulkhead.db.damaged-<time>` (with its WAL), and a new database gets
    /// what was read. When not even a new file can be made, the store lives
    /// in memory (decisions in force, lost at the next restart) and says so.
    /// Other errors (no such directory, a newer schema) stay errors.
    pub fn open_or_recover(state_dir: &Path, now: UnixTime) -> Result<(Store, Option<Recovery>), StoreError> {
        let damage = match Store::open(state_dir, now).and_then(|s| s.quick_check().map(|()| s)) {
            Ok(s) => return Ok((s, None)),
            Err(e) if e.is_damage() => e,
            Err(e) => return Err(e),
        };
        let why = error_text(&damage);
        let path = state_dir.join("bulkhead.db");
        let salvaged = salvage_devices(&path);
        let kept = state_dir.join(format!("bulkhead.db.damaged-{now}"));
        let mut kept_as = None;
        if std::fs::rename(&path, &kept).is_ok() {
            for ext in ["-wal", "-shm"] {
                let from = state_dir.join(format!("bulkhead.db{ext}"));
                if from.exists() {
                    let _ = std::fs::rename(&from, state_dir.join(format!("bulkhead.db.damaged-{now}{ext}")));
                }
            }
            kept_as = Some(kept);
        }
        let (mut store, in_memory) = match kept_as.as_ref().map(|_| Store::open(state_dir, now)) {
            Some(Ok(s)) => (s, false),
            _ => (Store::in_memory(now)?, true),
        };
        let mut written = 0;
        for d in &salvaged {
            if store.save_device(d).is_ok() {
                written += 1;
            }
        }
        tracing::error!(%why, salvaged = written, kept_as = ?kept_as, in_memory, "the device database was damaged");
        Ok((
            store,
            Some(Recovery {
                why,
                kept_as,
                salvaged: written,
                in_memory,
            }),
        ))
    }

    /// SQLite's quick check of the whole file.
    fn quick_check(&self) -> Result<(), StoreError> {
        let verdict: String = self
            .conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(sql("checking the database"))?;
        if verdict == "ok" {
            Ok(())
        } else {
            Err(StoreError::Damaged(verdict.replace('\n', "; ")))
        }
    }

    /// An in-memory store (tests).
    pub fn in_memory(now: UnixTime) -> Result<Store, StoreError> {
        Self::with_connection(Connection::open_in_memory().map_err(sql("opening the database"))?, now)
    }

    fn with_connection(mut conn: Connection, now: UnixTime) -> Result<Store, StoreError> {
        // WAL: readers never block the writer and a crash mid-write loses nothing
        // committed. NORMAL sync is safe in WAL (no corruption); FULL is set per
        // decision below where durability across power loss matters.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql("setting synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql("enabling foreign keys"))?;
        migrate(&mut conn)?;
        Ok(Store {
            conn,
            pending_seen: BTreeMap::new(),
            last_flush: now,
            unsaved: BTreeSet::new(),
        })
    }

    /// Every device with its addresses.
    pub fn load_devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT mac, name, zone, zone_set_by_user, first_seen, last_seen, evidence, blocked, tunnel_choice,
                    watched
                 FROM devices ORDER BY mac",
            )
            .map_err(sql("reading devices"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, bool>(7)?,
                    r.get::<_, Option<bool>>(8)?,
                    r.get::<_, bool>(9)?,
                ))
            })
            .map_err(sql("reading devices"))?;
        let mut devices = BTreeMap::new();
        for row in rows {
            let (mac, name, zone, by_user, first, last, evidence, blocked, tunnel_choice, watched) =
                row.map_err(sql("reading devices"))?;
            // A row we cannot parse is skipped with a warning rather than stopping
            // the router from starting.
            let Ok(mac) = mac.parse::<MacAddr>() else {
                tracing::warn!(%mac, "skipping device with an unreadable MAC in the store");
                continue;
            };
            // One column: the homeowner's zone, else the zone a rule placed
            // the device in (see `Device::placed_zone`).
            let zone = zone.and_then(|z| ZoneId::new(&z).ok());
            let (user_zone, placed_zone) = if by_user { (zone, None) } else { (None, zone) };
            devices.insert(
                mac,
                Device {
                    mac,
                    name,
                    user_zone,
                    addresses: Default::default(),
                    first_seen: first,
                    last_seen: last,
                    // Evidence that no longer parses is dropped, not fatal: it
                    // is re-learned from the next packet.
                    evidence: evidence.and_then(|e| serde_json::from_str(&e).ok()).unwrap_or_default(),
                    blocked,
                    tunnel_choice,
                    watched,
                    placed_zone,
                    // Read from the bridge again, never stored.
                    ports: Vec::new(),
                },
            );
        }
        let mut stmt = self
            .conn
            .prepare("SELECT mac, ip FROM addresses")
            .map_err(sql("reading addresses"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(sql("reading addresses"))?;
        for row in rows {
            let (mac, ip) = row.map_err(sql("reading addresses"))?;
            if let (Ok(mac), Ok(ip)) = (mac.parse::<MacAddr>(), ip.parse::<IpAddr>()) {
                if let Some(d) = devices.get_mut(&mac) {
                    d.addresses.insert(ip);
                }
            }
        }
        Ok(devices.into_values().collect())
    }

    /// Writes a device's facts now, durably (a homeowner's decision).
    pub fn save_device(&mut self, d: &Device) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql("setting synchronous"))?;
        let result = self.save_device_inner(d);
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql("setting synchronous"))?;
        self.pending_seen.remove(&d.mac);
        result
    }

    /// A device whose write failed: kept for [`Store::retry_unsaved`].
    pub fn mark_unsaved(&mut self, mac: MacAddr) {
        self.unsaved.insert(mac);
    }

    /// Whether `mac`'s last write failed and has not been redone.
    pub fn is_unsaved(&self, mac: &MacAddr) -> bool {
        self.unsaved.contains(mac)
    }

    /// How many devices wait to be written.
    pub fn unsaved_count(&self) -> usize {
        self.unsaved.len()
    }

    /// Writes the devices whose write failed, as they are now (`device`:
    /// the inventory's; `None`: forgotten meanwhile). Stops at the first
    /// failure (the disk is still full); returns how many were written.
    pub fn retry_unsaved<'a>(&mut self, device: impl Fn(&MacAddr) -> Option<&'a Device>) -> Result<usize, StoreError> {
        let mut written = 0;
        for mac in self.unsaved.clone() {
            match device(&mac) {
                Some(d) => self.save_device(d)?,
                None => self.forget_device(mac)?,
            }
            self.unsaved.remove(&mac);
            written += 1;
        }
        Ok(written)
    }

    /// Caps the database's size (tests: a full disk as SQLite sees it,
    /// `SQLITE_FULL`); `None` lifts the cap.
    #[cfg(test)]
    pub fn cap_pages(&self, pages: Option<u64>) {
        let n: i64 = match pages {
            Some(p) => i64::try_from(p).unwrap_or(i64::MAX),
            None => 1_073_741_823,
        };
        let _: i64 = self
            .conn
            .query_row(&format!("PRAGMA max_page_count = {n}"), [], |r| r.get(0))
            .unwrap_or(0);
    }

    /// The database's size in pages (tests).
    #[cfg(test)]
    pub fn page_count(&self) -> u64 {
        self.conn
            .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .unwrap_or(0)
    }

    /// Forgets a device: its row, its addresses (cascade) and the identity
    /// suggestions naming it, forced to the disk (a homeowner's decision).
    /// Its alerts stay (history); its DHCP lease runs out on its own.
    pub fn forget_device(&mut self, mac: MacAddr) -> Result<(), StoreError> {
        self.pending_seen.remove(&mac);
        let mac = mac.to_string();
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql("setting synchronous"))?;
        let result = (|| {
            let tx = self.conn.transaction().map_err(sql("starting a transaction"))?;
            tx.execute("DELETE FROM addresses WHERE mac = ?1", [&mac])
                .map_err(sql("forgetting addresses"))?;
            tx.execute("DELETE FROM devices WHERE mac = ?1", [&mac])
                .map_err(sql("forgetting a device"))?;
            tx.execute(
                "DELETE FROM identity_suggestions WHERE new_mac = ?1 OR known_mac = ?1",
                [&mac],
            )
            .map_err(sql("forgetting identity suggestions"))?;
            tx.commit().map_err(sql("committing a forgotten device"))
        })();
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql("setting synchronous"))?;
        result
    }

    /// Writes a device's discovered facts now without forcing them to the disk
    /// (WAL with NORMAL sync: a power cut may lose the last moments, never
    /// corrupt). Discovery re-learns them; a homeowner's decision uses
    /// [`Store::save_device`].
    pub fn save_discovered(&mut self, d: &Device) -> Result<(), StoreError> {
        let result = self.save_device_inner(d);
        self.pending_seen.remove(&d.mac);
        result
    }

    fn save_device_inner(&mut self, d: &Device) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(sql("starting a transaction"))?;
        tx.execute(
            "INSERT INTO devices (mac, name, zone, zone_set_by_user, first_seen, last_seen, evidence, blocked,
                tunnel_choice, watched)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(mac) DO UPDATE SET name = ?2, zone = ?3, zone_set_by_user = ?4, last_seen = ?6,
                evidence = ?7, blocked = ?8, tunnel_choice = ?9, watched = ?10",
            params![
                d.mac.to_string(),
                d.name,
                d.user_zone.as_ref().or(d.placed_zone.as_ref()).map(ZoneId::as_str),
                d.user_zone.is_some(),
                d.first_seen,
                d.last_seen,
                (!d.evidence.is_empty())
                    .then(|| serde_json::to_string(&d.evidence).ok())
                    .flatten(),
                d.blocked,
                d.tunnel_choice,
                d.watched
            ],
        )
        .map_err(sql("saving a device"))?;
        let mac = d.mac.to_string();
        tx.execute("DELETE FROM addresses WHERE mac = ?1", [&mac])
            .map_err(sql("saving addresses"))?;
        for ip in &d.addresses {
            // An address belongs to one device: take it from whoever had it.
            tx.execute("DELETE FROM addresses WHERE ip = ?1", [ip.to_string()])
                .map_err(sql("saving addresses"))?;
            tx.execute(
                "INSERT INTO addresses (mac, ip, family, first_seen) VALUES (?1, ?2, ?3, ?4)",
                params![mac, ip.to_string(), if ip.is_ipv4() { 4 } else { 6 }, d.last_seen],
            )
            .map_err(sql("saving addresses"))?;
        }
        tx.commit().map_err(sql("committing a device"))
    }

    /// Notes that a device was seen; written later by `flush_if_due`.
    pub fn note_seen(&mut self, mac: MacAddr, at: UnixTime) {
        let e = self.pending_seen.entry(mac).or_insert(at);
        *e = (*e).max(at);
    }

    /// Writes buffered last-seen times if `SEEN_FLUSH_SECS` have passed since the
    /// last flush (time passed in, so tests need no clock). Returns rows written.
    pub fn flush_if_due(&mut self, now: UnixTime) -> Result<usize, StoreError> {
        if now - self.last_flush < SEEN_FLUSH_SECS {
            return Ok(0);
        }
        self.flush(now)
    }

    /// Writes buffered last-seen times now (shutdown).
    pub fn flush(&mut self, now: UnixTime) -> Result<usize, StoreError> {
        self.last_flush = now;
        if self.pending_seen.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction().map_err(sql("starting a transaction"))?;
        let mut n = 0;
        for (mac, at) in std::mem::take(&mut self.pending_seen) {
            n += tx
                .execute(
                    "UPDATE devices SET last_seen = max(last_seen, ?2) WHERE mac = ?1",
                    params![mac.to_string(), at],
                )
                .map_err(sql("writing last-seen times"))?;
        }
        tx.commit().map_err(sql("committing last-seen times"))?;
        Ok(n)
    }

    /// Every stored DHCP lease.
    pub fn load_leases(&self) -> Result<Vec<Lease>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT segment, mac, client_id, ip, expires, hostname FROM leases ORDER BY segment, ip")
            .map_err(sql("reading leases"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(sql("reading leases"))?;
        let mut leases = Vec::new();
        for row in rows {
            let (segment, mac, client_id, ip, expires, hostname) = row.map_err(sql("reading leases"))?;
            match (SegmentId::new(&segment), mac.parse::<MacAddr>(), ip.parse()) {
                (Ok(segment), Ok(mac), Ok(ip)) => leases.push(Lease {
                    segment,
                    mac,
                    client_id,
                    ip,
                    expires,
                    hostname,
                }),
                _ => tracing::warn!(%segment, %mac, %ip, "skipping an unreadable lease in the store"),
            }
        }
        Ok(leases)
    }

    /// Records a lease (bound or renewed). NORMAL sync: a lease lost to a power
    /// cut is asked for again by its client (INIT-REBOOT) and granted if free.
    pub fn save_lease(&mut self, l: &Lease) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO leases (segment, mac, client_id, ip, expires, hostname) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(segment, ip) DO UPDATE SET mac = ?2, client_id = ?3, expires = ?5, hostname = ?6",
                params![
                    l.segment.as_str(),
                    l.mac.to_string(),
                    l.client_id,
                    l.ip.to_string(),
                    l.expires,
                    l.hostname
                ],
            )
            .map(|_| ())
            .map_err(sql("saving a lease"))
    }

    /// Forgets a lease (released, expired, declined).
    pub fn delete_lease(&mut self, segment: &SegmentId, ip: std::net::Ipv4Addr) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM leases WHERE segment = ?1 AND ip = ?2",
                params![segment.as_str(), ip.to_string()],
            )
            .map(|_| ())
            .map_err(sql("deleting a lease"))
    }

    /// Stores an alert, keeping at most [`MAX_ALERTS`] and none older than
    /// [`ALERT_MAX_AGE_SECS`] before it; returns its id.
    pub fn add_alert(&mut self, a: &Alert) -> Result<i64, StoreError> {
        let tx = self.conn.transaction().map_err(sql("starting a transaction"))?;
        tx.execute(
            "INSERT INTO alerts (at, kind, mac, message, acknowledged, count, last_at, facts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                a.at,
                a.kind.as_str(),
                a.mac.map(|m| m.to_string()),
                a.message,
                a.acknowledged,
                a.count,
                a.last_at.max(a.at),
                facts_json(&a.facts)
            ],
        )
        .map_err(sql("saving an alert"))?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "DELETE FROM alerts WHERE id <= ?1 OR at < ?2",
            params![id - MAX_ALERTS, a.at.saturating_sub(ALERT_MAX_AGE_SECS)],
        )
        .map_err(sql("trimming alerts"))?;
        tx.commit().map_err(sql("committing an alert"))?;
        Ok(id)
    }

    /// Deletes alerts older than [`ALERT_MAX_AGE_SECS`] at `now`; returns how many.
    pub fn prune_alerts(&mut self, now: UnixTime) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM alerts WHERE at < ?1",
                [now.saturating_sub(ALERT_MAX_AGE_SECS)],
            )
            .map_err(sql("trimming old alerts"))
    }

    /// The same alert happened again at `at`: its count grows, its text is
    /// the newest, and it is shown as unseen again. False when it is gone.
    pub fn repeat_alert(&mut self, id: i64, at: UnixTime, message: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE alerts SET count = count + 1, last_at = ?2, message = ?3, acknowledged = 0 WHERE id = ?1",
                params![id, at, message],
            )
            .map_err(sql("counting an alert again"))?;
        Ok(n > 0)
    }

    /// Rewrites an alert's message (a probing alert that grew); false when it
    /// is gone (pruned).
    pub fn update_alert_message(&mut self, id: i64, message: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("UPDATE alerts SET message = ?2 WHERE id = ?1", params![id, message])
            .map_err(sql("updating an alert"))?;
        Ok(n > 0)
    }

    /// Rewrites what an alert says (a new device's alert once it is
    /// classified: one alert per join); false when it is gone (pruned).
    pub fn rewrite_alert(
        &mut self,
        id: i64,
        kind: AlertKind,
        facts: &AlertFacts,
        message: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE alerts SET kind = ?2, facts = ?3, message = ?4 WHERE id = ?1",
                params![id, kind.as_str(), facts_json(facts), message],
            )
            .map_err(sql("rewriting an alert"))?;
        Ok(n > 0)
    }

    /// Acknowledges the open alerts of these kinds about `mac` (the homeowner
    /// acted on the device); returns how many.
    pub fn acknowledge_alerts_about(&mut self, mac: MacAddr, kinds: &[AlertKind]) -> Result<usize, StoreError> {
        let tx = self.conn.transaction().map_err(sql("starting a transaction"))?;
        let mut n = 0;
        {
            let mut stmt = tx
                .prepare("UPDATE alerts SET acknowledged = 1 WHERE mac = ?1 AND kind = ?2 AND acknowledged = 0")
                .map_err(sql("acknowledging alerts"))?;
            for kind in kinds {
                n += stmt
                    .execute(params![mac.to_string(), kind.as_str()])
                    .map_err(sql("acknowledging alerts"))?;
            }
        }
        tx.commit().map_err(sql("committing acknowledged alerts"))?;
        Ok(n)
    }

    /// How many alerts the homeowner has not acknowledged.
    pub fn open_alerts(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM alerts WHERE acknowledged = 0", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(sql("counting open alerts"))
    }

    /// Marks alerts acknowledged: these ids, or every one (`None`). Returns how
    /// many were not acknowledged before.
    pub fn acknowledge_alerts(&mut self, ids: Option<&[i64]>) -> Result<usize, StoreError> {
        let Some(ids) = ids else {
            return self
                .conn
                .execute("UPDATE alerts SET acknowledged = 1 WHERE acknowledged = 0", [])
                .map_err(sql("acknowledging alerts"));
        };
        let tx = self.conn.transaction().map_err(sql("starting a transaction"))?;
        let mut n = 0;
        {
            let mut stmt = tx
                .prepare("UPDATE alerts SET acknowledged = 1 WHERE id = ?1 AND acknowledged = 0")
                .map_err(sql("acknowledging alerts"))?;
            let unique: std::collections::BTreeSet<&i64> = ids.iter().collect();
            for id in unique {
                n += stmt.execute([id]).map_err(sql("acknowledging alerts"))?;
            }
        }
        tx.commit().map_err(sql("committing acknowledged alerts"))?;
        Ok(n)
    }

    /// The newest `limit` alerts, newest first.
    pub fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, at, kind, mac, message, acknowledged, count, last_at, facts FROM alerts ORDER BY id DESC LIMIT ?1",
            )
            .map_err(sql("reading alerts"))?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            })
            .map_err(sql("reading alerts"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at, kind, mac, message, acknowledged, count, last_at, facts) =
                row.map_err(sql("reading alerts"))?;
            let Some(kind) = AlertKind::parse(&kind) else { continue };
            out.push(Alert {
                id,
                acknowledged,
                at,
                kind,
                mac: mac.and_then(|m| m.parse().ok()),
                message,
                count: u32::try_from(count).unwrap_or(u32::MAX),
                last_at: last_at.unwrap_or(at),
                // Facts a later version wrote and this one cannot read: the
                // stored sentence still says it.
                facts: facts.and_then(|f| serde_json::from_str(&f).ok()).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Records an identity suggestion (once per pair; an accepted one stays so).
    pub fn save_suggestion(&mut self, s: &IdentitySuggestion) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO identity_suggestions (new_mac, known_mac, at, reasons, accepted) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(new_mac, known_mac) DO UPDATE SET accepted = max(accepted, ?5)",
                params![
                    s.new_mac.to_string(),
                    s.known_mac.to_string(),
                    s.at,
                    serde_json::to_string(&s.reasons).unwrap_or_default(),
                    s.accepted
                ],
            )
            .map(|_| ())
            .map_err(sql("saving an identity suggestion"))
    }

    /// Every identity suggestion, newest first.
    pub fn suggestions(&self) -> Result<Vec<IdentitySuggestion>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT new_mac, known_mac, at, reasons, accepted FROM identity_suggestions ORDER BY at DESC")
            .map_err(sql("reading identity suggestions"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, bool>(4)?,
                ))
            })
            .map_err(sql("reading identity suggestions"))?;
        let mut out = Vec::new();
        for row in rows {
            let (new_mac, known_mac, at, reasons, accepted) = row.map_err(sql("reading identity suggestions"))?;
            if let (Ok(new_mac), Ok(known_mac)) = (new_mac.parse(), known_mac.parse()) {
                out.push(IdentitySuggestion {
                    new_mac,
                    known_mac,
                    at,
                    reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                    accepted,
                });
            }
        }
        Ok(out)
    }

    /// A setting, if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(sql("reading a setting"))
    }

    /// Sets (`Some`) or clears (`None`) a setting, durably: settings are the
    /// homeowner's (the web UI's password), forced to disk like a decision.
    pub fn set_setting(&mut self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql("setting synchronous"))?;
        let result = match value {
            Some(v) => self.conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
                params![key, v],
            ),
            None => self.conn.execute("DELETE FROM settings WHERE key = ?1", [key]),
        }
        .map(|_| ())
        .map_err(sql("saving a setting"));
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql("setting synchronous"))?;
        result
    }

    /// The schema version (number of migrations applied).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql("reading the schema version"))
    }

    /// Number of devices stored.
    pub fn device_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM devices", [], |r| r.get(0))
            .optional()
            .map(|c| c.unwrap_or(0))
            .map_err(sql("counting devices"))
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql("reading the schema version"))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew { found: version, known });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(sql("starting a migration"))?;
        tx.execute_batch(m).map_err(sql("running a migration"))?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(sql("recording a migration"))?;
        tx.commit().map_err(sql("committing a migration"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u8, ip: &str) -> Device {
        let mut d = Device::new(MacAddr([2, 0, 0, 0, 0, n]), 100);
        d.addresses.insert(ip.parse().expect("ip"));
        d
    }

    #[test]
    fn devices_round_trip_and_addresses_move() {
        let mut s = Store::in_memory(0).expect("open");
        assert_eq!(s.schema_version().expect("v"), MIGRATIONS.len() as i64);
        let mut a = dev(1, "10.0.1.5");
        a.user_zone = Some(ZoneId::new("iot").expect("id"));
        a.name = Some("<b>cam</b>\n\u{202e}".into());
        s.save_device(&a).expect("save");
        let b = dev(2, "10.0.1.5");
        s.save_device(&b).expect("save");
        let loaded = s.load_devices().expect("load");
        assert_eq!(loaded.len(), 2);
        assert!(loaded[0].addresses.is_empty(), "the address moved to device 2");
        assert_eq!(loaded[0].name, a.name, "names are data, stored as given");
        assert_eq!(loaded[0].user_zone, a.user_zone);
        assert_eq!(loaded[1].addresses, b.addresses);
        // Where a rule placed a device is kept in the same column, apart from
        // the homeowner's choice, which wins when both are there.
        let mut c = dev(3, "10.0.1.7");
        c.placed_zone = Some(ZoneId::new("iot").expect("id"));
        s.save_device(&c).expect("save");
        let loaded = s.load_devices().expect("load");
        assert_eq!(
            (loaded[2].user_zone.clone(), loaded[2].placed_zone.clone()),
            (None, c.placed_zone.clone())
        );
        assert_eq!(loaded[0].placed_zone, None, "a homeowner's zone is not a placement");
        c.user_zone = Some(ZoneId::new("trusted").expect("id"));
        s.save_device(&c).expect("save");
        let loaded = s.load_devices().expect("load");
        assert_eq!(
            (loaded[2].user_zone.clone(), loaded[2].placed_zone.clone()),
            (c.user_zone, None)
        );
    }

    #[test]
    fn last_seen_is_batched() {
        let mut s = Store::in_memory(1000).expect("open");
        let d = dev(1, "10.0.1.5");
        s.save_device(&d).expect("save");
        s.note_seen(d.mac, 1010);
        assert_eq!(s.flush_if_due(1030).expect("flush"), 0, "not yet a minute");
        assert_eq!(s.load_devices().expect("load")[0].last_seen, 100);
        assert_eq!(s.flush_if_due(1060).expect("flush"), 1);
        assert_eq!(s.load_devices().expect("load")[0].last_seen, 1010);
        assert_eq!(s.flush_if_due(1070).expect("flush"), 0);
    }

    /// A file that is not a database at all, and one whose later pages were
    /// overwritten: the store opens, keeps the damaged file aside, reads back
    /// what it can; a newer schema is still an error, not damage.
    #[test]
    fn a_damaged_file_is_kept_aside_and_what_can_be_read_is_read_back() {
        let dir = std::env::temp_dir().join(format!("bulkhead-store-damaged-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let db = dir.join("bulkhead.db");

        // Not a database.
        std::fs::write(&db, vec![0x5a; 8192]).expect("garbage");
        let (s, r) = Store::open_or_recover(&dir, 1_000).expect("recovers");
        let r = r.expect("a recovery");
        assert!(!r.in_memory && r.salvaged == 0, "{r:?}");
        assert!(r.why.contains("not a database") || r.why.contains("damaged"), "{r:?}");
        let kept = r.kept_as.expect("kept");
        assert_eq!(
            std::fs::read(&kept).expect("kept file"),
            vec![0x5a; 8192],
            "kept as it was"
        );
        assert!(s.load_devices().expect("new store").is_empty());
        drop(s);
        let (_, again) = Store::open_or_recover(&dir, 1_001).expect("reopen");
        assert_eq!(again, None, "the new file is sound");

        // A real database whose index pages are overwritten: the devices
        // table still reads, the file fails its check.
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut s = Store::open(&dir, 0).expect("open");
            let mut named = dev(7, "10.0.1.7");
            named.name = Some("Kitchen speaker".into());
            named.blocked = true;
            s.save_device(&named).expect("save");
            for n in 10..200u8 {
                s.save_device(&dev(n, &format!("fd00::{n}"))).expect("save");
            }
            s.conn
                .pragma_update(None, "wal_checkpoint", "TRUNCATE")
                .expect("checkpoint");
        }
        let mut bytes = std::fs::read(&db).expect("read");
        let page = 4096;
        let pages = bytes.len() / page;
        assert!(pages > 4, "{pages} pages");
        // The last page (an index or the addresses table), overwritten.
        for b in &mut bytes[(pages - 1) * page..] {
            *b = 0xff;
        }
        std::fs::write(&db, &bytes).expect("damage");
        let (s, r) = Store::open_or_recover(&dir, 2_000).expect("recovers");
        let r = r.expect("a recovery");
        assert!(r.kept_as.as_ref().is_some_and(|p| p.exists()), "{r:?}");
        let back = s.load_devices().expect("load");
        assert_eq!(back.len(), r.salvaged, "{r:?}");
        assert_eq!(r.salvaged, 191, "every device read back: {r:?}");
        let named = back
            .iter()
            .find(|d| d.mac == MacAddr([2, 0, 0, 0, 0, 7]))
            .expect("the named one");
        assert!(named.blocked && named.name.as_deref() == Some("Kitchen speaker"));
        assert!(!r.why.contains('\n'), "one line: {r:?}");

        // A newer schema is not damage: it stays an error (a downgrade must
        // not throw away a newer Bulkhead's data).
        s.conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(s);
        assert!(matches!(
            Store::open_or_recover(&dir, 3_000),
            Err(StoreError::TooNew { found: 99, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reopen_keeps_data_and_refuses_newer_schema() {
        let dir = std::env::temp_dir().join(format!("bulkhead-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut s = Store::open(&dir, 0).expect("open");
            s.save_device(&dev(7, "fd00::7")).expect("save");
        }
        let s = Store::open(&dir, 0).expect("reopen");
        assert_eq!(s.load_devices().expect("load").len(), 1);
        s.conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(s);
        assert!(matches!(
            Store::open(&dir, 0),
            Err(StoreError::TooNew { found: 99, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A database as Bulkhead with the first `version` migrations left it.
    fn database_at(version: usize) -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        for m in &MIGRATIONS[..version] {
            conn.execute_batch(m).expect("old migration");
        }
        conn.pragma_update(None, "user_version", version as i64)
            .expect("version");
        conn
    }

    #[test]
    fn version_2_data_migrates_with_defaults_for_the_new_columns() {
        let conn = database_at(2);
        conn.execute_batch(
            "INSERT INTO devices (mac, name, zone, zone_set_by_user, first_seen, last_seen, evidence)
                VALUES ('02:00:00:00:00:01', 'cam', 'iot', 1, 10, 20, '{\"hostname\":\"cam\"}');
             INSERT INTO addresses (mac, ip, family, first_seen) VALUES ('02:00:00:00:00:01', '10.0.2.5', 4, 10);
             INSERT INTO alerts (at, kind, mac, message) VALUES (30, 'new-device-quarantined', NULL, 'old');",
        )
        .expect("version 2 rows");
        let mut s = Store::with_connection(conn, 0).expect("migrate");
        assert_eq!(s.schema_version().expect("v"), 5);
        assert_eq!(s.schema_version().expect("v"), MIGRATIONS.len() as i64);
        let old = &s.alerts(10).expect("alerts")[0];
        assert_eq!(
            (old.count, old.last_at),
            (1, 30),
            "an old alert happened once, at its time"
        );
        let d = &s.load_devices().expect("load")[0];
        assert_eq!(d.name.as_deref(), Some("cam"));
        assert_eq!(d.evidence.hostname.as_deref(), Some("cam"));
        assert_eq!(
            (d.blocked, d.tunnel_choice),
            (false, None),
            "not blocked, policy decides"
        );
        let a = &s.alerts(10).expect("alerts")[0];
        assert_eq!((a.message.as_str(), a.acknowledged), ("old", false));
        assert_eq!(s.setting(WEB_PASSWORD_HASH).expect("setting"), None);
        // The new columns take writes.
        let mut d = d.clone();
        d.blocked = true;
        d.tunnel_choice = Some(false);
        s.save_device(&d).expect("save");
        assert_eq!(s.load_devices().expect("load")[0], d);
    }

    #[test]
    fn every_old_version_migrates_to_the_newest() {
        for version in 0..MIGRATIONS.len() {
            let s = Store::with_connection(database_at(version), 0).expect("migrate");
            assert_eq!(
                s.schema_version().expect("v"),
                MIGRATIONS.len() as i64,
                "from {version}"
            );
        }
    }

    #[test]
    fn blocked_and_tunnel_choice_round_trip() {
        let mut s = Store::in_memory(0).expect("open");
        for (n, blocked, choice) in [(1, true, None), (2, false, Some(true)), (3, true, Some(false))] {
            let mut d = dev(n, &format!("10.0.1.{n}"));
            d.blocked = blocked;
            d.tunnel_choice = choice;
            s.save_device(&d).expect("save");
        }
        let got: Vec<_> = s
            .load_devices()
            .expect("load")
            .into_iter()
            .map(|d| (d.blocked, d.tunnel_choice))
            .collect();
        assert_eq!(got, [(true, None), (false, Some(true)), (true, Some(false))]);
    }

    fn alert(at: UnixTime, message: &str) -> Alert {
        Alert::new(at, AlertKind::ApplyFailed, None, message.into())
    }

    #[test]
    fn alerts_are_acknowledged_by_id_or_all_and_counted_once() {
        let mut s = Store::in_memory(0).expect("open");
        let ids: Vec<i64> = (0..4).map(|i| s.add_alert(&alert(i, "a")).expect("add")).collect();
        assert_eq!(
            s.acknowledge_alerts(Some(&[ids[0], ids[0], ids[2], 999])).expect("ack"),
            2
        );
        assert_eq!(s.acknowledge_alerts(Some(&[ids[0]])).expect("ack"), 0, "already");
        let acked: Vec<(i64, bool)> = s
            .alerts(10)
            .expect("alerts")
            .into_iter()
            .map(|a| (a.id, a.acknowledged))
            .collect();
        assert_eq!(
            acked,
            [(ids[3], false), (ids[2], true), (ids[1], false), (ids[0], true)]
        );
        assert_eq!(s.acknowledge_alerts(None).expect("all"), 2);
        assert_eq!(s.acknowledge_alerts(None).expect("all"), 0);
        assert!(s.alerts(10).expect("alerts").iter().all(|a| a.acknowledged));
    }

    #[test]
    fn alerts_older_than_thirty_days_are_deleted() {
        let mut s = Store::in_memory(0).expect("open");
        let day = 24 * 3600;
        s.add_alert(&alert(0, "day 0")).expect("add");
        s.add_alert(&alert(10 * day, "day 10")).expect("add");
        assert_eq!(s.prune_alerts(30 * day).expect("prune"), 0, "exactly 30 days is kept");
        assert_eq!(s.prune_alerts(30 * day + 1).expect("prune"), 1);
        let left: Vec<String> = s.alerts(10).expect("a").into_iter().map(|a| a.message).collect();
        assert_eq!(left, ["day 10"]);
        // And on insert: a new alert takes the ones a month older than it along.
        s.add_alert(&alert(41 * day, "day 41")).expect("add");
        let left: Vec<String> = s.alerts(10).expect("a").into_iter().map(|a| a.message).collect();
        assert_eq!(left, ["day 41"]);
    }

    #[test]
    fn settings_are_set_replaced_and_cleared() {
        let dir = std::env::temp_dir().join(format!("bulkhead-settings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut s = Store::open(&dir, 0).expect("open");
            assert_eq!(s.setting(WEB_PASSWORD_HASH).expect("get"), None);
            s.set_setting(WEB_PASSWORD_HASH, Some("$argon2id$v=19$first"))
                .expect("set");
            s.set_setting(WEB_PASSWORD_HASH, Some("$argon2id$v=19$second"))
                .expect("replace");
        }
        let mut s = Store::open(&dir, 0).expect("reopen");
        assert_eq!(
            s.setting(WEB_PASSWORD_HASH).expect("get").as_deref(),
            Some("$argon2id$v=19$second")
        );
        s.set_setting(WEB_PASSWORD_HASH, None).expect("clear");
        assert_eq!(s.setting(WEB_PASSWORD_HASH).expect("get"), None);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn leases_alerts_and_suggestions_round_trip() {
        let mut s = Store::in_memory(0).expect("open");
        let seg = SegmentId::new("lan").expect("id");
        let lease = Lease {
            segment: seg.clone(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            client_id: Some(vec![1, 2, 0, 0, 0, 0, 1]),
            ip: "10.0.1.100".parse().expect("ip"),
            expires: 5000,
            hostname: Some("a\"b\n<c>".into()),
        };
        s.save_lease(&lease).expect("save");
        let mut renewed = lease.clone();
        renewed.expires = 9000;
        s.save_lease(&renewed).expect("renew");
        assert_eq!(s.load_leases().expect("load"), vec![renewed]);
        s.delete_lease(&seg, lease.ip).expect("delete");
        assert!(s.load_leases().expect("load").is_empty());

        for i in 0..(MAX_ALERTS + 5) {
            s.add_alert(&Alert::new(
                i,
                AlertKind::NewDeviceQuarantined,
                None,
                format!("alert {i}"),
            ))
            .expect("alert");
        }
        let all = s.alerts(usize::MAX >> 1).expect("alerts");
        assert_eq!(all.len() as i64, MAX_ALERTS, "old alerts are trimmed");
        assert_eq!(all[0].message, format!("alert {}", MAX_ALERTS + 4), "newest first");

        let sug = IdentitySuggestion {
            new_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            known_mac: MacAddr([0, 0x11, 0, 0, 0, 3]),
            at: 7,
            reasons: vec!["same DHCP hostname".into()],
            accepted: false,
        };
        s.save_suggestion(&sug).expect("save");
        s.save_suggestion(&IdentitySuggestion {
            accepted: true,
            ..sug.clone()
        })
        .expect("accept");
        s.save_suggestion(&sug).expect("again");
        let got = s.suggestions().expect("load");
        assert_eq!(got.len(), 1);
        assert!(got[0].accepted, "an accepted suggestion stays accepted");
        assert_eq!(got[0].reasons, sug.reasons);
    }
}
