//! `bulkhead init`: a working `/etc/bulkhead/bulkhead.toml` and `policies/`
//! for this machine, so a homeowner on a Debian box goes from the package to
//! an enforcing router without writing a config by hand.
//!
//! 1. Read the machine: links and addresses (rtnetlink), the default route's
//!    interface, the resolvers in resolv.conf.
//! 2. Plan ([`plan`], pure): the WAN, the home network(s) — a bridge of the
//!    other Ethernet links, or the links named — and addresses that collide
//!    with nothing on the machine.
//! 3. Look for another DHCP server on each home network ([`probe`]): if one
//!    answers, Bulkhead observes it rather than competing.
//! 4. Say what was chosen and why; ask before writing when run at a terminal
//!    without choices on the command line; never overwrite a config.

pub mod plan;
pub mod probe;

use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use futures::TryStreamExt;
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use rtnetlink::RouteMessageBuilder;

pub use plan::{DhcpRole, InitError, InitPlan, InitRequest, MachineFacts};

/// How long to wait for another DHCP server's OFFER on each home network:
/// servers ping an address before offering it (dnsmasq waits up to 3 s for
/// an echo, ISC dhcpd 1 s), so a first OFFER can be that late.
const DHCP_WAIT: Duration = Duration::from_secs(5);

/// What the command was given.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Where the config goes (`--config`); `policies/` goes beside it.
    pub config_path: PathBuf,
    /// The homeowner's choices.
    pub request: InitRequest,
    /// Write without asking.
    pub yes: bool,
    /// Print the config instead of writing it.
    pub dry_run: bool,
}

/// Runs `bulkhead init`.
pub async fn run(options: InitOptions) -> anyhow::Result<()> {
    let config_path = &options.config_path;
    if config_path.exists() && !options.dry_run {
        bail!(
            "{} exists: bulkhead init never overwrites a config (move it away to start again, or edit it; \
             `bulkhead check-config` checks it)",
            config_path.display()
        );
    }
    let facts = read_machine()
        .await
        .context("reading this machine's links and routes")?;
    let mut ula_id = [0u8; 5];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut ula_id);
    let mut plan = plan::plan(&facts, &options.request, ula_id)?;
    println!(
        "bulkhead init: looking for another DHCP server on the home network ({} s)…",
        DHCP_WAIT.as_secs()
    );
    look_for_dhcp_servers(&mut plan).await;

    println!("bulkhead init: for this machine:");
    for r in &plan.reasons {
        println!("  - {r}");
    }
    let text = plan::render_config(&plan, &crate::clock::local(crate::inventory::unix_now()).to_string());
    if options.dry_run {
        print!("\n{text}");
        return Ok(());
    }
    let asked_nothing = options.request == InitRequest::default();
    if asked_nothing && !options.yes && std::io::stdin().is_terminal() {
        print!("Write {} with this? [Y/n] ", config_path.display());
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if matches!(answer.trim(), "n" | "N" | "no" | "No") {
            println!("Nothing written. Choose yourself: bulkhead init --wan IF --lan IF [--lan IF…] [--bridge NAME]");
            return Ok(());
        }
    }
    write_files(config_path, &text)?;
    let policies = policies_dir(config_path);
    println!("\nWrote {} and {}/.", config_path.display(), policies.display());
    println!("Next:");
    println!("  bulkhead check-config                 # what it says, with file:line on any error");
    println!("  systemctl enable --now bulkhead       # start now and at every boot (zones from the first packet)");
    if let Some(s) = plan.segments.first() {
        println!(
            "  then open http://{}:8080/ from the home network (the setup token: bulkhead setup-token)",
            s.ipv4.addr()
        );
    }
    Ok(())
}

/// `policies/` beside the config (what the written config names, as
/// `/etc/bulkhead/policies` for the default path).
fn policies_dir(config_path: &Path) -> PathBuf {
    config_path.parent().unwrap_or(Path::new(".")).join("policies")
}

/// Writes the config (created new: never over one that appeared meanwhile)
/// and the shipped policies that are not there yet.
fn write_files(config_path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = config_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let policies = policies_dir(config_path);
    std::fs::create_dir_all(&policies).with_context(|| format!("creating {}", policies.display()))?;
    for (name, body) in crate::config::SHIPPED_POLICIES {
        let path = policies.join(name);
        if !path.exists() {
            std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(config_path)
        .with_context(|| format!("creating {}", config_path.display()))?;
    let text = if policies == Path::new("/etc/bulkhead/policies") {
        text.to_string()
    } else {
        text.replace(
            "policies_dir = \"/etc/bulkhead/policies\"",
            &format!("policies_dir = \"{}\"", policies.display()),
        )
    };
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Each home network's links, looked at for another DHCP server (at once).
async fn look_for_dhcp_servers(plan: &mut InitPlan) {
    let mut probes = Vec::new();
    for (i, s) in plan.segments.iter().enumerate() {
        for link in s.links() {
            probes.push(async move {
                let mac = read_mac(&link).unwrap_or([0x02, 0, 0, 0, 0, 1]);
                (i, link.clone(), probe::other_dhcp_server(&link, mac, DHCP_WAIT).await)
            });
        }
    }
    for (i, link, found) in futures::future::join_all(probes).await {
        match found {
            Ok(Some(server)) => {
                if !matches!(plan.segments.get(i).map(|s| s.dhcp), Some(DhcpRole::Observe { .. })) {
                    plan.another_dhcp_server(i, server);
                }
            }
            Ok(None) => {}
            Err(e) => plan.reasons.push(format!(
                "could not look for another DHCP server on {link} ({e}); Bulkhead will serve there"
            )),
        }
    }
    plan.serving_dhcp();
}

/// The link's MAC address, from sysfs.
fn read_mac(link: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{link}/address")).ok()?;
    let mac: crate::config::MacAddr = text.trim().parse().ok()?;
    Some(mac.0)
}

/// Links, addresses, the default route's interface and the resolvers.
async fn read_machine() -> anyhow::Result<MachineFacts> {
    let (nl, task) = crate::net::open()?;
    let result = async {
        let net = crate::net::observe(&nl).await?;
        let mut default_route = None;
        let queries = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        for query in queries {
            let routes: Vec<RouteMessage> = nl.route().get(query).execute().try_collect().await?;
            let index = routes
                .iter()
                .filter(|r| r.header.destination_prefix_length == 0 && r.header.table == 254)
                .find_map(|r| {
                    r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Oif(i) => Some(*i),
                        _ => None,
                    })
                });
            if let Some(link) = index.and_then(|i| net.link_by_index(i)) {
                default_route = Some(link.name.clone());
                break;
            }
        }
        anyhow::Ok((net, default_route))
    }
    .await;
    task.abort();
    let (net, default_route) = result?;
    // systemd-resolved's own upstreams when it runs (resolv.conf then names
    // only its 127.0.0.53 stub).
    let resolvers: Vec<IpAddr> = ["/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| plan::resolvers_of(&t))
        .find(|r| !r.is_empty())
        .unwrap_or_default();
    Ok(MachineFacts {
        net,
        default_route,
        resolvers,
    })
}
