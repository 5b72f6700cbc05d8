//! `bulkhead detect [MAC]`: what the firewall refused each device, as
//! detection sampled it, and its episodes (the probing timeline).

use bulkhead::config::MacAddr;
use bulkhead::control::{Request, Response};

/// The request, its printer.
pub fn detect_request(mac: Option<MacAddr>) -> (Request, super::Print) {
    (Request::Detect { mac }, print_detect)
}

fn print_detect(answer: Response, json: bool) -> anyhow::Result<()> {
    let Response::Detect { report } = answer else {
        anyhow::bail!("unexpected answer")
    };
    if json {
        return super::print_json(&report);
    }
    let Some(report) = report else {
        println!("detection is off ([detect] enabled = false, or no LAN segment)");
        return Ok(());
    };
    println!(
        "sampled {} refused packets ({} unreadable, {} from no known device, {} overruns)",
        report.sampled, report.malformed, report.unattributed, report.overruns
    );
    if report.devices.is_empty() {
        println!("no device was refused anything");
    }
    for (mac, d) in &report.devices {
        println!(
            "{mac}  {} sampled: {} to the router, {} routed, {} within a segment, {} while blocked; last {}",
            d.sampled,
            d.to_router,
            d.routed,
            d.bridged,
            d.blocked,
            bulkhead::clock::local(d.last)
        );
        if !d.top_targets.is_empty() {
            let t: Vec<String> = d.top_targets.iter().map(|(ip, n)| format!("{ip} ×{n}")).collect();
            println!("    targets: {}", t.join(", "));
        }
        if !d.top_ports.is_empty() {
            let p: Vec<String> = d.top_ports.iter().map(|(port, n)| format!("{port} ×{n}")).collect();
            println!("    ports:   {}", p.join(", "));
        }
        for e in &d.episodes {
            println!(
                "    {} – {}: {} samples, {} hosts, {} ports{}{}",
                bulkhead::clock::local(e.started),
                bulkhead::clock::local(e.last),
                e.samples,
                e.hosts,
                e.ports,
                if e.probing { ", probing" } else { "" },
                if e.lateral { ", tried other zones" } else { "" }
            );
        }
    }
    Ok(())
}
