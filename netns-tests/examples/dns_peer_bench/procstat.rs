//! CPU and memory from /proc: a process, the whole machine, the UDP receive errors; waiting for a quiet machine.

use super::*;

/// A process's CPU time (user + system, its own threads) and memory.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcStats {
    pub(crate) cpu_secs: f64,
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
}

/// The whole machine's CPU time so far (`/proc/stat`, all CPUs): busy
/// (everything but idle and iowait) and, of that, softirq (where the kernel's
/// receive path, netfilter included, mostly runs), in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MachineCpu {
    pub(crate) busy: f64,
    pub(crate) softirq: f64,
    pub(crate) idle: f64,
    /// CPU time of this program's reaped children: dnsperf, when read
    /// around a run (the other tools it runs are reaped before or after).
    pub(crate) children: f64,
}

impl MachineCpu {
    pub(crate) fn since(self, before: MachineCpu) -> MachineCpu {
        MachineCpu {
            busy: self.busy - before.busy,
            softirq: self.softirq - before.softirq,
            idle: self.idle - before.idle,
            children: self.children - before.children,
        }
    }
}

pub(crate) fn machine_cpu() -> Option<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest: Vec<&str> = own.get(own.rfind(')')? + 1..)?.split_whitespace().collect();
    // Fields 16 and 17 (cutime, cstime); `rest` starts at field 3.
    let children: u64 = rest.get(13)?.parse::<u64>().ok()? + rest.get(14)?.parse::<u64>().ok()?;
    Some(MachineCpu {
        busy: (total - idle) as f64 / TICKS_PER_SEC,
        softirq: *ticks.get(6)? as f64 / TICKS_PER_SEC,
        idle: idle as f64 / TICKS_PER_SEC,
        children: children as f64 / TICKS_PER_SEC,
    })
}

/// Waits until the machine is idle (under 15 % of its CPUs busy over one
/// second), at most `max`; says so if it never is.
pub(crate) fn wait_quiet(max: Duration) {
    let started = Instant::now();
    let mut busy = 0.0;
    while started.elapsed() < max {
        let Some(before) = machine_cpu() else { return };
        std::thread::sleep(Duration::from_secs(1));
        let Some(after) = machine_cpu() else { return };
        let d = after.since(before);
        busy = if d.busy + d.idle > 0.0 {
            d.busy / (d.busy + d.idle)
        } else {
            0.0
        };
        if busy < 0.15 {
            if started.elapsed() > Duration::from_secs(2) {
                eprintln!("(waited {:.0?} for the machine to be idle)", started.elapsed());
            }
            return;
        }
    }
    if !max.is_zero() {
        eprintln!(
            "machine still {:.0} % busy after {max:?}: measuring anyway",
            busy * 100.0
        );
    }
}

/// `UdpRcvbufErrors` of `ns` so far (`nstat -asz`: absolute, history untouched).
pub(crate) fn udp_rcvbuf_errors(ns: &Netns) -> Option<u64> {
    let output = ns.exec(&["nstat", "-asz", "UdpRcvbufErrors"]).ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("UdpRcvbufErrors"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn proc_stats(pid: u32) -> Option<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields after it follow the last ')'.
    let rest: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
    let ticks: u64 = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some(ProcStats {
        cpu_secs: ticks as f64 / TICKS_PER_SEC,
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
    })
}
