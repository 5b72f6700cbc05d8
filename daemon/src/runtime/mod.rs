//! The runtime: the daemon's one event loop and everything that touches
//! sockets, signals, netlink and the clock. It owns the core
//! ([`DaemonState`]) and feeds it, one event at a time, in order.
//!
//! - `mod.rs`: start-up (rules before links, then discovery sources), the loop
//!   (`select!` over control requests, DHCP, mDNS, neighbours, link changes,
//!   the tunnel, services, timers and signals), reload and shutdown.
//! - `control_socket.rs`: the CLI's socket. `web_backend.rs`: the web UI's
//!   [`bulkhead_web::Backend`], which asks the loop the same requests.
//! - `dhcp_io.rs`: DHCP sockets and the observed lease file.
//! - `tunnel.rs`: the WireGuard device and its kill-switch routing.
//! - `services.rs`: the services seat (snapshots out, requests in).
//! - `live.rs`: what open web pages are told after each turn.

mod boot_save;
mod control_socket;
mod dhcp_io;
mod dns_bypass;
mod live;
mod mdns;
mod restore;
mod sd_notify;
pub mod services;
pub use restore::{restore, DEFAULT_STATE_DIR};
mod tunnel;
pub(crate) mod web_backend;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::core::DaemonState;
use control_socket::{accept_loop, bind_control, Job};
use live::{health_of, LiveSeen};
use tunnel::{tunnel_alerts, tunnel_view};

use crate::config::{self, Config, MacAddr};
use crate::control::{Request, Response};
use crate::discovery::neigh::{self, NeighbourUpdate, NeighbourWatch};
use crate::firewall::{error_chain, ConntrackNetlink, NftCli};
use crate::inventory::unix_now;
use crate::inventory::UnixTime;
use crate::net::{self, NetApplier};
use crate::policy::{desired_net, link_facts, LinkFacts};
use crate::store::Store;

/// How long domain-set addresses found in the kernel at start stay held:
/// twice the longest a client may still use such an answer (the resolver
/// clamps domain-set answers' TTLs to its 300 s hold floor, plus 60 s grace).
const ADOPTED_DOMAIN_SECS: u32 = 720;

/// Logs every config error, one per line, and returns a summary error.
pub fn report_config_errors(path: &Path, errors: &config::ConfigErrors) -> anyhow::Error {
    for e in &errors.0 {
        tracing::error!("{e}");
    }
    anyhow::anyhow!("{} has {} error(s)", path.display(), errors.0.len())
}

/// Brings links and addresses in line; returns what the firewall's
/// structure needs to know of them afterwards.
async fn reconcile_links(
    handle: &rtnetlink::Handle,
    config: &Config,
    flowtables: bool,
) -> Result<LinkFacts, net::NetError> {
    let mut links = net::RtnetlinkNet { handle: handle.clone() };
    let (_, report) = net::reconcile(&mut links, &desired_net(config)).await?;
    tracing::info!(?report, "links reconciled");
    let observed = links.observe().await?;
    Ok(read_link_facts(config, &observed, flowtables))
}

/// [`link_facts`], with which bridge ports are Wi-Fi interfaces (sysfs).
fn read_link_facts(config: &Config, observed: &net::ObservedNet, flowtables: bool) -> LinkFacts {
    let mut facts = link_facts(config, observed, flowtables);
    facts.wireless_ports = net::wireless_ports(observed);
    facts
}

/// Whether to use a flowtable: the config wants one (`wan.flow_offload`),
/// the kernel takes one, and connections can be cut over ctnetlink (the
/// only way an offloaded flow ends when its device is blocked or moved).
/// Asked once, at start.
fn probe_flowtables(config: &Config) -> bool {
    if !config.flow_offload {
        return false;
    }
    if let Err(e) = ConntrackNetlink.dump(libc::AF_INET as u8) {
        tracing::info!(reason = %error_chain(&e), "flow offload: off, connections cannot be cut here (ctnetlink)");
        return false;
    }
    match crate::firewall::probe_flowtables(&NftCli::default()) {
        Ok(()) => {
            tracing::info!("flow offload: established flows take the kernel's flowtable");
            true
        }
        Err(e) => {
            tracing::info!(reason = %error_chain(&e), "flow offload: this kernel has no flowtables; every packet walks the rules");
            false
        }
    }
}

/// Deletes the links [`net::retired_links`] names.
async fn retire_links(nl: &rtnetlink::Handle, old: &net::DesiredNet, new: &net::DesiredNet) {
    let observed = match net::observe(nl).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "reload: could not read links to retire");
            return;
        }
    };
    for (name, index) in net::retired_links(old, new, &observed) {
        match nl.link().del(index).execute().await {
            Ok(()) => tracing::info!(link = %name, "net: removed the link of a dropped segment"),
            Err(e) => tracing::error!(link = %name, error = %e, "net: could not remove the link of a dropped segment"),
        }
    }
}

/// What the homeowner is told after a damaged database was replaced.
fn store_recovery_message(r: &crate::store::Recovery) -> String {
    let kept = match &r.kept_as {
        Some(p) => format!("it is kept as {}", p.display()),
        None => "it could not be moved aside".to_string(),
    };
    let now_where = if r.in_memory {
        "No new database could be made, so Bulkhead keeps everything in memory until it restarts."
    } else {
        "A new database was started."
    };
    format!(
        "The device database was damaged ({}); {kept}. {now_where} {} device(s) and their decisions \
         were read back; devices not read back are treated as new (quarantined) until you decide again.",
        r.why, r.salvaged
    )
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(config_path: PathBuf) -> anyhow::Result<()> {
    let config = config::load(&config_path).map_err(|e| report_config_errors(&config_path, &e))?;
    // First, so a second daemon stops before it touches the store or the tables.
    let listener = bind_control(&config.control_socket)?;
    let now = unix_now();
    // A damaged database does not keep the router from starting: it starts
    // with what could be read (fail-closed: the rest waits in quarantine)
    // and tells the homeowner.
    let (store, recovery) = Store::open_or_recover(&config.state_dir, now).context("opening the store")?;
    let mut state = DaemonState::new(config, store, Box::new(NftCli::default()), Box::new(ConntrackNetlink))
        .context("loading devices")?;
    if let Some(r) = recovery {
        state.raise(crate::alerts::Alert::new(
            now,
            crate::alerts::AlertKind::StoreFailed,
            None,
            store_recovery_message(&r),
        ));
    }

    // Rules before links: on a first start, the bridge must not pass a frame before
    // the bridge table exists. On a restart the previous rules are still in force
    // and this replaces them atomically, so it must already know the ports of
    // existing bridges (read-only observation first), or they would go unpoliced
    // until the links are reconciled.
    let (nl, nl_task) = net::open().context("opening rtnetlink")?;
    let flowtables = probe_flowtables(&state.config);
    match net::observe(&nl).await {
        Ok(observed) => state.links = read_link_facts(&state.config, &observed, flowtables),
        Err(e) => tracing::warn!(error = %error_chain(&e), "could not read links before the first apply"),
    }
    state.links.flowtables = flowtables;
    // A restart: what the domain sets held stays (the tables are replaced now).
    let adopted = state.adopt_previous_domain_sets(unix_now(), ADOPTED_DOMAIN_SECS);
    if adopted > 0 {
        tracing::info!(adopted, "domain set addresses kept from the previous run");
    }
    state.reconcile().context("applying the firewall")?;
    match reconcile_links(&nl, &state.config, flowtables).await {
        Ok(facts) if facts != state.links => {
            let radios_changed = facts.wireless_ports != state.links.wireless_ports;
            state.links = facts;
            if radios_changed {
                state.rebind_ports();
            }
            state.reconcile().context("applying the firewall")?;
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %error_chain(&e), "could not set up segment links"),
    }
    // A router forwards; a fresh Debian box does not. Only now, with the
    // zones in force.
    match net::forwarding::enable(&net::forwarding::ProcSys, &state.config.wan_interface) {
        Ok(r) if !r.changed.is_empty() => tracing::info!(changed = ?r.changed, "forwarding turned on"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "could not turn forwarding on; the home networks are not routed"),
    }
    // What `bulkhead restore` puts back at the next boot.
    let mut boot_saver = boot_save::BootSaver::new(state.config.state_dir.clone());
    boot_saver.maybe_save(&state, std::time::Instant::now(), unix_now(), false);

    // Neighbours: subscribe first, then dump, so nothing in between is missed.
    let mut neighbours = match NeighbourWatch::start() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "cannot follow the neighbour table; IPv6 addresses will not be learned");
            None
        }
    };
    let mut ifnames = read_neighbour_table(&mut state, &nl).await;
    let mut links_dirty_since: Option<tokio::time::Instant> = None;

    // mDNS on the LAN segments only (never the WAN).
    let lan: Vec<String> = state.config.segments.iter().map(|s| s.interface.clone()).collect();
    let mut mdns = mdns::MdnsIntake::start(lan);
    // SSDP/UPnP on the LAN segments (descriptions as evidence).
    let ssdp_lan: Vec<(String, std::net::Ipv4Addr)> = state
        .config
        .segments
        .iter()
        .map(|s| (s.interface.clone(), s.ipv4.addr()))
        .collect();
    let mut ssdp = match crate::discovery::ssdp::SsdpWatcher::start(&ssdp_lan) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "SSDP discovery is off");
            None
        }
    };

    // DHCP: sockets for serving and observing segments (bridges exist now).
    let mut dhcp = dhcp_io::DhcpIo::new(&state)?;
    dhcp.sync(&state);
    dhcp.poll_lease_file(&mut state, unix_now());

    // The WireGuard tunnel: kill-switch routing first, then the device.
    let (mut vpn, mut vpn_events) = tunnel::TunnelRuntime::new();
    let t = vpn
        .apply(state.config.tunnel.as_ref(), &nl, std::time::Instant::now())
        .await;
    tunnel_alerts(&mut state, &mut vpn, t);

    let (jobs_tx, mut jobs) = mpsc::channel::<Job>(64);
    tokio::spawn(accept_loop(listener, jobs_tx.clone()));
    let health = Arc::new(RwLock::new(health_of(&state)));
    let (live, _) = tokio::sync::broadcast::channel::<bulkhead_web::model::LiveEvent>(64);
    let backend: Arc<dyn bulkhead_web::Backend> = Arc::new(web_backend::WebBackend::new(
        health.clone(),
        jobs_tx.clone(),
        live.clone(),
    ));
    // One router (one session store and rate limiter) on every address. The
    // Host allowlist: each listen address and localhost on its port.
    let web_ui = bulkhead_web::router(
        backend.clone(),
        bulkhead_web::WebSettings {
            allowed_hosts: state.config.web.allowed_hosts(),
        },
    );
    for addr in state.config.web.listen.clone() {
        let web_ui = web_ui.clone();
        tokio::spawn(async move {
            if let Err(e) = bulkhead_web::serve_router(addr, web_ui).await {
                tracing::error!(%addr, error = %e, "web UI stopped");
            }
        });
    }

    // Services get a handle from here: `services.handle()`.
    let mut services = services::ServiceHub::default();
    // The resolver: lists loaded before it listens, the first snapshot
    // published before it answers.
    let mut dns = start_dns(&state, &mut services).await;
    let mut detect = start_detect(&state, &mut services);
    let mut notify = start_notify(&state, &mut services);
    let mut share = start_share(&state, &mut services);
    let mut traffic = crate::traffic::TrafficSettings::from_config(&state.config)
        .map(|t| crate::traffic::TrafficService::start(t, services.handle()));
    services.publish(&mut state);
    services.publish_router(&state, state.config.tunnel.is_some().then(|| vpn.state_name()));
    let mut live_seen = LiveSeen::default();
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut stop = Stop::new()?;
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut bypass = dns_bypass::BypassWatch::default();
    let mut clock = crate::clock::ClockWatch::new(std::time::Instant::now(), unix_now());
    tracing::info!(config = %config_path.display(), socket = %state.config.control_socket.display(), "bulkhead running");
    for addr in &state.config.web.listen {
        tracing::info!("web UI at http://{addr}/");
    }
    // The one place the token is shown without asking (stdout, not the log):
    // whoever reads the daemon's console may set the web UI's first password.
    match state.setup_token() {
        Some(token) => println!("bulkhead: web UI setup token: {token}"),
        None if state.config.web.listen.is_empty() => {}
        None => tracing::info!("web UI password is set (forgotten? bulkhead reset-password)"),
    }
    println!("bulkhead: ready");
    sd_notify::notify(&ready_status(&state));
    loop {
        tokio::select! {
            Some((req, reply)) = jobs.recv() => {
                let shares_may_change = matches!(req, Request::Share { .. });
                let _ = reply.send(answer(&mut state, req, &vpn, &dhcp, &mdns, Running {
                    dns: dns.as_ref(),
                    detect: detect.as_ref(),
                    notify: notify.as_ref(),
                    share: share.as_ref(),
                    traffic: traffic.as_ref(),
                }));
                // The homeowner may have shared something (or stopped).
                if shares_may_change {
                    refresh_share(&state, &mut share, &mut services);
                }
            }
            event = vpn_events.next() => vpn.on_event(event, &mut state, &nl).await,
            Some(call) = services.next() => {
                settle_clock(&mut clock, &mut state, &mut dhcp);
                services::ServiceHub::answer(&mut state, call, unix_now());
            }
            event = dhcp.next() => {
                settle_clock(&mut clock, &mut state, &mut dhcp);
                dhcp.on_event(event, &mut state, unix_now()).await;
            }
            _ = hup.recv() => {
                sd_notify::notify(&sd_notify::reloading());
                reload(&mut state, &mut dhcp, &config_path, &nl).await;
                dhcp.sync(&state);
                let settings = crate::dns::DnsSettings::from_config(&state.config);
                if dns.as_ref().map(|d| d.settings()) != Some(&settings) || !state.config.dns.enabled {
                    // Old sockets close before the new ones bind.
                    if let Some(old) = dns.take() {
                        old.stop().await;
                    }
                    dns = start_dns(&state, &mut services).await;
                }
                let detect_settings = crate::detect::DetectSettings::from_config(&state.config);
                if detect.as_ref().map(|d| d.settings()) != detect_settings.as_ref() {
                    drop(detect.take());
                    detect = start_detect(&state, &mut services);
                }
                if notify.as_ref().map(|n| n.config()) != Some(&state.config.notify) {
                    drop(notify.take());
                    notify = start_notify(&state, &mut services);
                }
                refresh_share(&state, &mut share, &mut services);
                let traffic_settings = crate::traffic::TrafficSettings::from_config(&state.config);
                if traffic.as_ref().map(|t| t.settings()) != traffic_settings.as_ref() {
                    drop(traffic.take());
                    traffic = traffic_settings.map(|t| crate::traffic::TrafficService::start(t, services.handle()));
                }
                let t = vpn.apply(state.config.tunnel.as_ref(), &nl, std::time::Instant::now()).await;
                tunnel_alerts(&mut state, &mut vpn, t);
                sd_notify::notify(&ready_status(&state));
            }
            _ = stop.recv() => {
                sd_notify::notify("STOPPING=1");
                break;
            }
            _ = tick.tick() => {
                settle_clock(&mut clock, &mut state, &mut dhcp);
                let now = unix_now();
                dhcp.tick(&mut state, now);
                state.handle_timeout(now);
                bypass.check(&mut state, now);
            }
            Some(observation) = next_ssdp(&mut ssdp) => {
                // An address nobody holds yet: the device announces again.
                state.ssdp_seen(&observation, unix_now());
            }
            input = mdns.next() => mdns.handle(input, &mut state, unix_now()),
            update = next_neighbour(&mut neighbours) => match update {
                NeighbourUpdate::LinkChanged => {
                    links_dirty_since.get_or_insert_with(tokio::time::Instant::now);
                }
                // Notifications were dropped: read the table again (what
                // changed meanwhile is unknown) and look at the links again.
                NeighbourUpdate::Overrun => {
                    tracing::warn!("neighbour notifications overran the socket; reading the table again");
                    ifnames = read_neighbour_table(&mut state, &nl).await;
                    links_dirty_since.get_or_insert_with(tokio::time::Instant::now);
                }
                u => feed_neighbour(&mut state, &ifnames, u, unix_now()),
            },
            // Links settle in bursts (a port joins a bridge in several messages):
            // look once, a moment after the first change.
            _ = tokio::time::sleep_until(links_dirty_since.unwrap_or_else(tokio::time::Instant::now) + LINK_SETTLE), if links_dirty_since.is_some() => {
                links_dirty_since = None;
                ifnames = interface_names(&nl).await;
                refresh_links(&mut state, &nl).await;
                mdns.links_changed();
                // A port that joined since: where the bridge learned MACs on it.
                read_forwarding_tables(&mut state, &nl, &ifnames).await;
                dhcp.sync(&state);
            }
        }
        // mDNS evidence waiting for its device: try again now that something
        // happened (a lease or a neighbour may have brought the device).
        mdns.retry(&mut state, unix_now());
        services.publish(&mut state);
        services.publish_router(&state, state.config.tunnel.is_some().then(|| vpn.state_name()));
        if let Ok(mut h) = health.write() {
            *h = health_of(&state);
        }
        live_seen.notify(&state, &vpn, &live);
        boot_saver.maybe_save(&state, std::time::Instant::now(), unix_now(), false);
    }
    if let Some(d) = dns.take() {
        d.stop().await;
    }
    // Leave the rules in force: stopping Bulkhead must not open the network.
    state.shutdown(unix_now());
    boot_saver.maybe_save(&state, std::time::Instant::now(), unix_now(), true);
    nl_task.abort();
    let _ = std::fs::remove_file(&state.config.control_socket);
    tracing::info!("bulkhead stopped; firewall rules stay in force");
    Ok(())
}

/// `READY=1` and a one-line status for `systemctl status`.
fn ready_status(state: &DaemonState) -> String {
    let snapshot = state.snapshot();
    format!(
        "READY=1\nSTATUS=enforcing {} zone(s) for {} device(s)",
        state.config.policy.zones.len(),
        snapshot.devices.len()
    )
}

/// One control request (CLI, web UI). The core answers all but what the
/// runtime holds: the tunnel's state, the DHCP server's and mDNS browser's
/// counters in the status; a new setup token is printed where the first one was.
fn answer(
    state: &mut DaemonState,
    req: Request,
    vpn: &tunnel::TunnelRuntime,
    dhcp: &dhcp_io::DhcpIo,
    mdns: &mdns::MdnsIntake,
    running: Running<'_>,
) -> Response {
    let Running {
        dns,
        detect,
        notify,
        share,
        traffic,
    } = running;
    match (&req, notify) {
        (Request::NotifyStatus, Some(n)) => {
            return Response::Notify {
                status: Some(Box::new(n.status())),
            }
        }
        (Request::NotifyTest { channel }, Some(n)) => {
            return match n.test(channel) {
                Ok(message) => Response::Done { message },
                Err(message) => Response::Error { message },
            }
        }
        _ => {}
    }
    if let Request::Traffic { mac } = req {
        return Response::Traffic {
            report: traffic.map(|t| Box::new(t.report(mac, unix_now()))),
        };
    }
    if let Request::Detect { mac } = req {
        let report = detect.map(|d| {
            let mut r = d.report();
            if let Some(mac) = mac {
                r.devices.retain(|m, _| *m == mac);
            }
            Box::new(r)
        });
        return Response::Detect { report };
    }
    match (req, dns) {
        (Request::DnsStatus, Some(dns)) => Response::Dns(Box::new(dns.status())),
        (Request::DnsRefresh, Some(dns)) => {
            dns.refresh_lists();
            Response::Done {
                message: "downloading the URL blocklists now (bulkhead dns status shows the result)".into(),
            }
        }
        (Request::DnsLog { filter }, Some(dns)) => Response::DnsLog {
            entries: dns.log(&filter),
        },
        (Request::DnsTest { name, from }, Some(dns)) => {
            let ip = match from {
                None => None,
                Some(mac) => match state.snapshot().devices.get(&mac) {
                    Some(d) => d.addresses.iter().min_by_key(|a| a.is_ipv6()).copied(),
                    None => {
                        return Response::Error {
                            message: format!("no device {mac}"),
                        }
                    }
                },
            };
            if from.is_some() && ip.is_none() {
                return Response::Error {
                    message: "that device has no known address yet".into(),
                };
            }
            match dns.explain(&name, ip) {
                Ok(message) => Response::Done { message },
                Err(message) => Response::Error { message },
            }
        }
        (req, _) => {
            let mut response = answer_core(state, req, vpn, dhcp, mdns);
            if let Response::Status(status) = &mut response {
                status.share = share.map(|s| Box::new(s.status()));
            }
            response
        }
    }
}

/// The services running beside the core, for the control requests they answer.
#[derive(Clone, Copy)]
struct Running<'a> {
    dns: Option<&'a crate::dns::DnsService>,
    detect: Option<&'a crate::detect::DetectService>,
    notify: Option<&'a crate::notify::NotifyService>,
    share: Option<&'a crate::share::ShareService>,
    traffic: Option<&'a crate::traffic::TrafficService>,
}

/// Starts the resolver if the config wants it; a failure is logged (with
/// every listen address's reason) and the daemon goes on without it:
/// enforcement never waits for DNS.
async fn start_dns(state: &DaemonState, services: &mut services::ServiceHub) -> Option<crate::dns::DnsService> {
    if !state.config.dns.enabled {
        return None;
    }
    let settings = crate::dns::DnsSettings::from_config(&state.config);
    let for_lists = settings.clone();
    let started = std::time::Instant::now();
    let lists = match tokio::task::spawn_blocking(move || crate::dns::load_blocklists(&for_lists)).await {
        Ok(l) => {
            if !l.1.is_empty() {
                tracing::info!(
                    lists = l.1.len(),
                    names = l.0.len(),
                    kib = l.0.heap_bytes() / 1024,
                    ms = started.elapsed().as_millis() as u64,
                    "blocklists loaded"
                );
            }
            l
        }
        Err(e) => {
            tracing::error!(error = %e, "loading the blocklists failed");
            (crate::dns::blocklist::Blocklists::build(Vec::new()), Vec::new())
        }
    };
    match crate::dns::DnsService::start(settings, lists, services.handle()) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(error = %crate::dns::describe(&e), "the resolver is off");
            None
        }
    }
}

/// Starts detection if the config wants it; a failure (the NFLOG group is
/// taken) is logged and the daemon goes on without it.
fn start_detect(state: &DaemonState, services: &mut services::ServiceHub) -> Option<crate::detect::DetectService> {
    let settings = crate::detect::DetectSettings::from_config(&state.config)?;
    match crate::detect::DetectService::start(settings, services.handle()) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "detection is off");
            None
        }
    }
}

/// Restarts the share proxy when what is shared changed (a reload, the
/// homeowner's `share on`); the old sockets close before the new ones bind.
fn refresh_share(
    state: &DaemonState,
    share: &mut Option<crate::share::ShareService>,
    services: &mut services::ServiceHub,
) {
    let settings = crate::share::ShareSettings::from_config(&state.config);
    if share.as_ref().map(|s| s.settings()) != settings.as_ref() {
        drop(share.take());
        *share = start_share(state, services);
    }
}

/// Starts the share proxy if anything is shared; a failure (a segment's
/// socket) is logged and the daemon goes on without it: nothing is shared
/// then, which is the safe side.
fn start_share(state: &DaemonState, services: &mut services::ServiceHub) -> Option<crate::share::ShareService> {
    let settings = crate::share::ShareSettings::from_config(&state.config)?;
    match crate::share::ShareService::start(settings, services.handle()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "sharing is off");
            None
        }
    }
}

/// Starts the notifiers if any channel is configured; a bad secret file is
/// logged (with the file and why) and the daemon goes on without them.
fn start_notify(state: &DaemonState, services: &mut services::ServiceHub) -> Option<crate::notify::NotifyService> {
    if state.config.notify.is_empty() {
        return None;
    }
    match crate::notify::NotifyService::start(state.config.notify.clone(), services.handle()) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "notifications are off");
            None
        }
    }
}

fn answer_core(
    state: &mut DaemonState,
    req: Request,
    vpn: &tunnel::TunnelRuntime,
    dhcp: &dhcp_io::DhcpIo,
    mdns: &mdns::MdnsIntake,
) -> Response {
    match req {
        Request::Tunnel => Response::Tunnel(Box::new(tunnel_view(state, vpn))),
        Request::Status => {
            let mut status = state.status();
            dhcp.fill_status(&mut status);
            status.mdns = mdns.counters();
            Response::Status(status)
        }
        Request::ResetPassword => {
            let resp = state.handle(Request::ResetPassword, unix_now());
            if let Some(token) = state.setup_token() {
                println!("bulkhead: web UI setup token: {token}");
            }
            resp
        }
        req => state.handle(req, unix_now()),
    }
}

/// Before the wall clock is read for deadlines (the timer, a DHCP packet, a
/// service's hold): if it jumped since the last look, every deadline moves
/// by the jump first — a lease must not end because NTP stepped the clock.
fn settle_clock(clock: &mut crate::clock::ClockWatch, state: &mut DaemonState, dhcp: &mut dhcp_io::DhcpIo) {
    if let Some(delta) = clock.check(std::time::Instant::now(), unix_now()) {
        state.clock_jumped(clock.started.saturating_sub(delta), delta);
        dhcp.clock_jumped(state, delta);
    }
}

/// SIGTERM or SIGINT: stop, leaving the rules in force.
struct Stop {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Stop {
    fn new() -> anyhow::Result<Self> {
        Ok(Stop {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
        })
    }

    /// Either signal (cancel-safe).
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// How long link changes are left to settle before the ports are looked at again.
const LINK_SETTLE: Duration = Duration::from_millis(200);

/// Interface names by index, for neighbour updates.
async fn interface_names(nl: &rtnetlink::Handle) -> BTreeMap<u32, String> {
    match net::observe(nl).await {
        Ok(o) => o.links.into_iter().map(|l| (l.index, l.name)).collect(),
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "could not list interfaces");
            BTreeMap::new()
        }
    }
}

/// Reads the whole neighbour table into the core (at start, and after the
/// kernel dropped notifications); returns the interface names by index.
async fn read_neighbour_table(state: &mut DaemonState, nl: &rtnetlink::Handle) -> BTreeMap<u32, String> {
    let ifnames = interface_names(nl).await;
    match neigh::dump(nl).await {
        Ok(updates) => {
            let now = unix_now();
            for u in updates {
                feed_neighbour(state, &ifnames, u, now);
            }
        }
        Err(e) => tracing::warn!(error = %error_chain(&e), "could not read the neighbour table"),
    }
    read_forwarding_tables(state, nl, &ifnames).await;
    ifnames
}

/// Where the bridges learned each MAC now (port binding: see `core::ports`).
async fn read_forwarding_tables(state: &mut DaemonState, nl: &rtnetlink::Handle, ifnames: &BTreeMap<u32, String>) {
    match neigh::dump_fdb(nl).await {
        Ok(updates) => {
            let learned: Vec<(u32, String, MacAddr)> = updates
                .into_iter()
                .filter_map(|u| match u {
                    NeighbourUpdate::Port {
                        bridge,
                        port,
                        mac,
                        learned: true,
                    } => ifnames.get(&port).map(|name| (bridge, name.clone(), mac)),
                    _ => None,
                })
                .collect();
            state.bridge_ports_read(&learned);
        }
        Err(e) => tracing::warn!(error = %error_chain(&e), "could not read the bridges' forwarding tables"),
    }
}

fn feed_neighbour(state: &mut DaemonState, ifnames: &BTreeMap<u32, String>, u: NeighbourUpdate, now: UnixTime) {
    let ifindex = match u {
        NeighbourUpdate::Present { ifindex, .. } | NeighbourUpdate::Gone { ifindex, .. } => ifindex,
        NeighbourUpdate::Port {
            bridge,
            port,
            mac,
            learned,
        } => {
            if let Some(name) = ifnames.get(&port) {
                state.bridge_port(bridge, name, mac, learned);
            }
            return;
        }
        NeighbourUpdate::LinkChanged | NeighbourUpdate::Overrun => return,
    };
    if let Some(name) = ifnames.get(&ifindex) {
        state.neighbour(name, u, now);
    }
}

async fn next_ssdp(
    w: &mut Option<crate::discovery::ssdp::SsdpWatcher>,
) -> Option<crate::discovery::ssdp::SsdpObservation> {
    match w {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

async fn next_neighbour(w: &mut Option<NeighbourWatch>) -> NeighbourUpdate {
    match w {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// A port joined or left an existing bridge (hostapd adds wlan ports at any
/// time): police the new set of ports at once, not at the next reload. A
/// segment's link or the WAN came or went (a PPPoE session): the flowtable
/// follows the devices that exist.
async fn refresh_links(state: &mut DaemonState, nl: &rtnetlink::Handle) {
    match net::observe(nl).await {
        Ok(observed) => {
            let facts = read_link_facts(&state.config, &observed, state.links.flowtables);
            if facts != state.links {
                tracing::info!(ports = ?facts.bridge_ports, "links changed; re-applying the firewall");
                let radios_changed = facts.wireless_ports != state.links.wireless_ports;
                state.links = facts;
                if let Err(e) = state.reconcile() {
                    tracing::error!(error = %error_chain(&e), "policing the changed links failed");
                }
                if radios_changed {
                    // Devices on Wi-Fi may come from the radios there are now.
                    state.rebind_ports();
                }
            }
        }
        Err(e) => tracing::warn!(error = %error_chain(&e), "could not read links after a change"),
    }
}

/// SIGHUP: a new config is used only if it is valid AND the firewall accepts it;
/// otherwise the old one stays in force, with the reasons logged.
async fn reload(state: &mut DaemonState, dhcp: &mut dhcp_io::DhcpIo, path: &Path, nl: &rtnetlink::Handle) {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            let err = report_config_errors(path, &e);
            tracing::error!("reload refused, the running config stays in force: {err}");
            return;
        }
    };
    // Rules first, as at start-up: a new bridge must not carry frames before its
    // rules exist, and links are only built for a config the firewall accepted.
    let old_links = desired_net(&state.config);
    match state.replace_config(config) {
        Ok(outcome) => {
            tracing::info!(?outcome, "config reloaded");
            dhcp.reconfigure(state, unix_now());
        }
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "reload refused by the firewall; the running config stays in force");
            return;
        }
    }
    // Links of segments the new config dropped (a VLAN, a bridge Bulkhead
    // made) go once the firewall no longer names them; nothing else is
    // touched.
    retire_links(nl, &old_links, &desired_net(&state.config)).await;
    match reconcile_links(nl, &state.config, state.links.flowtables).await {
        Ok(facts) if facts != state.links => {
            state.links = facts;
            if let Err(e) = state.reconcile() {
                tracing::error!(error = %error_chain(&e), "reload: policing the new bridge ports failed");
            }
            // Ports the new config no longer polices, radios that came or went.
            state.rebind_ports();
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %error_chain(&e), "reload: links not fully set up"),
    }
}
