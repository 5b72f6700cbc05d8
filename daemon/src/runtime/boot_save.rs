//! Keeps the state directory's boot ruleset ([`crate::firewall::boot`]) in
//! step with what the firewall holds, without wearing out a router's flash.
//!
//! A full replace (start, reload, a structural change) is written at once: the
//! zones' rules themselves changed. Membership changes (a device approved,
//! moved, blocked) come in bursts and are written at most once a minute; on a
//! clean stop (a reboot) the last state is written whatever the age. So after
//! a clean reboot the restored ruleset is exactly the last one; after a power
//! cut it may miss up to a minute of membership changes, until the daemon
//! starts and replaces it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::core::DaemonState;
use crate::firewall::{boot, error_chain};
use crate::inventory::UnixTime;

/// Membership changes are written at most this often.
const MEMBERSHIP_WRITE_EVERY: Duration = Duration::from_secs(60);

/// What was last written, and when.
pub(super) struct BootSaver {
    state_dir: PathBuf,
    /// (full applies, delta applies) of the enforcer when last written.
    written: Option<(u64, u64)>,
    written_at: Option<Instant>,
    /// The last write failed: said once, not every turn.
    failing: bool,
    /// What the last record written held (its tunnel flag and document):
    /// a replace that changes nothing the record holds (the flowtable, which
    /// the record leaves out) writes nothing to flash.
    last: Option<u64>,
}

impl BootSaver {
    pub(super) fn new(state_dir: PathBuf) -> Self {
        BootSaver {
            state_dir,
            written: None,
            written_at: None,
            last: None,
            failing: false,
        }
    }

    /// Writes the record when it is due (see the module documentation);
    /// `stopping`: whatever changed is written now.
    pub(super) fn maybe_save(&mut self, state: &DaemonState, now: Instant, wall: UnixTime, stopping: bool) {
        let stats = state.enforcer().stats();
        let generation = (stats.full_applies, stats.delta_applies);
        if !due(self.written, self.written_at, generation, now, stopping) {
            return;
        }
        let Some(record) = state.enforcer().boot_record(wall) else {
            return;
        };
        let holds = holds_hash(&record);
        if !self.failing && holds.is_some() && self.last == holds {
            self.written = Some(generation);
            return;
        }
        match boot::save(&self.state_dir, &record) {
            Ok(()) => {
                if self.failing {
                    tracing::info!("boot ruleset saved again");
                }
                self.failing = false;
                self.last = holds;
            }
            Err(e) => {
                if !self.failing {
                    tracing::error!(error = %error_chain(&e), "could not save the boot ruleset; `bulkhead restore` would put back an older one");
                }
                self.failing = true;
            }
        }
        // Failed or not: tried now (a failing disk is not hammered every turn).
        self.written = Some(generation);
        self.written_at = Some(now);
    }
}

/// A hash of what a record holds (not when it was written); None if it
/// cannot be serialized (then it is written every time it is due).
fn holds_hash(record: &boot::BootRecord) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    /// Feeds what is written into the hasher (no copy of a document that can
    /// be a megabyte).
    struct HashWriter<'a>(&'a mut std::collections::hash_map::DefaultHasher);
    impl std::io::Write for HashWriter<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    record.tunnel.hash(&mut h);
    serde_json::to_writer(HashWriter(&mut h), &record.nftables).ok()?;
    Some(h.finish())
}

/// Whether `generation` must be written now. Pure.
fn due(
    written: Option<(u64, u64)>,
    written_at: Option<Instant>,
    generation: (u64, u64),
    now: Instant,
    stopping: bool,
) -> bool {
    let Some((full, delta)) = written else {
        return true;
    };
    if (full, delta) == generation {
        return false;
    }
    if generation.0 != full || stopping {
        return true;
    }
    written_at.is_none_or(|at| now.duration_since(at) >= MEMBERSHIP_WRITE_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_replaces_at_once_membership_once_a_minute_everything_on_stop() {
        let t0 = Instant::now();
        let later = |s| t0 + Duration::from_secs(s);
        assert!(due(None, None, (1, 0), t0, false), "the first apply");
        let written = Some((1, 0));
        assert!(!due(written, Some(t0), (1, 0), later(600), false), "nothing changed");
        assert!(due(written, Some(t0), (2, 0), later(1), false), "a full replace");
        assert!(
            !due(written, Some(t0), (1, 3), later(59), false),
            "membership, too soon"
        );
        assert!(
            due(written, Some(t0), (1, 3), later(60), false),
            "membership, a minute on"
        );
        assert!(due(written, Some(t0), (1, 3), later(1), true), "stopping");
        assert!(
            !due(written, Some(t0), (1, 0), later(1), true),
            "stopping, nothing changed"
        );
    }
}
