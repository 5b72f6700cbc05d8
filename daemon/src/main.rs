//! The `bulkhead` command: the daemon, its CLI, config checking and the demo.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli_detect;
mod cli_dns;
mod cli_notify;
mod cli_share;
mod cli_traffic;

use bulkhead::config::{self, MacAddr, ZoneId, DEFAULT_CONFIG_PATH};
use bulkhead::control::{self, Request, Response};

#[derive(Parser)]
#[command(
    name = "bulkhead",
    version,
    about = "Home router daemon: device zones enforced by nftables"
)]
struct Cli {
    /// Main configuration file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Control socket (default: from the config, else /run/bulkhead/control.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Subcommand)]
enum Command {
    /// Run the daemon.
    Daemon,
    /// Check the configuration and policies; print every error with file:line:column.
    CheckConfig,
    /// Write a working /etc/bulkhead/bulkhead.toml and policies/ for this
    /// machine: the WAN from the default route, the home network from the
    /// other Ethernet links, free addresses, DHCP served unless another server
    /// answers. Never overwrites a config.
    Init {
        /// The internet side (default: the default route's interface).
        #[arg(long)]
        wan: Option<String>,
        /// A home network interface (repeat for more; default: every other
        /// Ethernet link). Several without --bridge: one network each.
        #[arg(long)]
        lan: Vec<String>,
        /// Bridge the --lan interfaces into one network with this name.
        #[arg(long)]
        bridge: Option<String>,
        /// Write without asking.
        #[arg(long, short)]
        yes: bool,
        /// Print the config instead of writing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// At boot, before the network is up: put back the firewall the daemon
    /// last had in force (and the tunnel's kill switch), so the zones hold from
    /// the first packet. The daemon replaces it when it starts. Needs root.
    Restore {
        /// The state directory (default: the config's state_dir, else /var/lib/bulkhead).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// List devices with their zones.
    Devices {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change one device.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Daemon status.
    Status,
    /// The WireGuard tunnel.
    #[command(subcommand)]
    Vpn(VpnCommand),
    /// The DNS resolver: status, query log, "what would this device get".
    #[command(subcommand)]
    Dns(cli_dns::DnsCommand),
    /// Notifications: the channels' state, a test alert.
    #[command(subcommand)]
    Notify(cli_notify::NotifyCommand),
    /// Services shared across zones (casting, printing): list, on, off.
    #[command(subcommand)]
    Share(cli_share::ShareCommand),
    /// What the firewall refused each device (sampled): counts, targets,
    /// ports and episodes of probing.
    Detect {
        /// Only this device.
        mac: Option<MacAddr>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// How much each device sent and received: the last hour's top talkers,
    /// or one device by path (internet, tunnel, other zones) and minute.
    Traffic {
        /// Only this device.
        mac: Option<MacAddr>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recent alerts: new devices held in quarantine, classifications, identity
    /// suggestions, exhausted DHCP pools.
    Alerts {
        /// How many (newest first).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge alerts: these ids, or all of them.
    AckAlerts {
        /// Alert ids (see `bulkhead alerts --json`); none: all.
        ids: Vec<i64>,
    },
    /// Zones: what each may reach, and its members.
    Zones {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the web UI's one-time setup token (while no password is set).
    SetupToken,
    /// Forget the web UI's password; prints a new setup token to set another.
    ResetPassword,
    /// "This new private MAC looks like that known device" suggestions.
    Suggestions {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a demo home in network namespaces, run the daemon in it and show who
    /// can reach whom. Needs root; removes everything on Ctrl-C.
    #[cfg(feature = "demo")]
    Demo {
        /// Build, probe, print and tear down without waiting for Ctrl-C.
        #[arg(long)]
        once: bool,
        /// The port on this machine's loopback where the demo's web UI is
        /// forwarded (http://127.0.0.1:PORT/).
        #[arg(long, default_value_t = bulkhead::demo::WEB_PORT)]
        port: u16,
    },
    /// Announce one mDNS service on one interface until SIGTERM or SIGINT (for
    /// tests and the demo, run inside a test host's namespace).
    #[cfg(feature = "demo")]
    #[command(hide = true)]
    MdnsAnnounce {
        /// The only interface to announce and answer on.
        #[arg(long)]
        interface: String,
        /// Service type, e.g. _googlecast._tcp.
        #[arg(long = "type")]
        service_type: String,
        /// Instance name, e.g. "Living Room TV".
        #[arg(long)]
        name: String,
        /// Host name, without .local.
        #[arg(long)]
        host: String,
        /// An address of the host (repeat for more).
        #[arg(long = "ip", required = true, value_parser = config::parse_ip)]
        ips: Vec<IpAddr>,
        /// Service port.
        #[arg(long)]
        port: u16,
        /// A TXT pair key=value (repeat for more).
        #[arg(long = "txt", value_parser = bulkhead::discovery::mdns::parse_txt_pair)]
        txt: Vec<(String, String)>,
    },
}

#[derive(Clone, Subcommand)]
enum DeviceCommand {
    /// Put a device in a zone (your decision; it persists and always wins).
    SetZone {
        /// The device's MAC.
        mac: MacAddr,
        /// The zone.
        zone: ZoneId,
    },
    /// Release a device from quarantine: into ZONE, else the zone its
    /// classification suggests, else the policy's approved_zone.
    Approve {
        /// The device's MAC.
        mac: MacAddr,
        /// The zone.
        zone: Option<ZoneId>,
    },
    /// Accept an identity suggestion: NEW gets KNOWN's zone and name.
    Link {
        /// The new (private) MAC.
        new_mac: MacAddr,
        /// The known device's MAC.
        known_mac: MacAddr,
    },
    /// Name a device (no NAME: forget the name).
    Rename {
        /// The device's MAC.
        mac: MacAddr,
        /// The name (at most 64 bytes).
        name: Option<String>,
    },
    /// Block a device: the router forwards nothing from or to it and answers it
    /// nothing (not even DHCP).
    Block {
        /// The device's MAC.
        mac: MacAddr,
    },
    /// Watch a device (a camera, an alarm): you are told when it goes
    /// offline and when it is back. `--off` stops.
    Watch {
        /// The device.
        mac: MacAddr,
        /// Stop watching it.
        #[arg(long)]
        off: bool,
    },
    /// Forget a device: its name, zone and everything learned about it go;
    /// if it shows up again it is a new device, in quarantine.
    Forget {
        /// The device's MAC.
        mac: MacAddr,
    },
    /// Unblock a device: its zone's access again.
    Unblock {
        /// The device's MAC.
        mac: MacAddr,
    },
    /// Whether a device's internet traffic goes through the tunnel: through,
    /// never, or as the policy says.
    Tunnel {
        /// The device's MAC.
        mac: MacAddr,
        /// through | never | policy
        #[arg(value_parser = ["through", "never", "policy"])]
        route: String,
    },
    /// Add a device by hand.
    Add {
        /// The device's MAC.
        mac: MacAddr,
        /// An address it uses.
        #[arg(long, value_parser = config::parse_ip)]
        ip: Option<IpAddr>,
    },
}

#[derive(Clone, Subcommand)]
enum VpnCommand {
    /// Import a wg-quick .conf (as VPN providers hand out) into the config's
    /// [tunnel]: the keys go to files (mode 0600) next to the config, the rest of
    /// the config file is kept as it is.
    Import {
        /// The wg-quick file.
        file: PathBuf,
        /// Name of the private key file, relative to the config file's directory.
        #[arg(long, default_value = "tunnel.key")]
        key_file: String,
        /// Replace key files that hold other keys.
        #[arg(long)]
        force: bool,
    },
    /// The tunnel's state: up/connecting/error, peers, last handshake, traffic,
    /// what is routed through it.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Route traffic to these addresses through the tunnel, via a domain set of
    /// the tunnel policy (what Bulkhead's DNS resolver will do with its answers).
    DomainAdd {
        /// The domain set (tunnel.domain_sets in the policy).
        set: bulkhead::config::DomainSetId,
        /// Addresses.
        #[arg(required = true)]
        addresses: Vec<std::net::IpAddr>,
        /// Seconds they stay in the set.
        #[arg(long, default_value_t = 3600)]
        ttl: u32,
    },
}

/// Logs to stderr at `info`, or as `BULKHEAD_LOG` says (`debug`,
/// `bulkhead::dns=debug,info`: levels per module, no span or field filters —
/// `Targets` instead of `EnvFilter` keeps the regex engine out of the router's
/// binary).
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = || tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO);
    let filter = match std::env::var("BULKHEAD_LOG") {
        Ok(spec) => spec.parse().unwrap_or_else(|e| {
            eprintln!("bulkhead: BULKHEAD_LOG={spec:?} is not a log filter ({e}); logging at info");
            default()
        }),
        Err(_) => default(),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false),
        )
        .with(filter)
        .init();
}

fn socket_path(cli: &Cli) -> PathBuf {
    if let Some(s) = &cli.socket {
        return s.clone();
    }
    config::load(&cli.config)
        .map(|c| c.control_socket)
        .unwrap_or_else(|_| config::fallback_control_socket())
}

fn call(socket: &Path, req: Request) -> anyhow::Result<Response> {
    match control::call(socket, &req)? {
        Response::Error { message } => anyhow::bail!("{message}"),
        other => Ok(other),
    }
}

/// Names come from the network (later: DHCP, mDNS): print them escaped, so a
/// hostile name cannot drive the terminal.
fn show(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Runs the command: a request to the daemon (see [`control_command`]), or one of
/// the commands that do more (or other) than one request.
fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(ControlCommand { request, print, json }) = control_command(&cli.command) {
        return print(call(&socket_path(&cli), request)?, json);
    }
    match &cli.command {
        Command::Daemon => {
            // A parent (the demo, a shell script) may have blocked signals, and
            // exec keeps the mask: unblock, or SIGTERM/SIGHUP would never arrive.
            nix::sys::signal::SigSet::all().thread_unblock()?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(bulkhead::runtime::run(cli.config.clone()))
        }
        Command::Init {
            wan,
            lan,
            bridge,
            yes,
            dry_run,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(bulkhead::init::run(bulkhead::init::InitOptions {
                config_path: cli.config.clone(),
                request: bulkhead::init::InitRequest {
                    wan: wan.clone(),
                    lan: lan.clone(),
                    bridge: bridge.clone(),
                },
                yes: *yes,
                dry_run: *dry_run,
            }))
        }
        Command::Restore { state_dir } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let done = rt.block_on(bulkhead::runtime::restore(&cli.config, state_dir.clone()))?;
            println!("bulkhead: {done}");
            Ok(())
        }
        Command::CheckConfig => match config::load(&cli.config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} segments, {} zones, {} pinned devices)",
                    cli.config.display(),
                    c.segments.len(),
                    c.policy.zones.len(),
                    c.policy.devices.len()
                );
                Ok(())
            }
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("{e}");
                }
                anyhow::bail!("{} error(s)", errors.0.len())
            }
        },
        Command::ResetPassword => reset_password(&socket_path(&cli)),
        Command::Vpn(VpnCommand::Import { file, key_file, force }) => vpn_import(&cli.config, file, key_file, *force),
        #[cfg(feature = "demo")]
        Command::Demo { once, port } => bulkhead::demo::run(*once, *port),
        #[cfg(feature = "demo")]
        Command::MdnsAnnounce {
            interface,
            service_type,
            name,
            host,
            ips,
            port,
            txt,
        } => mdns_announce(bulkhead::discovery::mdns::AnnounceSpec {
            interface: interface.clone(),
            service_type: service_type.clone(),
            instance: name.clone(),
            host: host.clone(),
            addresses: ips.clone(),
            port: *port,
            txt: txt.clone(),
        }),
        _ => unreachable!("control_command() takes every other command"),
    }
}

/// How a daemon command prints the answer: the answer, and whether `--json` was
/// given.
type Print = fn(Response, bool) -> anyhow::Result<()>;

/// A subcommand that is one request to the daemon, and how its answer is
/// printed. A `Response::Error` never reaches `print`: [`call`] makes it the
/// command's error.
struct ControlCommand {
    request: Request,
    print: Print,
    json: bool,
}

/// The daemon request of `command`, if it is one request (the others are run
/// by [`run`]).
fn control_command(command: &Command) -> Option<ControlCommand> {
    let (request, print, json): (Request, Print, bool) = match command.clone() {
        Command::Devices { json } => (Request::Devices, print_devices, json),
        Command::Device(device) => (device_request(device), print_done, false),
        // The whole answer, as JSON.
        Command::Status => (Request::Status, |answer, _| print_json(&answer), false),
        Command::Vpn(VpnCommand::Status { json }) => (Request::Tunnel, print_tunnel, json),
        Command::Vpn(VpnCommand::DomainAdd { set, addresses, ttl }) => {
            let request = Request::DomainAdd {
                set,
                addresses,
                ttl_secs: ttl,
            };
            (request, print_done, false)
        }
        Command::Dns(dns) => cli_dns::dns_request(dns),
        Command::Notify(n) => cli_notify::notify_request(n),
        Command::Share(c) => cli_share::share_request(c),
        Command::Detect { mac, json } => {
            let (request, print) = cli_detect::detect_request(mac);
            (request, print, json)
        }
        Command::Traffic { mac, json } => {
            let (request, print) = cli_traffic::traffic_request(mac);
            (request, print, json)
        }
        Command::Alerts { limit, json } => (Request::Alerts { limit }, print_alerts, json),
        Command::AckAlerts { ids } => {
            let ids = (!ids.is_empty()).then_some(ids);
            (Request::AckAlerts { ids }, print_acknowledged, false)
        }
        Command::Zones { json } => (Request::Zones, print_zones, json),
        Command::SetupToken => (Request::Auth, print_setup_token, false),
        Command::Suggestions { json } => (Request::Suggestions, print_suggestions, json),
        Command::Daemon
        | Command::CheckConfig
        | Command::Restore { .. }
        | Command::Init { .. }
        | Command::ResetPassword
        | Command::Vpn(VpnCommand::Import { .. }) => return None,
        #[cfg(feature = "demo")]
        Command::Demo { .. } | Command::MdnsAnnounce { .. } => return None,
    };
    Some(ControlCommand { request, print, json })
}

/// The request of a `device` subcommand.
fn device_request(command: DeviceCommand) -> Request {
    match command {
        DeviceCommand::SetZone { mac, zone } => Request::SetZone { mac, zone },
        DeviceCommand::Approve { mac, zone } => Request::Approve { mac, zone },
        DeviceCommand::Link { new_mac, known_mac } => Request::Link { new_mac, known_mac },
        DeviceCommand::Rename { mac, name } => Request::Rename { mac, name },
        DeviceCommand::Block { mac } => Request::Block { mac, blocked: true },
        DeviceCommand::Unblock { mac } => Request::Block { mac, blocked: false },
        DeviceCommand::Watch { mac, off } => Request::Watch { mac, watched: !off },
        DeviceCommand::Forget { mac } => Request::Forget { mac },
        DeviceCommand::Tunnel { mac, route } => {
            let route = match route.as_str() {
                "through" => Some(true),
                "never" => Some(false),
                _ => None,
            };
            Request::DeviceTunnel { mac, route }
        }
        DeviceCommand::Add { mac, ip } => Request::AddDevice { mac, ip },
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A change's answer: the daemon's sentence.
fn print_done(answer: Response, _json: bool) -> anyhow::Result<()> {
    if let Response::Done { message } = answer {
        println!("{message}");
    }
    Ok(())
}

fn print_acknowledged(answer: Response, _json: bool) -> anyhow::Result<()> {
    let Response::Acknowledged { count } = answer else {
        anyhow::bail!("unexpected answer")
    };
    println!("{count} alert(s) acknowledged");
    Ok(())
}

fn print_devices(answer: Response, json: bool) -> anyhow::Result<()> {
    let Response::Devices { devices } = answer else {
        anyhow::bail!("unexpected answer")
    };
    if json {
        return print_json(&devices);
    }
    println!(
        "{:<17}  {:<12}  {:<16}  {:<24}  {:<20}  {:<10}  addresses",
        "mac", "zone", "why", "name", "vendor", "class"
    );
    for d in devices {
        let addrs: Vec<String> = d.addresses.iter().map(|a| a.to_string()).collect();
        let class = d.class.as_ref().map_or("-", |c| c.class.as_str());
        println!(
            "{:<17}  {:<12}  {:<16}  {:<24}  {:<20}  {:<10}  {}",
            d.mac,
            d.zone,
            d.reason.as_str(),
            show(d.best_name().as_deref().unwrap_or("-")),
            show(d.vendor.as_deref().unwrap_or("-")),
            class,
            addrs.join(",")
        );
    }
    Ok(())
}

fn print_zones(answer: Response, json: bool) -> anyhow::Result<()> {
    let Response::Zones { zones } = answer else {
        anyhow::bail!("unexpected answer")
    };
    if json {
        return print_json(&zones);
    }
    for z in zones {
        let mut traits = Vec::new();
        if z.is_unknown_zone {
            traits.push("unknown devices land here".to_string());
        }
        if z.internet {
            traits.push("internet".into());
        }
        if z.tunnel {
            traits.push("through the tunnel".into());
        }
        if !z.reach_zones.is_empty() {
            let r: Vec<String> = z.reach_zones.iter().map(|r| r.to_string()).collect();
            traits.push(format!("reaches {}", r.join(", ")));
        }
        if !z.router_services.is_empty() {
            traits.push(format!("router: {}", z.router_services.join(", ")));
        }
        println!("{} ({} devices): {}", z.id, z.members.len(), traits.join("; "));
        if !z.description.is_empty() {
            println!("  {}", show(&z.description));
        }
    }
    Ok(())
}

fn print_alerts(answer: Response, json: bool) -> anyhow::Result<()> {
    let Response::Alerts { alerts } = answer else {
        anyhow::bail!("unexpected answer")
    };
    if json {
        return print_json(&alerts);
    }
    for a in alerts {
        // The sentence names the device; its MAC (the id the other
        // commands take) stands beside it.
        println!(
            "{:>6} {} {} {:<24}  {:<17}  {}",
            a.id,
            bulkhead::clock::local(a.at),
            if a.acknowledged { " " } else { "*" },
            a.kind.as_str(),
            a.mac.map_or_else(|| "-".to_string(), |m| m.to_string()),
            show(&a.message)
        );
    }
    Ok(())
}

fn print_suggestions(answer: Response, json: bool) -> anyhow::Result<()> {
    let Response::Suggestions { suggestions } = answer else {
        anyhow::bail!("unexpected answer")
    };
    if json {
        return print_json(&suggestions);
    }
    for s in suggestions {
        println!(
            "{} looks like {}{}: {}",
            s.new_mac,
            s.known_mac,
            if s.accepted { " (accepted)" } else { "" },
            show(&s.reasons.join(", "))
        );
    }
    Ok(())
}

fn print_setup_token(answer: Response, _json: bool) -> anyhow::Result<()> {
    match answer {
        Response::Auth {
            setup_token: Some(token),
            ..
        } => {
            println!("{token}");
            eprintln!("enter it on the web UI's setup page to choose the password");
        }
        Response::Auth {
            password_hash: Some(_), ..
        } => println!("a web UI password is already set; forgotten? bulkhead reset-password"),
        Response::Auth { .. } => {
            anyhow::bail!("the daemon has no setup token (it had no randomness at start); restart it")
        }
        _ => anyhow::bail!("unexpected answer"),
    }
    Ok(())
}

/// `vpn status`.
fn print_tunnel(answer: Response, json: bool) -> anyhow::Result<()> {
    let Response::Tunnel(v) = answer else {
        anyhow::bail!("unexpected answer")
    };
    if json {
        return print_json(&v);
    }
    if !v.configured {
        println!("no tunnel configured ([tunnel] in bulkhead.toml; `bulkhead vpn import FILE`)");
        return Ok(());
    }
    println!(
        "tunnel {}: {}{}",
        v.interface.as_deref().unwrap_or("?"),
        v.state,
        if v.attempts > 0 {
            format!(" (attempt {})", v.attempts)
        } else {
            String::new()
        }
    );
    if let Some(k) = &v.public_key {
        println!("  public key: {k}");
    }
    if let Some(p) = v.listen_port {
        println!("  listening on UDP {p}");
    }
    for p in &v.peers {
        println!("  peer {}", p.public_key);
        println!(
            "    endpoint: {} ({})",
            p.endpoint.as_deref().unwrap_or("unknown"),
            p.endpoint_config.as_deref().unwrap_or("learned")
        );
        match p.last_handshake {
            Some(t) => println!("    last handshake: {} s ago", bulkhead::inventory::unix_now() - t),
            None => println!("    last handshake: never"),
        }
        println!("    transfer: {} B received, {} B sent", p.rx_bytes, p.tx_bytes);
    }
    for r in &v.routed {
        println!("  routed: {r}");
    }
    for t in v.transitions.iter().rev().take(5) {
        println!("  {} {} -> {}: {}", t.at, t.from, t.to, t.reason);
    }
    Ok(())
}

/// `reset-password`: two requests, the reset and then the new setup token.
fn reset_password(socket: &Path) -> anyhow::Result<()> {
    print_done(call(socket, Request::ResetPassword)?, false)?;
    match call(socket, Request::Auth)? {
        Response::Auth {
            setup_token: Some(token),
            ..
        } => println!("web UI setup token: {token}"),
        _ => anyhow::bail!("the daemon made no new setup token (no randomness?); restart it"),
    }
    Ok(())
}

/// Announces `spec` until SIGTERM or SIGINT, then says goodbye.
#[cfg(feature = "demo")]
fn mdns_announce(spec: bulkhead::discovery::mdns::AnnounceSpec) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};

    // As for the daemon: a parent may have blocked signals, and exec keeps the mask.
    nix::sys::signal::SigSet::all().thread_unblock()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let daemon = bulkhead::discovery::mdns::announce(&spec)?;
        let monitor = daemon.monitor()?;
        tracing::info!(
            service_type = spec.service_type,
            instance = ?spec.instance,
            interface = spec.interface,
            "announcing"
        );
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                event = monitor.recv_async() => match event {
                    Ok(mdns_sd::DaemonEvent::Error(e)) => tracing::warn!(error = %e, "mDNS daemon"),
                    Ok(other) => tracing::debug!(event = ?other, "mDNS daemon"),
                    Err(_) => anyhow::bail!("the mDNS daemon stopped"),
                },
            }
        }
        // Goodbye packets go out before the daemon reports that it has stopped.
        let stopped = daemon.shutdown()?;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stopped.recv_async()).await;
        Ok(())
    })
}

/// `bulkhead vpn import`: prints what was imported, never a key.
fn vpn_import(config_path: &Path, file: &Path, key_file: &str, force: bool) -> anyhow::Result<()> {
    use bulkhead::tunnel::wgquick;
    if std::fs::read_to_string(config_path).is_ok_and(|t| config::uci::looks_like_uci(&t)) {
        anyhow::bail!(
            "{} is UCI (OpenWrt): write the tunnel there as `config tunnel` and `config peer` sections \
             (the package's example shows them), or with uci set; vpn import edits bulkhead.toml only",
            config_path.display()
        );
    }
    let report = wgquick::import_files(config_path, file, key_file, force)?;
    let Some(tunnel) = &report.config.tunnel else {
        anyhow::bail!("the imported configuration has no tunnel")
    };
    println!(
        "{}: imported {} into [tunnel] (interface {}, private key in {})",
        config_path.display(),
        file.display(),
        tunnel.interface,
        report.key_file.display()
    );
    let addrs: Vec<String> = tunnel.addresses.iter().map(|a| a.to_string()).collect();
    println!("  addresses: {}", addrs.join(", "));
    println!("  mtu: {}", tunnel.mtu);
    if let Some(p) = tunnel.listen_port {
        println!("  listen port: {p}");
    }
    for (i, p) in tunnel.peers.iter().enumerate() {
        let allowed: Vec<String> = p.allowed_ips.iter().map(|a| a.to_string()).collect();
        println!(
            "  peer {i}: endpoint {}, allowed IPs {}{}{}",
            p.endpoint
                .as_ref()
                .map_or_else(|| "none".to_string(), |e| show(&e.to_string())),
            allowed.join(", "),
            p.persistent_keepalive
                .map_or_else(String::new, |k| format!(", keepalive {k}s")),
            if p.preshared_key.is_some() {
                ", preshared key"
            } else {
                ""
            }
        );
    }
    if !report.imported.dns.is_empty() {
        let dns: Vec<String> = report.imported.dns.iter().map(|a| a.to_string()).collect();
        println!("  DNS servers in the file (not used by Bulkhead): {}", dns.join(", "));
    }
    for (line, key) in &report.imported.ignored {
        println!("  ignored (line {line}): {}", show(key));
    }
    Ok(())
}

/// What SIGPIPE does. Rust starts every program with it ignored, so a
/// write to a closed pipe (`bulkhead alerts | head -n 1`) returns an error
/// and `println!` panics. The CLI takes the usual Unix behaviour back: it
/// ends quietly. The daemon and the demo keep it ignored, where a closed
/// pipe (to `nft`) must be an error to handle, never the end of the router.
#[allow(unsafe_code)]
fn sigpipe(default: bool) {
    let action = if default { libc::SIG_DFL } else { libc::SIG_IGN };
    // SAFETY: setting a signal's disposition to SIG_DFL or SIG_IGN installs
    // no handler; nothing else in the process is running yet (only the main
    // thread) or depends on the old one.
    unsafe {
        libc::signal(libc::SIGPIPE, action);
    }
}

fn main() -> ExitCode {
    sigpipe(true);
    init_logging();
    let mut cli = Cli::parse();
    cli.config = default_config_here(cli.config, &cli.command);
    let long_running = matches!(cli.command, Command::Daemon);
    #[cfg(feature = "demo")]
    let long_running = long_running || matches!(cli.command, Command::Demo { .. } | Command::MdnsAnnounce { .. });
    if long_running {
        sigpipe(false);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkhead: {}", format_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// On OpenWrt the configuration is UCI's `/etc/config/bulkhead`: when no
/// `--config` was given, there is no `bulkhead.toml` and the UCI file exists,
/// every command but `init` (which writes a `bulkhead.toml`) reads that one.
fn default_config_here(given: PathBuf, command: &Command) -> PathBuf {
    let default = Path::new(DEFAULT_CONFIG_PATH);
    let uci = Path::new(config::uci::OPENWRT_CONFIG_PATH);
    if given == default && !matches!(command, Command::Init { .. }) && !default.exists() && uci.exists() {
        uci.to_path_buf()
    } else {
        given
    }
}

fn format_chain(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request `bulkhead ARGS` sends, if it is one request.
    fn request(args: &[&str]) -> Option<Request> {
        let cli = Cli::try_parse_from(["bulkhead"].iter().chain(args)).expect("parses");
        control_command(&cli.command).map(|c| c.request)
    }

    #[test]
    fn clap_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn daemon_commands_send_their_request() {
        let (mac, m) = (MacAddr([2, 0, 0, 0, 0, 1]), "02:00:00:00:00:01");
        let unblock = Request::Block { mac, blocked: false };
        assert_eq!(request(&["device", "unblock", m]), Some(unblock));
        let never = Request::DeviceTunnel {
            mac,
            route: Some(false),
        };
        assert_eq!(request(&["device", "tunnel", m, "never"]), Some(never));
        let policy = Request::DeviceTunnel { mac, route: None };
        assert_eq!(request(&["device", "tunnel", m, "policy"]), Some(policy));
        assert_eq!(request(&["ack-alerts"]), Some(Request::AckAlerts { ids: None }));
        assert_eq!(request(&["alerts", "--json"]), Some(Request::Alerts { limit: 50 }));
        assert_eq!(request(&["setup-token"]), Some(Request::Auth));
        for local in ["daemon", "check-config", "reset-password"] {
            assert_eq!(request(&[local]), None, "{local}");
        }
    }
}
