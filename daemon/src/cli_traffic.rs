//! `bulkhead traffic [MAC]`: how much each device sent and received — the
//! last hour's top talkers, or one device by path with its last hour by
//! minute.

use bulkhead::config::MacAddr;
use bulkhead::control::{Request, Response};
use bulkhead::traffic::book::Flow;

/// The request, its printer.
pub fn traffic_request(mac: Option<MacAddr>) -> (Request, super::Print) {
    (Request::Traffic { mac }, print_traffic)
}

/// "1.5 MB".
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn flow(f: &Flow) -> String {
    format!("{} ({} packets)", bytes(f.bytes), f.packets)
}

fn print_traffic(answer: Response, json: bool) -> anyhow::Result<()> {
    let Response::Traffic { report } = answer else {
        anyhow::bail!("unexpected answer")
    };
    if json {
        return super::print_json(&report);
    }
    let Some(report) = report else {
        println!("traffic counting is off ([traffic] enabled = false)");
        return Ok(());
    };
    if let Some(e) = &report.last_error {
        println!("the last reading failed: {e}");
    }
    if report.devices.is_empty() {
        println!("no traffic counted yet (read every {} s)", report.sample_secs);
    }
    for d in &report.devices {
        let who = match &d.name {
            Some(n) => format!("{} ({})", super::show(n), d.mac),
            None => d.mac.to_string(),
        };
        println!(
            "{who}  last hour: {} received, {} sent; last 24 h: {} received, {} sent",
            bytes(d.last_hour.0),
            bytes(d.last_hour.1),
            bytes(d.last_day.0),
            bytes(d.last_day.1)
        );
        if !d.minutes.is_empty() || !d.hours.is_empty() {
            let t = &d.totals;
            for (path, sent, received) in [
                ("internet", &t.sent.internet, &t.received.internet),
                ("tunnel", &t.sent.tunnel, &t.received.tunnel),
                ("other zones", &t.sent.zones, &t.received.zones),
            ] {
                println!("    {path:<12} sent {}, received {}", flow(sent), flow(received));
            }
            let since = report.at - 3600;
            for p in d.minutes.iter().filter(|p| p.at > since) {
                println!(
                    "    {}  {:>10} received  {:>10} sent",
                    bulkhead::clock::local(p.at),
                    bytes(p.received),
                    bytes(p.sent)
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_read_like_a_person_writes_them() {
        assert_eq!(super::bytes(999), "999 B");
        assert_eq!(super::bytes(1500), "1.5 kB");
        assert_eq!(super::bytes(2_500_000_000), "2.5 GB");
    }
}
