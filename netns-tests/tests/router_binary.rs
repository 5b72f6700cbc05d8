//! The scenarios that matter most, run again on the binary a router gets: the
//! aarch64 musl build of `scripts/cross-build.sh` (no demo, the release
//! profile), under Debian's qemu-aarch64-static, as the daemon of the same
//! namespace homes. This suite's own build still drives the homes and the
//! probes; only the daemon is the router's.
//!
//! The scenarios run in a child run of this suite (the daemon binary is the
//! suite's `BULKHEAD_E2E_DAEMON` there), so each keeps its own assertions.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use super::{Outcome, DAEMON_OVERRIDE};

/// Where `scripts/cross-build.sh aarch64` leaves the router binary.
const ROUTER_BINARY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/openwrt/aarch64-unknown-linux-musl/bulkhead"
);
const QEMU: &str = "/usr/bin/qemu-aarch64-static";

/// Joining, zone enforcement, quarantine, blocking, the tunnel's kill switch.
///
/// The kill switch is `r0` (tunnel down: nothing leaks), not `r` (the tunnel
/// up, then broken in four ways): Debian 12's qemu-user (7.2) does not carry
/// every netlink message the tunnel needs — it answers no RTM_GETRULE dump
/// and fails the tunnel device's address — and no `NETLINK_NETFILTER` socket
/// at all, so under it the daemon's set changes are full replaces (its
/// fallback), and detection and traffic counting are off. The rest of these
/// scenarios do not depend on those.
pub const SCENARIOS: &[&str] = &[
    "k_dhcp_clients_are_discovered_and_enforced",
    "a_zones_routed_and_same_bridge",
    "m_unknown_device_is_quarantined_until_approved",
    "b_quarantine_reaches_only_dhcp_and_dns",
    "w_api_block_rename_reach_the_kernel",
    "r0_tunnel_down_never_leaks",
];

/// q4. The scenarios above with the aarch64 router binary as the daemon.
pub fn q4_router_binary_runs_the_scenarios() -> Result<Outcome> {
    let binary = Path::new(ROUTER_BINARY);
    ensure!(
        binary.exists(),
        "no router binary at {}: scripts/test.sh builds it first (scripts/cross-build.sh aarch64)",
        binary.display()
    );
    ensure!(
        Path::new(QEMU).exists(),
        "{QEMU} is missing (Debian's qemu-user-static; scripts/test.sh installs it)"
    );
    // Not an old build: the daemon's sources must not be newer than it.
    let built = std::fs::metadata(binary)?.modified()?;
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    if let Some(newer) = newest_file(&sources)?.filter(|(t, _)| *t > built) {
        anyhow::bail!(
            "{} is older than {}: run scripts/cross-build.sh aarch64 again",
            binary.display(),
            newer.1.display()
        );
    }
    let elf = std::fs::read(binary)?;
    ensure!(
        elf.len() > 20 && elf[..4] == *b"\x7fELF" && u16::from_le_bytes([elf[18], elf[19]]) == 183,
        "{} is not an aarch64 executable",
        binary.display()
    );

    // The daemon command the homes run: the router binary under qemu-user.
    let dir = std::env::temp_dir().join(format!("bulkhead-e2e-router-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let wrapper = dir.join("bulkhead-aarch64");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {QEMU} {} \"$@\"\n", binary.display()),
    )?;
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let help = Command::new(&wrapper).arg("--help").output()?;
    let help_text = String::from_utf8_lossy(&help.stdout);
    ensure!(
        help.status.success() && help_text.contains("daemon"),
        "the router binary does not run under qemu: {help_text}{}",
        String::from_utf8_lossy(&help.stderr)
    );
    ensure!(
        !help_text.lines().any(|l| l.trim_start().starts_with("demo ")),
        "the router binary was built with the demo"
    );

    let outcome = run_child(&wrapper, SCENARIOS);
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, output) = outcome?;
    for name in SCENARIOS {
        ensure!(
            output.contains(&format!("test {name} ... ok")),
            "{name} did not pass with the router binary:\n{output}"
        );
    }
    ensure!(ok, "the router-binary run failed:\n{output}");
    Ok(Outcome::Passed)
}

fn run_child(wrapper: &PathBuf, scenarios: &[&str]) -> Result<(bool, String)> {
    let me = std::env::current_exe().context("this test binary's path")?;
    let out = Command::new(me)
        .args(scenarios)
        .env(DAEMON_OVERRIDE, wrapper)
        .output()
        .context("running the scenarios")?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// The most recently modified file under `dir`, with its time.
fn newest_file(dir: &Path) -> Result<Option<(std::time::SystemTime, PathBuf)>> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let found = if entry.file_type()?.is_dir() {
            newest_file(&path)?
        } else {
            Some((entry.metadata()?.modified()?, path))
        };
        if let Some(f) = found {
            if newest.as_ref().is_none_or(|n| f.0 > n.0) {
                newest = Some(f);
            }
        }
    }
    Ok(newest)
}
