//! `bulkhead restore`: fail closed from boot. Run before the network comes
//! up (`bulkhead-restore.service`), it puts back the firewall the daemon last
//! had in force — and, for a tunnel, its kill switch — so quarantine and zone
//! isolation hold from the first packet, not from when the daemon has started.
//!
//! 1. The saved record ([`crate::firewall::boot`]): exactly what was in force,
//!    device memberships included.
//! 2. Without one (the daemon never ran, or the file is damaged), the ruleset
//!    the daemon would apply first, computed from the config and the device
//!    database: every device the homeowner placed is where they placed it,
//!    everyone else is in the unknown zone.
//! 3. Without a config either, nothing: Bulkhead is installed but not set up.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{self, Config};
use crate::core::DaemonState;
use crate::firewall::{boot, error_chain, ConntrackNetlink, NftCli};
use crate::inventory::unix_now;
use crate::tunnel::routing::{self, TunnelRouting};

/// The state directory when the config cannot say.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/bulkhead";

/// Restores and returns what was done, in a sentence for the boot log.
pub async fn restore(config_path: &Path, state_dir: Option<PathBuf>) -> anyhow::Result<String> {
    let config = match config::load(config_path) {
        Ok(c) => Some(c),
        Err(errors) => {
            for e in &errors.0 {
                tracing::warn!("{e}");
            }
            None
        }
    };
    // The running daemon holds the rules and knows what it applied: putting
    // an older record under it would only make it replace them again.
    let socket = config
        .as_ref()
        .map_or_else(crate::config::fallback_control_socket, |c| c.control_socket.clone());
    if crate::control::call(&socket, &crate::control::Request::Status).is_ok() {
        anyhow::bail!(
            "the daemon is running (it answers on {}) and holds the rules; restore is for boot, before it starts",
            socket.display()
        );
    }
    let state_dir = state_dir
        .or_else(|| config.as_ref().map(|c| c.state_dir.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let saved = match boot::load(&state_dir) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "the saved ruleset cannot be used");
            None
        }
    };
    // The kill switch before the tables: the tables mark traffic for the
    // tunnel, and a marked packet with no rule and blackhole yet would take
    // the main table out of the WAN (a rule and blackhole with no marks yet
    // are harmless).
    if let Some(record) = saved {
        let tunnel = if record.tunnel { kill_switch().await? } else { "" };
        let counts = boot::restore(&NftCli::default(), &record).context("restoring the saved ruleset")?;
        return Ok(format!(
            "restored the ruleset in force at {} ({} rules, {} set elements){tunnel}",
            crate::clock::local(record.saved_at),
            counts.rules,
            counts.elements
        ));
    }
    let Some(config) = config else {
        return Ok(format!(
            "nothing to restore: no saved ruleset in {} and no usable config at {}",
            state_dir.display(),
            config_path.display()
        ));
    };
    let tunnel = if config.tunnel.is_some() {
        kill_switch().await?
    } else {
        ""
    };
    let devices = from_config(config).await?;
    Ok(format!(
        "no saved ruleset yet: applied the config's zones with {devices} known device(s){tunnel}"
    ))
}

/// The daemon's first apply, and nothing else: no links, sockets or services.
async fn from_config(config: Config) -> anyhow::Result<usize> {
    let now = unix_now();
    let (store, _) = crate::store::Store::open_or_recover(&config.state_dir, now).context("opening the store")?;
    let mut state = DaemonState::new(config, store, Box::new(NftCli::default()), Box::new(ConntrackNetlink))
        .context("loading devices")?;
    // Existing bridges' ports are policed as the daemon would.
    if let Ok((nl, task)) = crate::net::open() {
        if let Ok(observed) = crate::net::observe(&nl).await {
            // No flowtable at boot: the restore keeps devices out, it does not speed them up.
            state.links = crate::policy::link_facts(&state.config, &observed, false);
        }
        task.abort();
    }
    state.reconcile().context("applying the firewall")?;
    Ok(state.snapshot().devices.len())
}

/// The tunnel's policy rules and blackholes, with no tunnel device: traffic
/// selected for the tunnel goes nowhere until the daemon brings it up.
async fn kill_switch() -> anyhow::Result<&'static str> {
    let (nl, task) = crate::net::open().context("opening rtnetlink")?;
    let closed = routing::plan(Some(&TunnelRouting {
        tunnel_ifindex: None,
        ipv4: true,
        ipv6: true,
    }));
    let result = routing::reconcile(&nl, &closed).await;
    task.abort();
    result.context("the tunnel's kill switch")?;
    Ok("; the tunnel's kill switch is in place")
}
