//! A read-only picture of the host namespace's network state, to prove a test
//! suite left it as it found it.

use std::fmt;
use std::process::Command;

use crate::netns::run_checked;
use crate::{Error, Result};

/// The commands whose output makes up a snapshot. All of them only read.
const COMMANDS: &[&[&str]] = &[
    // -s (stateless): no counters or quotas, which change by themselves.
    &["nft", "-s", "list", "ruleset"],
    &["ip", "-d", "link", "show"],
    &["ip", "addr", "show"],
    &["ip", "route", "show", "table", "all"],
    &["ip", "-6", "route", "show", "table", "all"],
    &["ip", "rule", "show"],
    &["ip", "-6", "rule", "show"],
    &["sysctl", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"],
];

/// Words followed by a value that changes on its own (lifetimes counting down,
/// expiry timers); the value is replaced by `*`.
const VOLATILE: &[&str] = &["valid_lft", "preferred_lft", "expires", "used"];

/// The host namespace's ruleset, links, addresses, routes, rules and forwarding
/// switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSnapshot {
    sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    command: String,
    lines: Vec<String>,
}

impl HostSnapshot {
    /// Takes a snapshot of the namespace this process runs in.
    ///
    /// Refuses to run on a thread that has moved into another namespace (inside
    /// [`Netns::run_in`](crate::Netns::run_in)), which would picture the wrong one.
    pub fn take() -> Result<HostSnapshot> {
        let thread_ns = read_ns_link("/proc/thread-self/ns/net")?;
        let process_ns = read_ns_link("/proc/self/ns/net")?;
        if thread_ns != process_ns {
            return Err(Error::Spec(
                "HostSnapshot::take called from a thread inside a test namespace".to_string(),
            ));
        }
        let mut sections = Vec::with_capacity(COMMANDS.len());
        for argv in COMMANDS {
            let (program, args) = argv.split_first().ok_or_else(|| Error::Spec("empty command".into()))?;
            let output = run_checked(Command::new(program).args(args))?;
            sections.push(Section {
                command: argv.join(" "),
                lines: String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(normalize)
                    .filter(|line| !line.trim().is_empty())
                    .collect(),
            });
        }
        Ok(HostSnapshot { sections })
    }

    /// What changed from `self` to `later`, or `None` if nothing did.
    ///
    /// Lists, per command, the lines only in `self` (`-`) and only in `later`
    /// (`+`).
    pub fn diff(&self, later: &HostSnapshot) -> Option<String> {
        let mut report = String::new();
        for (before, after) in self.sections.iter().zip(&later.sections) {
            if before == after {
                continue;
            }
            report.push_str(&format!("{}:\n", before.command));
            let removed = minus(&before.lines, &after.lines);
            let added = minus(&after.lines, &before.lines);
            if removed.is_empty() && added.is_empty() {
                report.push_str("  (same lines, different order)\n");
            }
            for line in removed {
                report.push_str(&format!("  - {line}\n"));
            }
            for line in added {
                report.push_str(&format!("  + {line}\n"));
            }
        }
        if self.sections.len() != later.sections.len() {
            report.push_str("snapshots list different commands\n");
        }
        (!report.is_empty()).then_some(report)
    }
}

impl fmt::Display for HostSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for section in &self.sections {
            writeln!(f, "$ {}", section.command)?;
            for line in &section.lines {
                writeln!(f, "{line}")?;
            }
        }
        Ok(())
    }
}

fn read_ns_link(path: &str) -> Result<std::path::PathBuf> {
    std::fs::read_link(path).map_err(|e| Error::io(format!("reading {path}"), e))
}

/// Replaces the value after each [`VOLATILE`] word by `*`, keeping indentation.
fn normalize(line: &str) -> String {
    let indent = &line[..line.len() - line.trim_start().len()];
    let mut words = Vec::new();
    let mut hide_next = false;
    for word in line.split_whitespace() {
        words.push(if hide_next { "*" } else { word });
        hide_next = VOLATILE.contains(&word);
    }
    format!("{indent}{}", words.join(" "))
}

/// Lines of `a` not matched one-to-one by a line of `b`, in `a`'s order.
fn minus<'a>(a: &'a [String], b: &[String]) -> Vec<&'a str> {
    let mut unmatched: Vec<&str> = b.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for line in a {
        match unmatched.iter().position(|l| l == line) {
            Some(i) => {
                unmatched.swap_remove(i);
            }
            None => out.push(line.as_str()),
        }
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    fn snap(lines: &[&str]) -> HostSnapshot {
        HostSnapshot {
            sections: vec![Section {
                command: "ip addr show".into(),
                lines: lines.iter().map(|l| l.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn volatile_values_are_hidden() {
        assert_eq!(
            normalize("       valid_lft 86390sec preferred_lft 14390sec"),
            "       valid_lft * preferred_lft *"
        );
        assert_eq!(
            normalize("2001:db8::/64 dev eth0 proto ra expires 1790sec pref medium"),
            "2001:db8::/64 dev eth0 proto ra expires * pref medium"
        );
    }

    #[test]
    fn diff_reports_added_and_removed_lines() {
        let a = snap(&["lo", "eth0"]);
        assert_eq!(a.diff(&a.clone()), None);
        let b = snap(&["lo", "eth0", "veth0"]);
        let report = a.diff(&b).expect("a change");
        assert!(report.contains("+ veth0"), "{report}");
        assert!(b.diff(&a).expect("a change").contains("- veth0"));
        let reordered = snap(&["eth0", "lo"]);
        assert!(a.diff(&reordered).expect("a change").contains("different order"));
    }
}
