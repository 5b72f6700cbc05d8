//! The blocklists as files: read and parsed at start (and after a reload),
//! and for URL lists downloaded on a timer. A download replaces the list's
//! last good copy (`state_dir/blocklists/NAME.txt`) only when it is readable
//! and different — at most one flash write per list per refresh — and a
//! failed download keeps the copy in force. A line that does not parse is
//! counted and the first few logged with file:line; it never stops a load.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::blocklist::{self, Blocklists, ListId};
use super::fetch::fetch;
use super::policy::DnsSettings;
use super::server::Shared;
use crate::config::BlocklistSource;
use crate::firewall::error_chain;

/// Bad lines of a list reported in the log, per list.
const BAD_LINES_LOGGED: usize = 5;
/// How often the refresher looks for lists that are due.
const CHECK_EVERY: Duration = Duration::from_secs(600);
/// After a failed download, the first retry (doubling up to [`CHECK_EVERY`]):
/// a router that boots before its WAN is up gets its lists within a minute
/// of the WAN, not ten.
const FIRST_RETRY: Duration = Duration::from_secs(30);

/// One blocklist as loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListStatus {
    /// Its name.
    pub name: String,
    /// The file it came from (a URL list's last good copy).
    pub file: String,
    /// Where it is downloaded from, for a URL list.
    #[serde(default)]
    pub url: Option<String>,
    /// When its copy was last written (unix seconds), for a URL list.
    #[serde(default)]
    pub downloaded: Option<u64>,
    /// Why the last download failed, if it did (the copy stays in force).
    #[serde(default)]
    pub download_error: Option<String>,
    /// Questions it blocked since the resolver started.
    #[serde(default)]
    pub blocked: u64,
    /// Rules that block.
    pub rules: usize,
    /// Exceptions (`@@`).
    pub exceptions: usize,
    /// Lines that did not parse (with file:line in the daemon's log).
    pub bad_lines: usize,
    /// Lines in a syntax we do not support (skipped).
    pub unsupported: usize,
    /// Why the file could not be read, if it could not.
    pub error: Option<String>,
}

fn modified_secs(path: &Path) -> Option<u64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    m.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Reads and parses the configured lists (blocking file reads: call from
/// `spawn_blocking` or at start). A list that cannot be read is reported and
/// left out.
pub fn load_blocklists(settings: &DnsSettings) -> (Blocklists, Vec<ListStatus>) {
    let mut parsed = Vec::new();
    let mut status = Vec::new();
    for (i, source) in settings.dns.blocklists.iter().enumerate() {
        let mut s = ListStatus {
            name: source.name.clone(),
            file: source.file.display().to_string(),
            url: source.url.clone(),
            downloaded: source.url.as_ref().and_then(|_| modified_secs(&source.file)),
            download_error: None,
            blocked: 0,
            rules: 0,
            exceptions: 0,
            bad_lines: 0,
            unsupported: 0,
            error: None,
        };
        match std::fs::read(&source.file) {
            Ok(bytes) => {
                let list = parse_reporting(source, &bytes);
                s.rules = list.block_rules();
                s.exceptions = list.allow_rules();
                s.bad_lines = list.bad_lines_total;
                s.unsupported = list.unsupported_total;
                parsed.push((ListId(i as u16), list));
            }
            Err(e) if source.url.is_some() && e.kind() == std::io::ErrorKind::NotFound => {
                s.error = Some("not downloaded yet".into());
            }
            Err(e) => {
                tracing::error!(list = %source.name, file = %source.file.display(), error = %e, "blocklist unreadable; left out");
                s.error = Some(e.to_string());
            }
        }
        status.push(s);
    }
    (Blocklists::build(parsed), status)
}

fn parse_reporting(source: &BlocklistSource, bytes: &[u8]) -> blocklist::ParsedList {
    let text = String::from_utf8_lossy(bytes);
    let list = blocklist::parse_list(&text);
    for bad in list.bad_lines.iter().take(BAD_LINES_LOGGED) {
        tracing::warn!("{}:{}: {} (line skipped)", source.file.display(), bad.line, bad.reason);
    }
    if list.bad_lines_total > BAD_LINES_LOGGED {
        tracing::warn!(
            "{}: {} more lines skipped",
            source.file.display(),
            list.bad_lines_total - BAD_LINES_LOGGED
        );
    }
    list
}

/// Whether a URL list's copy is missing or older than its refresh interval.
fn due(source: &BlocklistSource, now: u64) -> bool {
    match modified_secs(&source.file) {
        None => true,
        Some(at) => now.saturating_sub(at) >= u64::from(source.refresh_hours) * 3600,
    }
}

/// Writes `bytes` as the list's copy if they differ from it (temporary file,
/// then rename: a power cut leaves the old copy or the new, never half).
/// Whether it was written.
fn replace_copy(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        // Same content: only its age is refreshed (no data written).
        let f = std::fs::File::options().append(true).open(path)?;
        f.set_modified(SystemTime::now())?;
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(true)
}

/// Downloads the URL lists when due (and when woken by `bulkhead dns
/// refresh`), keeps their copies, and swaps the resolver's lists when one
/// changed. Runs until the service stops.
pub(super) async fn refresh_loop(shared: Arc<Shared>, settings: DnsSettings, tls: Option<Arc<rustls::ClientConfig>>) {
    let mut forced = false;
    let mut retry = FIRST_RETRY;
    loop {
        let now = crate::inventory::unix_now().max(0) as u64;
        let mut changed = false;
        let mut failed = false;
        for source in settings.dns.blocklists.iter().filter(|b| b.url.is_some()) {
            if !forced && !due(source, now) {
                continue;
            }
            let Some(url) = &source.url else { continue };
            let result = match fetch(url, tls.clone()).await {
                Err(e) => Err(error_chain(&e)),
                // A list nothing in parses is a broken download (an error
                // page), not a list with no rules: keep the copy.
                Ok(bytes) if blocklist::parse_list(&String::from_utf8_lossy(&bytes)).rules_total() == 0 => {
                    Err("the download holds no rule; the last good copy stays".into())
                }
                Ok(bytes) => replace_copy(&source.file, &bytes).map_err(|e| e.to_string()),
            };
            if let Ok(mut lists) = shared.lists.lock() {
                if let Some(s) = lists.iter_mut().find(|s| s.name == source.name) {
                    match &result {
                        Ok(_) => {
                            s.download_error = None;
                            s.downloaded = Some(now);
                        }
                        Err(e) => s.download_error = Some(e.clone()),
                    }
                }
            }
            match result {
                Ok(wrote) => {
                    tracing::info!(list = %source.name, %url, changed = wrote, "blocklist downloaded");
                    changed |= wrote;
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(list = %source.name, %url, error = %e, "blocklist download failed; the last good copy stays");
                }
            }
        }
        if changed {
            let for_load = settings.clone();
            if let Ok((matcher, mut status)) = tokio::task::spawn_blocking(move || load_blocklists(&for_load)).await {
                if let Ok(mut r) = shared.resolver.lock() {
                    r.set_blocklists(matcher);
                }
                if let Ok(mut lists) = shared.lists.lock() {
                    // Keep what the downloads said.
                    for s in status.iter_mut() {
                        if let Some(old) = lists.iter().find(|o| o.name == s.name) {
                            s.download_error.clone_from(&old.download_error);
                            s.downloaded = s.downloaded.or(old.downloaded);
                        }
                    }
                    *lists = status;
                }
            }
        }
        let wait = if failed {
            let w = retry;
            retry = (retry * 2).min(CHECK_EVERY);
            w
        } else {
            retry = FIRST_RETRY;
            CHECK_EVERY
        };
        forced = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = shared.refresh.notified() => true,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path, refresh_hours: u32) -> BlocklistSource {
        BlocklistSource {
            name: "ads".into(),
            file: dir.join("blocklists/ads.txt"),
            url: Some("http://192.0.2.1/ads.txt".into()),
            refresh_hours,
        }
    }

    #[test]
    fn a_copy_is_written_only_when_the_download_differs_and_is_due_by_age() {
        let dir = std::env::temp_dir().join(format!("bulkhead-lists-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = source(&dir, 24);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(due(&s, now), "no copy yet");
        assert!(replace_copy(&s.file, b"||a.example^\n").expect("write"));
        assert!(!due(&s, now));
        assert!(due(&s, now + 24 * 3600));
        assert!(
            !replace_copy(&s.file, b"||a.example^\n").expect("same"),
            "unchanged: not written"
        );
        assert!(replace_copy(&s.file, b"||b.example^\n").expect("write"));
        assert_eq!(std::fs::read(&s.file).expect("read"), b"||b.example^\n");
        assert!(!s.file.with_extension("part").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
