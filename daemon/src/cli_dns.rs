//! `bulkhead dns …`: the resolver's state, its query log, and "what would
//! this device get for this name, and why".

use clap::Subcommand;

use bulkhead::config::MacAddr;
use bulkhead::control::{Request, Response};
use bulkhead::dns::querylog::{LogFilter, Outcome};

/// `bulkhead dns` subcommands.
#[derive(Clone, Subcommand)]
pub enum DnsCommand {
    /// Listeners, upstreams and their health, cache, lists, counters.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The newest questions (names are what devices sent: shown escaped).
    Log {
        /// Only this device's.
        #[arg(long)]
        device: Option<MacAddr>,
        /// Only blocked ones.
        #[arg(long)]
        blocked: bool,
        /// Only names containing this.
        #[arg(long)]
        search: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download the URL blocklists now (they are also refreshed on their timer).
    Refresh,
    /// What a device would get for NAME, and why (nothing is asked upstream).
    Test {
        /// The name.
        name: String,
        /// The device asking (default: the router itself).
        #[arg(long)]
        from: Option<MacAddr>,
    },
}

/// The request of a `dns` subcommand, its printer and whether JSON is wanted.
pub fn dns_request(command: DnsCommand) -> (Request, super::Print, bool) {
    match command {
        DnsCommand::Status { json } => (Request::DnsStatus, print_status, json),
        DnsCommand::Log {
            device,
            blocked,
            search,
            limit,
            json,
        } => (
            Request::DnsLog {
                filter: LogFilter {
                    device,
                    blocked_only: blocked,
                    search,
                    limit,
                },
            },
            print_log,
            json,
        ),
        DnsCommand::Refresh => (Request::DnsRefresh, super::print_done, false),
        DnsCommand::Test { name, from } => (Request::DnsTest { name, from }, super::print_done, false),
    }
}

fn print_status(answer: Response, json: bool) -> anyhow::Result<()> {
    let Response::Dns(status) = answer else {
        anyhow::bail!("unexpected answer")
    };
    if json {
        return super::print_json(&status);
    }
    let listening: Vec<String> = status.listening.iter().map(ToString::to_string).collect();
    println!("listening: {}", listening.join(" "));
    for (addr, why) in &status.not_listening {
        println!("NOT listening on {addr}: {why}");
    }
    for (title, ups) in [
        ("upstreams", &status.upstreams),
        ("through the tunnel", &status.tunnel_upstreams),
    ] {
        if ups.is_empty() {
            println!("{title}: none");
        }
        for (u, h) in ups {
            let state = if h.failing == 0 {
                "ok".to_string()
            } else {
                format!("failing ({} in a row)", h.failing)
            };
            println!(
                "{title}: {u}  {state}, {} answers, {} failures, last {} ms",
                h.answered, h.failed, h.last_rtt_ms
            );
        }
    }
    for (zone, u, h) in &status.zone_upstreams {
        let state = if h.failing == 0 {
            "ok".to_string()
        } else {
            format!("failing ({} in a row)", h.failing)
        };
        println!(
            "zone {zone}'s upstream: {u}  {state}, {} answers, {} failures",
            h.answered, h.failed
        );
    }
    let s = &status.stats;
    println!(
        "answered {}  local {}  blocked {}  forwarded {}  failed {}  refused {}  not allowed {}  rebinding dropped {}  malformed {}  over rate {}",
        s.answered, s.local, s.blocked, s.forwarded, s.failed, s.refused, s.not_allowed, s.rebind, s.malformed, s.rate_limited
    );
    println!(
        "cache: {} entries, {} hits, {} misses",
        status.cache_entries, status.cache_hits, status.cache_misses
    );
    for l in &status.lists {
        match &l.error {
            Some(e) => println!("list {}: UNREADABLE {} ({e})", l.name, l.file),
            None => println!(
                "list {}: blocked {}; {} rules, {} exceptions, {} bad lines, {} unsupported  ({})",
                l.name, l.blocked, l.rules, l.exceptions, l.bad_lines, l.unsupported, l.file
            ),
        }
        if let Some(url) = &l.url {
            let when = l
                .downloaded
                .map_or_else(|| "never".to_string(), |t| bulkhead::clock::local(t as i64).to_string());
            println!("  from {url}, downloaded {when}");
            if let Some(e) = &l.download_error {
                println!("  last download FAILED: {e} (the last good copy stays in force)");
            }
        }
    }
    if !status.lists.is_empty() {
        println!("lists hold {} KiB", status.list_bytes / 1024);
    }
    Ok(())
}

fn print_log(answer: Response, json: bool) -> anyhow::Result<()> {
    let Response::DnsLog { entries } = answer else {
        anyhow::bail!("unexpected answer")
    };
    if json {
        return super::print_json(&entries);
    }
    for e in entries {
        let outcome = match &e.outcome {
            Outcome::Forwarded { upstream } => format!("forwarded to {upstream}"),
            Outcome::Cached => "cached".into(),
            Outcome::Local => "local".into(),
            Outcome::Blocked { list } => format!("BLOCKED by {list}"),
            Outcome::Rebind => "DROPPED: rebinding".into(),
            Outcome::NotAllowed => "refused: zone without internet".into(),
            Outcome::Failed => "FAILED: no upstream answer".into(),
        };
        let who = e.mac.map_or_else(|| e.client.to_string(), |m| m.to_string());
        println!(
            "{} {:<17} {:<5} {:<40} {:<9} {}",
            bulkhead::clock::local(i64::try_from(e.at).unwrap_or(0)),
            who,
            e.qtype,
            super::show(&e.name),
            e.rcode,
            outcome
        );
    }
    Ok(())
}
