//! The tunnel in the daemon: the device, its routing, its UAPI socket and its
//! state machine, kept in line with the config.
//!
//! Order is what makes the kill switch hold at every moment:
//! 1. the fwmark rules and the blackhole in our table go in FIRST (and are never
//!    removed while a tunnel is configured, not even when the daemon dies);
//! 2. then the device, its addresses, and the default route through it;
//! 3. on a config change that needs a new device, the old one is dropped first:
//!    its routes go with it and the blackhole answers until the new one is up.
//!
//! The firewall's leak guard (forward chain) is the second wall: marked traffic
//! may only leave by the tunnel interface, whatever the routing tables say.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use tokio::sync::mpsc;

use crate::config::{PrivateKeySource, TunnelConfig, TunnelSelectors, WgKey};
use crate::control::{TunnelPeerView, TunnelTransitionView, TunnelView};
use crate::core::DaemonState;
use crate::firewall::error_chain;
use crate::inventory::UnixTime;
use crate::tunnel::device::{DeviceConfig, PeerConfig, TunnelDevice};
use crate::tunnel::routing::{self, TunnelRouting};
use crate::tunnel::state::{Action, StateKind, Timing, Transition, TunnelMachine};
use crate::tunnel::uapi::{self, DeviceSnapshot, SetOp, UapiDevice, UapiError, UapiRequest, UapiServer};

/// Transitions kept for the API.
const RECENT: usize = 32;

/// A peer's endpoint name, resolved (or not) in the background.
#[derive(Debug)]
pub(super) struct Resolved {
    public_key: WgKey,
    result: Result<SocketAddr, String>,
}

fn b64(k: &WgKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(k.0)
}

fn unix_of(t: SystemTime) -> UnixTime {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Reads the private key (generating the key file on first start).
fn private_key(source: &PrivateKeySource) -> anyhow::Result<WgKey> {
    Ok(crate::tunnel::keys::resolve_private_key(source)?)
}

/// The device's view of the config (endpoints given as addresses are used as
/// they are; names wait for the resolver).
fn device_config(cfg: &TunnelConfig, key: WgKey) -> DeviceConfig {
    DeviceConfig {
        ifname: cfg.interface.clone(),
        mtu: cfg.mtu,
        private_key: key,
        listen_port: cfg.listen_port,
        peers: peer_configs(cfg),
    }
}

fn peer_configs(cfg: &TunnelConfig) -> Vec<PeerConfig> {
    cfg.peers
        .iter()
        .map(|p| PeerConfig {
            public_key: p.public_key.clone(),
            preshared_key: p.preshared_key.clone(),
            endpoint: p
                .endpoint
                .as_ref()
                .and_then(|e| e.host.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, e.port))),
            allowed_ips: p.allowed_ips.clone(),
            persistent_keepalive: p.persistent_keepalive,
        })
        .collect()
}

/// What needs a new TUN device when it changes.
fn device_identity(cfg: &TunnelConfig) -> (String, u16, Vec<ipnet::IpNet>, Option<u16>) {
    (cfg.interface.clone(), cfg.mtu, cfg.addresses.clone(), cfg.listen_port)
}

/// The tunnel's runtime.
pub(super) struct TunnelRuntime {
    config: Option<TunnelConfig>,
    device: Option<TunnelDevice>,
    machine: TunnelMachine,
    uapi: Option<UapiServer>,
    uapi_tx: mpsc::Sender<UapiRequest>,
    resolve_tx: mpsc::Sender<Resolved>,
    recent: VecDeque<TunnelTransitionView>,
    /// Which state changes are told.
    alerting: crate::tunnel::alerting::TunnelAlerting,
}

/// What the loop hears from the tunnel's side: `wg` on the UAPI socket, an
/// endpoint name resolved in the background, the one-second timer.
pub(super) enum TunnelEvent {
    Uapi(UapiRequest),
    Resolved(Resolved),
    Tick,
}

/// The tunnel's event sources, apart from [`TunnelRuntime`] so the loop can
/// wait on them while the runtime is borrowed elsewhere.
pub(super) struct TunnelEvents {
    uapi: mpsc::Receiver<UapiRequest>,
    resolved: mpsc::Receiver<Resolved>,
    tick: tokio::time::Interval,
}

impl TunnelEvents {
    /// The next event (cancel-safe).
    pub(super) async fn next(&mut self) -> TunnelEvent {
        tokio::select! {
            Some(req) = self.uapi.recv() => TunnelEvent::Uapi(req),
            Some(r) = self.resolved.recv() => TunnelEvent::Resolved(r),
            _ = self.tick.tick() => TunnelEvent::Tick,
        }
    }
}

impl TunnelRuntime {
    pub(super) fn new() -> (Self, TunnelEvents) {
        let (uapi_tx, uapi) = mpsc::channel::<UapiRequest>(8);
        let (resolve_tx, resolved) = mpsc::channel::<Resolved>(16);
        let runtime = TunnelRuntime {
            config: None,
            device: None,
            machine: TunnelMachine::new(Timing::default()),
            uapi: None,
            uapi_tx,
            resolve_tx,
            recent: VecDeque::new(),
            alerting: Default::default(),
        };
        let events = TunnelEvents {
            uapi,
            resolved,
            tick: tokio::time::interval(std::time::Duration::from_secs(1)),
        };
        (runtime, events)
    }

    /// Handles one of its events; state changes become alerts.
    pub(super) async fn on_event(&mut self, event: TunnelEvent, state: &mut DaemonState, nl: &rtnetlink::Handle) {
        let now = Instant::now();
        let transitions = match event {
            TunnelEvent::Uapi(req) => {
                if let Err(e) = uapi::answer(req, self) {
                    tracing::warn!(error = %error_chain(&e), "wg set refused");
                }
                return;
            }
            TunnelEvent::Resolved(r) => self.resolved(r, now),
            TunnelEvent::Tick => {
                let mut t = self.tick(now);
                if self.needs_restart() {
                    t.extend(self.apply(state.config.tunnel.as_ref(), nl, now).await);
                }
                t
            }
        };
        tunnel_alerts(state, self, transitions);
    }

    /// Makes the running tunnel match `config`: start, update in place, restart
    /// or stop. Returns the state transitions it caused.
    pub(super) async fn apply(
        &mut self,
        config: Option<&TunnelConfig>,
        nl: &rtnetlink::Handle,
        now: Instant,
    ) -> Vec<Transition> {
        let Some(cfg) = config else {
            if self.device.take().is_some() || self.config.is_some() {
                self.machine.stop(now);
            }
            self.uapi = None;
            self.config = None;
            // No tunnel: none of our rules or routes (also leftovers of a
            // previous run whose config had one).
            if let Err(e) = routing::remove_all(nl).await {
                tracing::error!(error = %error_chain(&e), "could not remove the tunnel's routing");
            }
            return self.take_transitions();
        };
        let ipv4 = cfg.addresses.iter().any(|a| a.addr().is_ipv4());
        let ipv6 = cfg.addresses.iter().any(|a| a.addr().is_ipv6());
        // 1. The kill switch first: rules and blackholes, before any device.
        let closed = routing::plan(Some(&TunnelRouting {
            tunnel_ifindex: self.device.as_ref().and_then(|d| d.ifindex().ok()),
            ipv4,
            ipv6,
        }));
        if let Err(e) = routing::reconcile(nl, &closed).await {
            tracing::error!(error = %error_chain(&e), "tunnel kill switch routing");
        }
        let same_device = self
            .config
            .as_ref()
            .is_some_and(|old| device_identity(old) == device_identity(cfg));
        let key = match private_key(&cfg.private_key) {
            Ok(k) => k,
            Err(e) => {
                self.device = None;
                self.config = Some(cfg.clone());
                self.machine.start(now);
                self.machine.device_failed(format!("private key: {e:#}"), now);
                return self.take_transitions();
            }
        };
        if same_device && self.device.is_some() {
            if let Some(d) = self.device.as_mut() {
                d.set_private_key(&key);
                d.set_peers(&peer_configs(cfg));
            }
            self.config = Some(cfg.clone());
            let actions = self.machine.start(now);
            self.act(&actions);
            return self.take_transitions();
        }
        // 2. A new device (the old one, if any, goes first: its routes with it).
        self.device = None;
        self.uapi = None;
        self.config = Some(cfg.clone());
        match self.start_device(cfg, key, nl, ipv4, ipv6).await {
            Ok(()) => {
                let actions = self.machine.start(now);
                self.act(&actions);
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "tunnel device");
                self.device = None;
                self.machine.start(now);
                self.machine.device_failed(format!("{e:#}"), now);
            }
        }
        self.take_transitions()
    }

    async fn start_device(
        &mut self,
        cfg: &TunnelConfig,
        key: WgKey,
        nl: &rtnetlink::Handle,
        ipv4: bool,
        ipv6: bool,
    ) -> anyhow::Result<()> {
        let device = TunnelDevice::start(&device_config(cfg, key))?;
        let ifindex = device.ifindex()?;
        for net in &cfg.addresses {
            let r = nl.address().add(ifindex, net.addr(), net.prefix_len()).execute().await;
            match r {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => {}
                Err(e) => anyhow::bail!("adding {net} to {}: {e}", cfg.interface),
            }
        }
        // Answers come back through the tunnel from addresses the main table
        // routes by the WAN: strict reverse-path filtering would drop them.
        if let Err(e) = routing::set_loose_rp_filter(&cfg.interface) {
            tracing::warn!(error = %e, "could not set rp_filter on the tunnel");
        }
        let open = routing::plan(Some(&TunnelRouting {
            tunnel_ifindex: Some(ifindex),
            ipv4,
            ipv6,
        }));
        routing::reconcile(nl, &open).await?;
        match UapiServer::bind(uapi::default_socket_path(&cfg.interface), self.uapi_tx.clone()) {
            Ok(s) => self.uapi = Some(s),
            Err(e) => tracing::warn!(error = %error_chain(&e), "no UAPI socket: `wg show` will not see the tunnel"),
        }
        tracing::info!(interface = %cfg.interface, port = device.listen_port(), "tunnel device up");
        self.device = Some(device);
        Ok(())
    }

    fn act(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Handshake => {
                    if let Some(d) = &self.device {
                        d.handshake_now();
                    }
                }
                Action::ResolveEndpoints => self.resolve_endpoints(),
            }
        }
    }

    /// Resolves every peer endpoint given as a name, in the background.
    fn resolve_endpoints(&self) {
        let Some(cfg) = &self.config else { return };
        for p in &cfg.peers {
            let Some(e) = &p.endpoint else { continue };
            if e.host.parse::<IpAddr>().is_ok() {
                continue;
            }
            let name = format!("{}:{}", e.host, e.port);
            let tx = self.resolve_tx.clone();
            let public_key = p.public_key.clone();
            tokio::spawn(async move {
                let lookup = tokio::time::timeout(std::time::Duration::from_secs(10), tokio::net::lookup_host(name));
                let result = match lookup.await {
                    Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| "no addresses".to_string()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                };
                let _ = tx.send(Resolved { public_key, result }).await;
            });
        }
    }

    /// A name resolved (or did not).
    pub(super) fn resolved(&mut self, r: Resolved, now: Instant) -> Vec<Transition> {
        match r.result {
            Ok(addr) => {
                if let Some(d) = &self.device {
                    d.set_endpoint(&r.public_key, addr);
                    d.handshake_now();
                }
            }
            Err(e) => self.machine.resolve_failed(e, now),
        }
        self.take_transitions()
    }

    /// Advances the state machine with what the device saw.
    pub(super) fn tick(&mut self, now: Instant) -> Vec<Transition> {
        if let Some(d) = &self.device {
            let peers = d.peers();
            let seen = crate::tunnel::state::Observed {
                last_handshake: peers.iter().filter_map(|p| p.last_handshake_at).max(),
                last_rx: peers.iter().filter_map(|p| p.last_rx).max(),
                last_tx: peers.iter().filter_map(|p| p.last_tx).max(),
            };
            let actions = self.machine.handle_timeout(now, seen);
            self.act(&actions);
        } else if self.config.is_some() {
            // No device (it failed to start): retry building it when the
            // machine says so; until then the blackhole holds.
            self.machine.handle_timeout(now, Default::default());
        }
        self.take_transitions()
    }

    /// True when the machine wants the device rebuilt (it failed and the retry
    /// time passed).
    pub(super) fn needs_restart(&self) -> bool {
        self.config.is_some() && self.device.is_none() && self.machine.kind() == StateKind::Connecting
    }

    fn take_transitions(&mut self) -> Vec<Transition> {
        let t = self.machine.take_transitions();
        let now = Instant::now();
        let unix_now = crate::inventory::unix_now();
        for tr in &t {
            let ago = now.saturating_duration_since(tr.at).as_secs() as i64;
            self.recent.push_back(TunnelTransitionView {
                at: unix_now - ago,
                from: tr.from.to_string(),
                to: tr.to.to_string(),
                reason: tr.reason.to_string(),
            });
            while self.recent.len() > RECENT {
                self.recent.pop_front();
            }
        }
        t
    }

    /// Failed attempts since the tunnel was last up.
    pub(super) fn attempts(&self) -> u32 {
        self.machine.attempts()
    }

    /// The state's name (`down`, `connecting`, `up`, `error`).
    pub(super) fn state_name(&self) -> String {
        self.machine.kind().to_string()
    }

    /// The API's view.
    pub(super) fn view(&self, selectors: &TunnelSelectors) -> TunnelView {
        let peers = self
            .device
            .as_ref()
            .map(|d| d.peers())
            .unwrap_or_default()
            .into_iter()
            .map(|status| status.wg)
            .map(|p| TunnelPeerView {
                endpoint_config: self.config.as_ref().and_then(|c| {
                    c.peers
                        .iter()
                        .find(|q| q.public_key == p.public_key)
                        .and_then(|q| q.endpoint.as_ref().map(|e| e.to_string()))
                }),
                public_key: b64(&p.public_key),
                endpoint: p.endpoint.map(|e| e.to_string()),
                last_handshake: p.last_handshake.map(unix_of),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                allowed_ips: p.allowed_ips.iter().map(|n| n.to_string()).collect(),
            })
            .collect();
        let mut routed = Vec::new();
        if self.config.is_some() {
            let list = |v: Vec<String>| v.join(", ");
            if !selectors.zones.is_empty() {
                routed.push(format!(
                    "zones: {}",
                    list(selectors.zones.iter().map(|z| z.to_string()).collect())
                ));
            }
            if !selectors.devices.is_empty() {
                routed.push(format!(
                    "devices: {}",
                    list(selectors.devices.iter().map(|m| m.to_string()).collect())
                ));
            }
            if !selectors.destinations.is_empty() {
                routed.push(format!(
                    "destinations: {}",
                    list(selectors.destinations.iter().map(|n| n.to_string()).collect())
                ));
            }
            if !selectors.domain_sets.is_empty() {
                routed.push(format!(
                    "domain sets: {}",
                    list(selectors.domain_sets.iter().map(|d| d.to_string()).collect())
                ));
            }
            if routed.is_empty() {
                routed.push("nothing (no tunnel selectors in the policy)".into());
            }
        }
        TunnelView {
            configured: self.config.is_some(),
            state: self.machine.kind().to_string(),
            interface: self.config.as_ref().map(|c| c.interface.clone()),
            public_key: self.device.as_ref().map(|d| b64(&d.public_key())),
            listen_port: self.device.as_ref().map(|d| d.listen_port()),
            peers,
            attempts: self.machine.attempts(),
            transitions: self.recent.iter().cloned().collect(),
            routed,
            leak_guard_drops: None,
            counters: self.device.as_ref().map(|d| d.counters()),
        }
    }
}

impl UapiDevice for TunnelRuntime {
    fn snapshot(&self) -> DeviceSnapshot {
        let Some(d) = &self.device else {
            return DeviceSnapshot::default();
        };
        DeviceSnapshot {
            private_key: Some(d.private_key()),
            listen_port: d.listen_port(),
            fwmark: None,
            peers: d.peers().into_iter().map(|p| p.wg).collect(),
        }
    }

    /// `wg set`: only a peer's endpoint may be changed at run time (what
    /// `wg set IF peer KEY endpoint HOST:PORT` is used for when debugging).
    /// Everything else lives in bulkhead.toml, so that a restart keeps it.
    fn apply(&mut self, ops: Vec<SetOp>) -> Result<(), UapiError> {
        let Some(d) = &self.device else {
            return Err(UapiError::Rejected {
                errno: libc::ENODEV,
                reason: "no tunnel device".into(),
            });
        };
        let mut peer: Option<WgKey> = None;
        let mut endpoints = Vec::new();
        for op in ops {
            match op {
                SetOp::Peer(k) => peer = Some(k),
                SetOp::Endpoint(addr) => match &peer {
                    Some(k) => endpoints.push((k.clone(), addr)),
                    None => {
                        return Err(UapiError::Rejected {
                            errno: libc::EINVAL,
                            reason: "endpoint without a peer".into(),
                        })
                    }
                },
                other => {
                    return Err(UapiError::Rejected {
                        errno: libc::EPERM,
                        reason: format!("{other:?} is set in bulkhead.toml, not with wg set"),
                    })
                }
            }
        }
        for (k, addr) in endpoints {
            d.set_endpoint(&k, addr);
        }
        Ok(())
    }
}

/// Tunnel state changes become alerts (see `tunnel/alerting.rs`: a drop
/// shorter than its grace is not told); called with every batch of
/// transitions and on the tunnel's one-second tick.
pub(super) fn tunnel_alerts(
    state: &mut DaemonState,
    vpn: &mut TunnelRuntime,
    transitions: Vec<crate::tunnel::state::Transition>,
) {
    for t in &transitions {
        tracing::info!(from = %t.from, to = %t.to, reason = %t.reason, "tunnel");
    }
    let attempts = vpn.attempts();
    for (kind, message) in vpn.alerting.on(&transitions, attempts, Instant::now()) {
        state.raise(crate::alerts::Alert::new(
            crate::inventory::unix_now(),
            kind,
            None,
            message,
        ));
    }
}

/// The tunnel as the CLI and UI show it: the policy's selectors and the
/// homeowner's per-device choices.
pub(super) fn tunnel_view(state: &DaemonState, vpn: &TunnelRuntime) -> crate::control::TunnelView {
    let mut view = vpn.view(&state.config.policy.tunnel);
    if view.configured {
        let (through, never) = state.tunnel_choices();
        if !through.is_empty() || !never.is_empty() {
            view.routed.retain(|r| !r.starts_with("nothing"));
        }
        if !through.is_empty() {
            view.routed.push(format!("devices you chose: {}", through.join(", ")));
        }
        if !never.is_empty() {
            view.routed.push(format!("never (your choice): {}", never.join(", ")));
        }
    }
    view
}
