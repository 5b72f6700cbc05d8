//! `bulkhead notify …`: the notification channels' state, and a test alert.

use clap::Subcommand;

use bulkhead::control::{Request, Response};

/// `bulkhead notify` subcommands.
#[derive(Clone, Subcommand)]
pub enum NotifyCommand {
    /// Every channel: sent, failed, queued, the last deliveries and errors.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a test alert on one channel (its name; `mqtt` for the broker).
    Test {
        /// The channel.
        channel: String,
    },
}

/// The request, its printer and whether JSON is wanted.
pub fn notify_request(command: NotifyCommand) -> (Request, super::Print, bool) {
    match command {
        NotifyCommand::Status { json } => (Request::NotifyStatus, print_status, json),
        NotifyCommand::Test { channel } => (Request::NotifyTest { channel }, super::print_done, false),
    }
}

fn print_status(answer: Response, json: bool) -> anyhow::Result<()> {
    let Response::Notify { status } = answer else {
        anyhow::bail!("unexpected answer")
    };
    if json {
        return super::print_json(&status);
    }
    let Some(status) = status else {
        println!("no notification channel is configured ([notify] in bulkhead.toml)");
        return Ok(());
    };
    for c in &status.channels {
        println!(
            "{:<16} {:<8} {}  sent {}, failed tries {}, dropped {}, rate-limited {}, quiet {}, queued {}{}",
            c.name,
            c.kind,
            super::show(&c.target),
            c.sent,
            c.failed,
            c.dropped,
            c.rate_limited,
            c.quiet,
            c.queued,
            if c.kind == "mqtt" {
                if c.connected {
                    ", connected"
                } else {
                    ", not connected"
                }
            } else {
                ""
            }
        );
        if !c.sends.is_empty() {
            println!("    sends: {}", c.sends);
        }
        if c.commands + c.commands_refused > 0 {
            println!(
                "    Home Assistant's commands: {} carried out, {} refused",
                c.commands, c.commands_refused
            );
        }
        if let Some(e) = &c.last_error {
            println!("    last error: {}", super::show(e));
        }
        for d in c.log.iter().rev().take(5) {
            let result = match &d.result {
                Ok(code) => format!("ok {code}"),
                Err(e) => super::show(e).to_string(),
            };
            println!("    {} {} #{}: {result}", bulkhead::clock::local(d.at), d.kind, d.alert);
        }
    }
    if status.missed > 0 {
        println!("alerts missed (the notifier fell behind): {}", status.missed);
    }
    Ok(())
}
