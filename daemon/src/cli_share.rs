//! `bulkhead share …`: what is shared across zones, and the homeowner's
//! shares turned on and off.

use clap::Subcommand;

use bulkhead::config::ZoneId;
use bulkhead::control::{Request, Response};

/// `bulkhead share` subcommands.
#[derive(Clone, Subcommand)]
pub enum ShareCommand {
    /// The shares in force and the presets.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Share a preset's services offered in FROM with devices in TO.
    On {
        /// The preset (`bulkhead share list` names them).
        preset: String,
        /// The zone offering it (e.g. iot).
        from: ZoneId,
        /// The zone that may find and use it (e.g. trusted).
        to: ZoneId,
    },
    /// Stop a share made with `share on` (or the web UI).
    Off {
        /// The preset.
        preset: String,
        /// The zone offering it.
        from: ZoneId,
        /// The zone it was shared to.
        to: ZoneId,
    },
}

/// The request, its printer and whether JSON is wanted.
pub fn share_request(command: ShareCommand) -> (Request, super::Print, bool) {
    match command {
        ShareCommand::List { json } => (Request::Sharing, print_sharing, json),
        ShareCommand::On { preset, from, to } => (
            Request::Share {
                preset,
                from,
                to,
                on: true,
            },
            super::print_done,
            false,
        ),
        ShareCommand::Off { preset, from, to } => (
            Request::Share {
                preset,
                from,
                to,
                on: false,
            },
            super::print_done,
            false,
        ),
    }
}

fn print_sharing(answer: Response, json: bool) -> anyhow::Result<()> {
    let Response::Sharing { sharing } = answer else {
        anyhow::bail!("unexpected answer")
    };
    if json {
        return super::print_json(&sharing);
    }
    if sharing.shares.is_empty() {
        println!("nothing is shared across zones");
    }
    for s in &sharing.shares {
        let zones = |z: &[ZoneId]| z.iter().map(ZoneId::as_str).collect::<Vec<_>>().join(", ");
        println!(
            "{:<16} from {} to {}{}",
            s.name,
            zones(&s.from),
            zones(&s.to),
            if s.homeowner {
                "  (yours: share off to stop)"
            } else {
                "  (a policy file)"
            }
        );
    }
    println!("\npresets (bulkhead share on PRESET FROM TO):");
    for p in &sharing.presets {
        println!("  {:<16} {}", p.name, super::show(&p.description));
        println!("  {:<16} {} {}", "", p.services.join(" "), p.ports.join(" "));
    }
    Ok(())
}
