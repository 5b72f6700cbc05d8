//! The per-device day counts on flash (`state_dir/dns-days.db`, SQLite): the
//! resolver's own small database, apart from the devices' store, written in
//! one transaction per flush (once an hour and when the resolver stops) and
//! read once at start. Days older than [`DAYS_KEPT`] are deleted.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use super::daily::{DayRow, DeviceDay};
use crate::config::MacAddr;

/// Days kept on flash.
pub const DAYS_KEPT: i64 = 30;

/// Why the day counts could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}")]
pub struct DailyStoreError {
    path: PathBuf,
    what: String,
}

/// The database.
pub struct DailyStore {
    path: PathBuf,
    conn: Connection,
}

impl DailyStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<DailyStore, DailyStoreError> {
        let fail = |what: &str, e: rusqlite::Error| error_at(path, what, e);
        let conn = Connection::open(path).map_err(|e| fail("opening", e))?;
        // A rollback journal, truncated rather than deleted: one flush an hour
        // needs no WAL, and leaves no second file growing on flash.
        conn.pragma_update(None, "journal_mode", "TRUNCATE")
            .map_err(|e| fail("setting the journal mode", e))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS dns_days (
                day INTEGER NOT NULL,
                mac TEXT NOT NULL,
                queries INTEGER NOT NULL,
                blocked INTEGER NOT NULL,
                top TEXT NOT NULL,
                PRIMARY KEY (day, mac)
             ) WITHOUT ROWID;",
        )
        .map_err(|e| fail("creating the table", e))?;
        Ok(DailyStore {
            path: path.to_path_buf(),
            conn,
        })
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> DailyStoreError {
        error_at(&self.path, what, e)
    }

    /// Writes `rows` (replacing those days' rows) and deletes the days
    /// before `today - DAYS_KEPT`, in one transaction.
    pub fn save(&mut self, rows: &[DayRow], today: i64) -> Result<(), DailyStoreError> {
        let path = &self.path;
        let fail = |what: &str, e: &dyn std::fmt::Display| error_at(path, what, e);
        let tx = self.conn.transaction().map_err(|e| fail("starting", &e))?;
        for (day, mac, d) in rows {
            let top = serde_json::to_string(&d.top).map_err(|e| fail("encoding", &e))?;
            tx.execute(
                "INSERT OR REPLACE INTO dns_days (day, mac, queries, blocked, top) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    day,
                    mac.to_string(),
                    i64::try_from(d.queries).unwrap_or(i64::MAX),
                    i64::try_from(d.blocked).unwrap_or(i64::MAX),
                    top
                ],
            )
            .map_err(|e| fail("writing a day", &e))?;
        }
        tx.execute("DELETE FROM dns_days WHERE day < ?1", params![today - DAYS_KEPT])
            .map_err(|e| fail("deleting old days", &e))?;
        tx.commit().map_err(|e| fail("committing", &e))
    }

    /// The rows of `from_day` and later. A row that does not read back (an
    /// unknown MAC, a damaged list of names) is skipped and logged.
    pub fn load(&self, from_day: i64) -> Result<Vec<DayRow>, DailyStoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT day, mac, queries, blocked, top FROM dns_days WHERE day >= ?1")
            .map_err(|e| self.error("reading", e))?;
        let rows = stmt
            .query_map(params![from_day], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(|e| self.error("reading", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (day, mac, queries, blocked, top) = row.map_err(|e| self.error("reading a row", e))?;
            let (Ok(mac), Ok(top)) = (mac.parse::<MacAddr>(), serde_json::from_str(&top)) else {
                tracing::warn!(path = %self.path.display(), day, mac = %mac.escape_debug(), "a DNS day row does not read back; skipped");
                continue;
            };
            out.push((
                day,
                mac,
                DeviceDay::read_back(
                    u64::try_from(queries).unwrap_or(0),
                    u64::try_from(blocked).unwrap_or(0),
                    top,
                ),
            ));
        }
        Ok(out)
    }
}

fn error_at(path: &Path, what: &str, e: impl std::fmt::Display) -> DailyStoreError {
    DailyStoreError {
        path: path.to_path_buf(),
        what: format!("{what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::daily::DailyCounts;

    #[test]
    fn days_written_read_back_and_old_ones_go() {
        let dir = crate::testutil::Fixture::new("", &[]);
        let path = dir.dir.join("dns-days.db");
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let mut counts = DailyCounts::default();
        for day in [100, 140, 141] {
            counts.count(day, mac, Some("a.test"), day == 141);
        }
        let mut store = DailyStore::open(&path).expect("opens");
        store.save(&counts.take_changed(), 141).expect("saves");
        // Written again with more: replaced, not added.
        counts.count(141, mac, Some("b.test"), false);
        store.save(&counts.take_changed(), 141).expect("saves");
        drop(store);
        let store = DailyStore::open(&path).expect("reopens");
        let rows = store.load(0).expect("loads");
        let days: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(days, vec![140, 141], "day 100 is older than {DAYS_KEPT} days");
        let today = &rows[1].2;
        assert_eq!((today.queries, today.blocked), (2, 1));
        assert_eq!(today.most_asked(5), vec![("a.test", 1), ("b.test", 1)]);
        assert_eq!(today.top.len(), 2);
        // A damaged row is skipped, the others load.
        store
            .conn
            .execute("UPDATE dns_days SET top = 'not json' WHERE day = 140", [])
            .expect("damage");
        assert_eq!(store.load(0).expect("loads").len(), 1);
    }
}
