//! End-to-end tests: the real `bulkhead` binary in a router namespace, real
//! nftables, real packets between namespace hosts.
//!
//! Built as a test of the `bulkhead` package (see daemon/Cargo.toml) so cargo
//! builds the binary first. It has its own main: it refuses to run without root
//! under CI=true, snapshots the host namespace before and after the whole suite
//! (test f), runs tests two at a time, and ends with libtest's summary line.
//!
//! Usage: `cargo test -p bulkhead --features demo --test e2e [-- FILTER]`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bulkhead::config::{MacAddr, ZoneId};
use bulkhead::control::{Request, Response};
use bulkhead::demo::{DemoHome, HOSTS};
use bulkhead_netns::{tcp_probe, udp_probe, HostSnapshot, Netns, TcpSession};
use nix::sys::signal::Signal;

mod boot;
mod detect;
mod discovery;
mod dns;
mod http;
mod init;
mod offload;
mod openwrt;
mod router_binary;
mod share;
mod traffic;
mod tunnel;
mod vlan;
mod web_ui;
mod webdriver;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_bulkhead");
pub(crate) const SHORT: Duration = Duration::from_millis(400);

pub(crate) enum Outcome {
    Passed,
    Skipped(String),
}

type TestFn = fn() -> Result<Outcome>;

fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("a_zones_routed_and_same_bridge", a_zones_routed_and_same_bridge),
        ("a_ipv6_is_enforced_like_ipv4", a_ipv6_is_enforced_like_ipv4),
        ("a_same_bridge_without_br_netfilter", a_same_bridge_without_br_netfilter),
        ("a_no_way_around_the_bridge_table", a_no_way_around_the_bridge_table),
        (
            "b_quarantine_reaches_only_dhcp_and_dns",
            b_quarantine_reaches_only_dhcp_and_dns,
        ),
        (
            "c_set_zone_is_a_fast_set_delta_and_cuts_connections",
            c_set_zone_is_a_fast_set_delta_and_cuts_connections,
        ),
        (
            "d_bad_policy_on_sighup_changes_nothing",
            d_bad_policy_on_sighup_changes_nothing,
        ),
        (
            "d2_killed_during_a_full_replace_leaves_a_whole_ruleset",
            d2_killed_during_a_full_replace_leaves_a_whole_ruleset,
        ),
        (
            "e_kill_9_and_restart_never_open_the_network",
            e_kill_9_and_restart_never_open_the_network,
        ),
        (
            "e2_restore_at_boot_holds_the_zones_before_the_daemon",
            boot::e2_restore_at_boot_holds_the_zones_before_the_daemon,
        ),
        (
            "e3_init_writes_a_config_that_runs_on_a_fresh_box",
            init::e3_init_writes_a_config_that_runs_on_a_fresh_box,
        ),
        (
            "o1_openwrt_beside_fw4_and_dnsmasq",
            openwrt::o1_openwrt_beside_fw4_and_dnsmasq,
        ),
        (
            "q4_router_binary_runs_the_scenarios",
            router_binary::q4_router_binary_runs_the_scenarios,
        ),
        (
            "q7_armv7_router_binary_runs_the_scenarios",
            router_binary::q7_armv7_router_binary_runs_the_scenarios,
        ),
        (
            "q8_mipsel_router_binary_runs_the_scenarios",
            router_binary::q8_mipsel_router_binary_runs_the_scenarios,
        ),
        (
            "g2_cli_output_cut_short_ends_quietly",
            g2_cli_output_cut_short_ends_quietly,
        ),
        (
            "g_check_config_reports_file_line_field",
            g_check_config_reports_file_line_field,
        ),
        ("h_other_tables_are_never_touched", h_other_tables_are_never_touched),
        (
            "i_vlan_segment_on_a_kernel_with_8021q",
            i_vlan_segment_on_a_kernel_with_8021q,
        ),
        ("i2_iot_vlan_home_end_to_end", vlan::i2_iot_vlan_home_end_to_end),
        (
            "f2_flow_offload_speeds_up_and_decides_nothing",
            offload::f2_flow_offload_speeds_up_and_decides_nothing,
        ),
        (
            "s_casting_is_shared_across_zones_and_nothing_else",
            share::s_casting_is_shared_across_zones_and_nothing_else,
        ),
        (
            "s2_casting_on_one_bridge_opens_only_the_announced_ports",
            share::s2_casting_on_one_bridge_opens_only_the_announced_ports,
        ),
        (
            "s3_ssdp_media_server_is_found_and_fetched_across_zones",
            share::s3_ssdp_media_server_is_found_and_fetched_across_zones,
        ),
        (
            "s4_the_homeowner_shares_and_unshares_from_the_cli",
            share::s4_the_homeowner_shares_and_unshares_from_the_cli,
        ),
        (
            "t3_traffic_is_counted_per_device_and_path",
            traffic::t3_traffic_is_counted_per_device_and_path,
        ),
        (
            "j_rejected_document_leaves_the_kernel_as_it_was",
            j_rejected_document_leaves_the_kernel_as_it_was,
        ),
        (
            "k_dhcp_clients_are_discovered_and_enforced",
            discovery::k_dhcp_clients_are_discovered_and_enforced,
        ),
        (
            "k3_a_upnp_description_is_evidence",
            share::k3_a_upnp_description_is_evidence,
        ),
        (
            "l_mdns_cast_device_is_media_in_iot",
            discovery::l_mdns_cast_device_is_media_in_iot,
        ),
        (
            "m_unknown_device_is_quarantined_until_approved",
            discovery::m_unknown_device_is_quarantined_until_approved,
        ),
        (
            "m2_a_phone_with_new_private_macs_stays_one_device",
            discovery::m2_a_phone_with_new_private_macs_stays_one_device,
        ),
        (
            "n_slaac_addresses_are_enforced_like_ipv4",
            discovery::n_slaac_addresses_are_enforced_like_ipv4,
        ),
        (
            "o_restart_keeps_leases_and_zones",
            discovery::o_restart_keeps_leases_and_zones,
        ),
        (
            "o2_a_damaged_database_does_not_stop_the_router",
            discovery::o2_a_damaged_database_does_not_stop_the_router,
        ),
        ("p_observer_mode_with_dnsmasq", discovery::p_observer_mode_with_dnsmasq),
        (
            "u_dns_resolves_blocks_and_refuses",
            dns::u_dns_resolves_blocks_and_refuses,
        ),
        (
            "v_dns_bypass_is_redirected_or_refused",
            dns::v_dns_bypass_is_redirected_or_refused,
        ),
        (
            "w_dns_domain_routing_never_leaks",
            dns::w_dns_domain_routing_never_leaks,
        ),
        (
            "w2_dns_tunnel_bootstrap_never_leaks",
            dns::w2_dns_tunnel_bootstrap_never_leaks,
        ),
        ("x_dns_over_tls_upstream", dns::x_dns_over_tls_upstream),
        (
            "x2_dns_upstreams_by_name_and_over_https",
            dns::x2_dns_upstreams_by_name_and_over_https,
        ),
        ("y_dns_blocklist_from_url", dns::y_dns_blocklist_from_url),
        ("z_detect_probing_is_one_alert", detect::z_detect_probing_is_one_alert),
        (
            "z4_arp_claims_of_the_gateway_are_dropped_and_said",
            detect::z4_arp_claims_of_the_gateway_are_dropped_and_said,
        ),
        (
            "z5_arp_claims_of_another_devices_address_are_dropped",
            detect::z5_arp_claims_of_another_devices_address_are_dropped,
        ),
        (
            "z6_neighbour_advert_claims_are_dropped",
            detect::z6_neighbour_advert_claims_are_dropped,
        ),
        (
            "z3_mqtt_over_tls_checks_the_broker",
            detect::z3_mqtt_over_tls_checks_the_broker,
        ),
        (
            "z0_ordinary_life_for_ten_minutes_raises_nothing",
            detect::z0_ordinary_life_for_ten_minutes_raises_nothing,
        ),
        (
            "z2_notifications_reach_webhook_ntfy_and_mqtt",
            detect::z2_notifications_reach_webhook_ntfy_and_mqtt,
        ),
        (
            "q_hostile_names_and_malformed_packets",
            discovery::q_hostile_names_and_malformed_packets,
        ),
        ("q2_dhcp_flood_starves_nobody", discovery::q2_dhcp_flood_starves_nobody),
        (
            "q3_forged_dhcp_cannot_move_or_evict_a_device",
            discovery::q3_forged_dhcp_cannot_move_or_evict_a_device,
        ),
        (
            "q5_a_forged_source_mac_from_another_port_is_dropped",
            discovery::q5_a_forged_source_mac_from_another_port_is_dropped,
        ),
        (
            "q6_mdns_evidence_counts_only_for_the_device_that_sent_it",
            discovery::q6_mdns_evidence_counts_only_for_the_device_that_sent_it,
        ),
        ("r0_tunnel_down_never_leaks", tunnel::r0_tunnel_down_never_leaks),
        ("r2_kernel_wireguard_server", tunnel::r2_kernel_wireguard_server),
        (
            "r_tunnel_kill_switch_never_leaks",
            tunnel::r_tunnel_kill_switch_never_leaks,
        ),
        (
            "s_tunnel_selectors_zone_exclusion_domain_set",
            tunnel::s_tunnel_selectors_zone_exclusion_domain_set,
        ),
        ("w_web_refusals_and_firewall", web_ui::w_web_refusals_and_firewall),
        (
            "w_api_block_rename_reach_the_kernel",
            web_ui::w_api_block_rename_reach_the_kernel,
        ),
        (
            "w_browser_hostile_names_are_text",
            web_ui::w_browser_hostile_names_are_text,
        ),
        ("w_api_schemathesis", web_ui::w_api_schemathesis),
        (
            "w_browser_setup_zone_approve_ack",
            web_ui::w_browser_setup_zone_approve_ack,
        ),
        // Listed last: the runner takes tests from the end, and the longest
        // ones should start first.
        (
            "t_demo_serves_the_ui_on_loopback",
            web_ui::t_demo_serves_the_ui_on_loopback,
        ),
    ]
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests() {
            println!("{name}: test");
        }
        return;
    }
    if !bulkhead_netns::is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            eprintln!("e2e: these tests need root (network namespaces, nftables); CI=true forbids skipping them");
            std::process::exit(1);
        }
        eprintln!("e2e: SKIPPED ALL: needs root (network namespaces, nftables)");
        println!(
            "test result: ok. 0 passed; 0 failed; {} ignored; 0 measured; 0 filtered out",
            tests().len()
        );
        return;
    }
    let _ = Netns::cleanup_stale();
    let before = HostSnapshot::take().expect("snapshot of the host namespace");
    let started = Instant::now();
    let selected: Vec<_> = tests()
        .into_iter()
        .filter(|(n, _)| filter.is_empty() || filter.iter().any(|f| n.contains(f.as_str())))
        .collect();
    let filtered_out = tests().len() - selected.len();
    println!("\nrunning {} tests", selected.len() + 1);
    let queue = Arc::new(Mutex::new(selected));
    let passed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let skipped = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (queue, passed, failed, skipped) = (queue.clone(), passed.clone(), failed.clone(), skipped.clone());
            std::thread::spawn(move || {
                // A closure, so the queue's lock is released before the test runs.
                let next = || queue.lock().ok().and_then(|mut q| q.pop());
                while let Some((name, f)) = next() {
                    let t0 = Instant::now();
                    let result = std::panic::catch_unwind(f);
                    let secs = t0.elapsed().as_secs_f32();
                    match result {
                        Ok(Ok(Outcome::Passed)) => {
                            println!("test {name} ... ok ({secs:.1}s)");
                            passed.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Ok(Outcome::Skipped(why))) => {
                            println!("test {name} ... ignored, NOT RUN: {why}");
                            skipped.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Err(e)) => {
                            println!("test {name} ... FAILED ({secs:.1}s)\n{e:?}\n");
                            if let Ok(mut f) = failed.lock() {
                                f.push(name.to_string());
                            }
                        }
                        Err(_) => {
                            println!("test {name} ... FAILED (panicked)");
                            if let Ok(mut f) = failed.lock() {
                                f.push(name.to_string());
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    // f: the host namespace is exactly as it was before the whole suite.
    let after = HostSnapshot::take().expect("snapshot of the host namespace");
    let leftovers = Netns::list_own().unwrap_or_default();
    let mut failed = failed.lock().map(|f| f.clone()).unwrap_or_default();
    match (before.diff(&after), leftovers.is_empty()) {
        (None, true) => {
            println!("test f_host_namespace_unchanged_by_the_suite ... ok");
            passed.fetch_add(1, Ordering::SeqCst);
        }
        (diff, _) => {
            println!(
                "test f_host_namespace_unchanged_by_the_suite ... FAILED\n{}\nleft-over namespaces: {leftovers:?}",
                diff.unwrap_or_default()
            );
            failed.push("f_host_namespace_unchanged_by_the_suite".into());
        }
    }
    let (p, s) = (passed.load(Ordering::SeqCst), skipped.load(Ordering::SeqCst));
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!(
        "\ntest result: {}. {p} passed; {} failed; {s} ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed().as_secs_f32()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}

// ---------------------------------------------------------------- helpers

/// Set by the router-binary scenarios (q4, q7, q8) for the run of the suite
/// they start: the daemon the homes run (a router build under qemu-user)
/// instead of this build's.
pub(crate) const DAEMON_OVERRIDE: &str = "BULKHEAD_E2E_DAEMON";

/// The daemon binary the demo homes run.
pub(crate) fn daemon_bin() -> std::path::PathBuf {
    std::env::var_os(DAEMON_OVERRIDE).map_or_else(|| std::path::PathBuf::from(BIN), std::path::PathBuf::from)
}

/// A demo home with the daemon running and the pinned hosts registered.
pub(crate) fn running_home(extra_policies: &[(&str, &str)]) -> Result<DemoHome> {
    let demo = DemoHome::build(&daemon_bin(), extra_policies)?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    Ok(demo)
}

/// Waits until `check` says yes, up to `within`; fails saying `what` did not
/// happen.
pub(crate) fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if check()? {
            return Ok(());
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn mac_of(host: &str) -> Result<MacAddr> {
    HOSTS
        .iter()
        .find(|h| h.name == host)
        .map(|h| MacAddr(h.mac))
        .context("no such host")
}

pub(crate) fn expect_tcp(demo: &DemoHome, from: &str, to: IpAddr, port: u16, want: bool) -> Result<()> {
    let got = tcp_probe(demo.home.ns(from)?, SocketAddr::new(to, port), SHORT)?;
    ensure!(
        got == want,
        "{from} -> {to} tcp/{port}: reachable = {got}, expected {want}\n--- daemon log:\n{}",
        demo.log()
    );
    Ok(())
}

fn expect_udp(demo: &DemoHome, from: &str, to: IpAddr, port: u16, want: bool) -> Result<()> {
    let got = udp_probe(demo.home.ns(from)?, SocketAddr::new(to, port), SHORT)?;
    ensure!(
        got == want,
        "{from} -> {to} udp/{port}: reachable = {got}, expected {want}"
    );
    Ok(())
}

/// `nft list table` of one of our tables, with counters zeroed (traffic moves
/// them) so two listings compare by structure and elements.
pub(crate) fn listing(demo: &DemoHome, family: &str) -> Result<String> {
    let out = demo.home.router().exec(&["nft", "list", "table", family, "bulkhead"])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The port bindings follow the bridge's forwarding table (which device
    // talked since), and `router-v6` the addresses the kernel gave the
    // bridges, not the config: their elements are left out.
    let mut in_bindings = false;
    let mut in_elements = false;
    Ok(text
        .lines()
        .filter(|l| {
            let s = l.trim_start();
            if s.starts_with("set ") {
                in_bindings = s == "set port-of {" || s == "set bound-mac {" || s == "set router-v6 {";
            }
            if in_bindings && s.starts_with("elements = {") {
                in_elements = true;
            }
            let keep = !in_elements;
            if in_elements && s.ends_with('}') {
                in_elements = false;
            }
            keep
        })
        .map(|l| match l.find("counter packets") {
            Some(i) => {
                let rest = &l[i..];
                let after = rest.split_whitespace().skip(5).collect::<Vec<_>>().join(" ");
                format!("{}counter {after}", &l[..i])
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// (family, chain, handle, comment) of every rule in our tables.
fn rule_handles(demo: &DemoHome) -> Result<Vec<(String, String, u64, String)>> {
    let mut out = Vec::new();
    for fam in ["inet", "bridge"] {
        let o = demo
            .home
            .router()
            .exec(&["nft", "-j", "list", "table", fam, "bulkhead"])?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
        for item in v["nftables"].as_array().context("nft json")? {
            if let Some(r) = item.get("rule") {
                out.push((
                    fam.to_string(),
                    r["chain"].as_str().unwrap_or_default().to_string(),
                    r["handle"].as_u64().unwrap_or_default(),
                    r["comment"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    ensure!(!out.is_empty(), "no rules listed");
    Ok(out)
}

pub(crate) fn set_elements(demo: &DemoHome, set: &str) -> Result<String> {
    let o = demo
        .home
        .router()
        .exec(&["nft", "list", "set", "inet", "bulkhead", set])?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A lease for `ns`'s `eth0` from busybox udhcpc (`tries` DISCOVERs,
/// `wait_secs` apart), configured by a script written into `dir`: its IPv4
/// address. The error carries udhcpc's output.
pub(crate) fn udhcpc_lease(ns: &Netns, dir: &std::path::Path, tries: u32, wait_secs: u32) -> Result<IpAddr> {
    let script = dir.join("udhcpc.script");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$1\" in\n  bound|renew) ip addr add \"$ip/$subnet\" dev \"$interface\"; ip route replace default via \"${router%% *}\" ;;\nesac\nexit 0\n",
    )?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let (tries, wait) = (tries.to_string(), wait_secs.to_string());
    let sc = script.to_string_lossy();
    let got = ns.exec_output(&[
        "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", &tries, "-T", &wait, "-s", &sc,
    ])?;
    ensure!(
        got.status.success(),
        "udhcpc: {}{}",
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&got.stderr)
    );
    let out = ns.exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .with_context(|| format!("no address on eth0: {text}"))?
        .parse()?)
}

/// Set in the guest: the tests run there do not start another VM.
pub(crate) const IN_VM: &str = "BULKHEAD_E2E_IN_VM";

/// Runs the test `name` of this binary in a VM with Debian's kernel
/// (`bulkhead_netns::vm`), with `modules` loaded, and passes when it passed
/// there. The VM's console is shown when it did not.
pub(crate) fn in_vm(name: &str, modules: &[&str]) -> Result<Outcome> {
    if let Err(why) = bulkhead_netns::vm::available() {
        if std::env::var("CI").as_deref() == Ok("true") {
            anyhow::bail!("{name} needs a VM here and {why}");
        }
        return Ok(Outcome::Skipped(format!("needs a VM here and {why}")));
    }
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm");
    let (kernel, outcome) = bulkhead_netns::vm::run_self(
        &target,
        &[name],
        &[(IN_VM, "1"), ("CI", "true"), ("RUST_BACKTRACE", "1")],
        modules,
        Duration::from_secs(600),
    )
    .context("running the test in the VM")?;
    let passed = outcome.status == Some(0) && outcome.output.contains(&format!("test {name} ... ok"));
    ensure!(
        passed,
        "{name} in the VM ({}, kernel {}): status {:?}\n--- console:\n{}",
        outcome.accel,
        kernel.release,
        outcome.status,
        outcome.output
    );
    println!(
        "    ran in a VM ({}, Debian kernel {}) in {:.0}s",
        outcome.accel,
        kernel.release,
        outcome.took.as_secs_f32()
    );
    Ok(Outcome::Passed)
}

// ---------------------------------------------------------------- tests

/// a. iot reaches the internet; it cannot open a connection to a trusted host,
/// routed (camera on br-iot) nor on the same bridge (plug on br-lan); trusted
/// reaches both.
fn a_zones_routed_and_same_bridge() -> Result<Outcome> {
    let demo = running_home(&[])?;
    let internet: IpAddr = demo.home.internet_v4().into();
    let laptop = demo.ipv4("laptop")?;
    for iot in ["camera", "plug"] {
        expect_tcp(&demo, iot, internet, 80, true)?;
        expect_udp(&demo, iot, internet, 7, true)?;
        expect_tcp(&demo, iot, laptop, 80, false)?;
        expect_udp(&demo, iot, laptop, 7, false)?;
        expect_tcp(&demo, "laptop", demo.ipv4(iot)?, 80, true)?;
    }
    // The internet saw the router's address, not the camera's: masquerade works
    // (the isp has no route back to 10.0.0.0/8, so the probe above proves it).
    // ICMP follows the same zones.
    ensure!(
        bulkhead_netns::ping(demo.home.ns("camera")?, internet, SHORT)?,
        "camera cannot ping the internet"
    );
    ensure!(
        !bulkhead_netns::ping(demo.home.ns("camera")?, laptop, SHORT)?,
        "camera pinged the laptop"
    );
    ensure!(
        !bulkhead_netns::ping(demo.home.ns("plug")?, laptop, SHORT)?,
        "plug pinged the laptop across the bridge"
    );
    ensure!(
        bulkhead_netns::ping(demo.home.ns("laptop")?, demo.ipv4("plug")?, SHORT)?,
        "laptop cannot ping the plug"
    );
    // iot devices do not reach each other (intra_zone = false in the default policy).
    expect_tcp(&demo, "camera", demo.ipv4("plug")?, 80, false)?;
    Ok(Outcome::Passed)
}

/// OpenWrt does not load br_netfilter; this kernel does by default. With it off,
/// bridged frames never reach the inet hooks and `table bridge bulkhead` alone
/// keeps the plug from opening connections to the laptop on their shared bridge.
fn a_same_bridge_without_br_netfilter() -> Result<Outcome> {
    let demo = DemoHome::build(&daemon_bin(), &[])?;
    let router = demo.home.router();
    if !router.exec_ok(&[
        "sysctl",
        "-q",
        "-w",
        "net.bridge.bridge-nf-call-iptables=0",
        "net.bridge.bridge-nf-call-ip6tables=0",
    ])? {
        return Ok(Outcome::Skipped(
            "br_netfilter sysctls are not per-namespace on this kernel".into(),
        ));
    }
    demo.start_daemon()?;
    demo.register_hosts()?;
    let laptop = demo.ipv4("laptop")?;
    expect_tcp(&demo, "plug", laptop, 80, false)?;
    expect_tcp(&demo, "stranger", laptop, 80, false)?;
    expect_tcp(&demo, "laptop", demo.ipv4("plug")?, 80, true)?;
    let plug6 = SocketAddr::new(demo.ipv6("plug")?, 80);
    ensure!(
        bulkhead_netns::eventually(Duration::from_secs(5), || tcp_probe(
            demo.home.ns("laptop")?,
            plug6,
            SHORT
        ))?,
        "laptop never reached the plug over IPv6"
    );
    expect_tcp(&demo, "plug", demo.ipv6("laptop")?, 80, false)?;
    Ok(Outcome::Passed)
}

/// The plug (iot) shares a bridge with the laptop (trusted). It tries two ways
/// around the bridge table: sending to the laptop's IP through the router (a
/// hairpin: routed, not bridged), and sending unicast IP inside broadcast frames
/// (a group MAC is let through for DHCP/mDNS). Both must fail; the laptop still
/// reaches the plug.
fn a_no_way_around_the_bridge_table() -> Result<Outcome> {
    let demo = running_home(&[])?;
    let laptop = demo.ipv4("laptop")?;
    let plug = demo.home.ns("plug")?;
    // Hairpin through the router.
    plug.ip(&["route", "add", "10.0.1.10/32", "via", "10.0.1.1"])?;
    expect_tcp(&demo, "plug", laptop, 80, false)?;
    expect_udp(&demo, "plug", laptop, 7, false)?;
    plug.ip(&["route", "del", "10.0.1.10/32"])?;
    // Unicast IP in broadcast frames.
    plug.ip(&[
        "neigh",
        "replace",
        "10.0.1.10",
        "lladdr",
        "ff:ff:ff:ff:ff:ff",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])?;
    expect_udp(&demo, "plug", laptop, 7, false)?;
    expect_tcp(&demo, "plug", laptop, 80, false)?;
    plug.ip(&["neigh", "del", "10.0.1.10", "dev", "eth0"])?;
    // Control: the probes can succeed where the zones allow it.
    expect_tcp(&demo, "laptop", demo.ipv4("plug")?, 80, true)?;
    expect_udp(&demo, "laptop", demo.ipv4("plug")?, 7, false)?; // UDP answers across zones on one bridge: blocked by design
    Ok(Outcome::Passed)
}

/// A device's IPv6 addresses join its zone's v6 set: same answers as IPv4.
fn a_ipv6_is_enforced_like_ipv4() -> Result<Outcome> {
    let demo = running_home(&[])?;
    let laptop6 = demo.ipv6("laptop")?;
    // The router's IPv6 gateway addresses go through duplicate address detection
    // (about a second) before they route: wait for the first allowed probe.
    let camera6 = SocketAddr::new(demo.ipv6("camera")?, 80);
    ensure!(
        bulkhead_netns::eventually(Duration::from_secs(5), || tcp_probe(
            demo.home.ns("laptop")?,
            camera6,
            SHORT
        ))?,
        "laptop never reached the camera over IPv6"
    );
    expect_tcp(&demo, "camera", laptop6, 80, false)?;
    expect_tcp(&demo, "plug", laptop6, 80, false)?;
    expect_tcp(&demo, "laptop", demo.ipv6("plug")?, 80, true)?;
    expect_tcp(&demo, "stranger", laptop6, 80, false)?;
    ensure!(
        set_elements(&demo, "iot_v6")?.contains("fd00:2::10"),
        "camera's IPv6 is not in iot_v6"
    );
    Ok(Outcome::Passed)
}

/// b. a quarantined host reaches only the router's DHCP and DNS ports.
fn b_quarantine_reaches_only_dhcp_and_dns() -> Result<Outcome> {
    let demo = running_home(&[])?;
    // Listeners in the router for every port we ask about: a "no" then means the
    // firewall said no, not that nothing listens. Port 53 is Bulkhead's own
    // resolver.
    demo.home.start_tcp_listener("router", 22)?;
    for port in [67, 123] {
        demo.home.start_udp_echo("router", port)?;
    }
    let gw: IpAddr = "10.0.1.1".parse()?;
    let s = "stranger";
    for tcp in [false, true] {
        let (status, answers) = dns::dig(demo.home.ns(s)?, gw, "router.lan", "A", tcp)?;
        ensure!(
            status == "NOERROR" && answers.iter().any(|a| a == "10.0.1.1"),
            "quarantine cannot ask the router's DNS (tcp: {tcp}): {status} {answers:?}\n{}",
            demo.log()
        );
    }
    expect_udp(&demo, s, gw, 67, true)?;
    expect_tcp(&demo, s, gw, 22, false)?;
    expect_udp(&demo, s, gw, 123, false)?;
    expect_tcp(&demo, s, gw, 8080, false)?; // the web UI
    ensure!(
        !bulkhead_netns::ping(demo.home.ns(s)?, gw, SHORT)?,
        "quarantine pinged the router"
    );
    expect_tcp(&demo, s, demo.home.internet_v4().into(), 80, false)?;
    expect_tcp(&demo, s, demo.ipv4("laptop")?, 80, false)?;
    expect_tcp(&demo, s, demo.ipv4("camera")?, 80, false)?;
    // Control: the trusted laptop does get NTP and the web UI, so the "no"s above
    // are the zone's doing.
    expect_udp(&demo, "laptop", gw, 123, true)?;
    // The web UI speaks HTTP, not the banner: a completed TCP handshake is the test.
    let reached = demo
        .home
        .ns("laptop")?
        .run_in(move || std::net::TcpStream::connect_timeout(&SocketAddr::new(gw, 8080), SHORT).is_ok())?;
    ensure!(reached, "trusted laptop cannot reach the web UI port");
    let blocked = demo
        .home
        .ns(s)?
        .run_in(move || std::net::TcpStream::connect_timeout(&SocketAddr::new(gw, 8080), SHORT).is_err())?;
    ensure!(blocked, "quarantine reached the web UI port");
    Ok(Outcome::Passed)
}

/// c. set-zone takes effect within 100 ms, only through set elements (every rule
/// keeps its handle), and cuts the moved device's connections that its new zone
/// forbids.
fn c_set_zone_is_a_fast_set_delta_and_cuts_connections() -> Result<Outcome> {
    let demo = running_home(&[])?;
    let handles_before = rule_handles(&demo)?;
    let laptop = demo.ipv4("laptop")?;

    // 1. The plug (iot) cannot reach the laptop; move it to trusted and time how
    //    long until a new connection gets through.
    expect_tcp(&demo, "plug", laptop, 80, false)?;
    let plug_ns = demo.home.ns("plug")?;
    let t0 = Instant::now();
    demo.call(Request::SetZone {
        mac: mac_of("plug")?,
        zone: ZoneId::new("trusted").map_err(anyhow::Error::msg)?,
    })?;
    let mut took = None;
    while t0.elapsed() < Duration::from_secs(2) {
        if tcp_probe(plug_ns, SocketAddr::new(laptop, 80), Duration::from_millis(30))? {
            took = Some(t0.elapsed());
            break;
        }
    }
    let took = took.context("the plug never reached the laptop after moving to trusted")?;
    ensure!(
        took < Duration::from_millis(100),
        "set-zone took {took:?} to take effect (goal: < 100 ms)"
    );
    println!("    set-zone to effect: {took:?}");

    // 2. The laptop (trusted) holds an open session to the camera (iot); moving
    //    the laptop to iot cuts it, and new connections are refused too.
    let camera = demo.ipv4("camera")?;
    let mut session = TcpSession::open(demo.home.ns("laptop")?, SocketAddr::new(camera, 7), SHORT)?;
    ensure!(session.roundtrip(SHORT), "session did not work before the move");
    demo.call(Request::SetZone {
        mac: mac_of("laptop")?,
        zone: ZoneId::new("iot").map_err(anyhow::Error::msg)?,
    })?;
    ensure!(
        !session.roundtrip(SHORT),
        "the established session outlived the move to a stricter zone"
    );
    expect_tcp(&demo, "laptop", camera, 80, false)?;
    // Moving back to trusted restores new connections.
    demo.call(Request::SetZone {
        mac: mac_of("laptop")?,
        zone: ZoneId::new("trusted").map_err(anyhow::Error::msg)?,
    })?;
    expect_tcp(&demo, "laptop", camera, 80, true)?;

    // 3. No rule was replaced: same handles, same names, same order.
    let handles_after = rule_handles(&demo)?;
    ensure!(
        handles_before == handles_after,
        "rules changed during set-zone:\nbefore {handles_before:?}\nafter  {handles_after:?}"
    );
    let Response::Status(st) = demo.call(Request::Status)? else {
        bail!("status")
    };
    ensure!(
        st.full_applies == 1,
        "expected exactly the start-up full apply, got {}",
        st.full_applies
    );
    ensure!(st.delta_applies >= 3, "expected set deltas, got {}", st.delta_applies);
    ensure!(
        set_elements(&demo, "trusted_mac")?.contains(&mac_of("plug")?.to_string()),
        "plug not in trusted_mac"
    );
    Ok(Outcome::Passed)
}

/// d. a bad policy on SIGHUP is refused: ruleset and traffic unchanged; a good
/// one afterwards is taken.
fn d_bad_policy_on_sighup_changes_nothing() -> Result<Outcome> {
    let demo = running_home(&[])?;
    let before = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
    let bad = demo.dir.join("policies/60-typo.toml");
    std::fs::write(&bad, "[zones.iot_extra]\nreach_zones = [\"trustd\"]\n")?;
    demo.signal_daemon(Signal::SIGHUP)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !demo.log().contains("reload refused") {
        ensure!(Instant::now() < deadline, "no refusal logged:\n{}", demo.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(
        demo.log()
            .contains("60-typo.toml:2:16: zones.iot_extra.reach_zones[0]: unknown zone `trustd`"),
        "error lacks file:line:col and field:\n{}",
        demo.log()
    );
    let after = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
    ensure!(before == after, "ruleset changed after a refused reload");
    expect_tcp(&demo, "camera", demo.ipv4("laptop")?, 80, false)?;
    expect_tcp(&demo, "laptop", demo.ipv4("camera")?, 80, true)?;
    expect_tcp(&demo, "camera", demo.home.internet_v4().into(), 80, true)?;
    // Control: a valid change is taken (the iot zone loses the internet).
    std::fs::remove_file(&bad)?;
    let zones = std::fs::read_to_string(demo.dir.join("policies/zones.toml"))?;
    let cut = zones.replacen("[zones.iot]\ndescription = \"Cameras, plugs, speakers, TVs: internet only, answers trusted, never starts a connection into it\"\ninternet = true", "[zones.iot]\ninternet = false", 1);
    ensure!(cut != zones, "could not edit the iot zone");
    std::fs::write(demo.dir.join("policies/zones.toml"), cut)?;
    demo.signal_daemon(Signal::SIGHUP)?;
    ensure!(
        bulkhead_netns::eventually(Duration::from_secs(5), || Ok(!tcp_probe(
            demo.home.ns("camera")?,
            SocketAddr::new(demo.home.internet_v4().into(), 80),
            SHORT
        )?))?,
        "a valid reload was not applied"
    );
    Ok(Outcome::Passed)
}

/// d2. The daemon killed (SIGKILL) at moments during a full replace, over
/// and over: the kernel holds a whole ruleset each time — the one before or
/// the one after, never a mix or none (one nft transaction) — and the next
/// start puts the config on disk in force.
fn d2_killed_during_a_full_replace_leaves_a_whole_ruleset() -> Result<Outcome> {
    let demo = running_home(&[])?;
    let zones_path = demo.dir.join("policies/zones.toml");
    let open = std::fs::read_to_string(&zones_path)?;
    let closed = open.replacen("[zones.iot]\ndescription = \"Cameras, plugs, speakers, TVs: internet only, answers trusted, never starts a connection into it\"\ninternet = true", "[zones.iot]\ninternet = false", 1);
    ensure!(closed != open, "could not edit the iot zone");
    let internet = SocketAddr::new(demo.home.internet_v4().into(), 80);
    let camera_online = || tcp_probe(demo.home.ns("camera")?, internet, SHORT).map_err(anyhow::Error::from);
    // Both rulesets, as the daemon applies them.
    let both = |zones: &str| -> Result<(String, String)> {
        std::fs::write(&zones_path, zones)?;
        demo.kill_daemon()?;
        demo.start_daemon()?;
        Ok((listing(&demo, "inet")?, listing(&demo, "bridge")?))
    };
    let ruleset_closed = both(&closed)?;
    ensure!(!camera_online()?, "iot without internet");
    let ruleset_open = both(&open)?;
    ensure!(camera_online()?, "iot with internet");
    ensure!(ruleset_open != ruleset_closed, "the two configs give the same ruleset");
    let (mut kept_before, mut took_after, mut between) = (0, 0, 0);
    for round in 0..16u64 {
        let (text, want_after) = if round % 2 == 0 {
            (&closed, &ruleset_closed)
        } else {
            (&open, &ruleset_open)
        };
        let before = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
        std::fs::write(&zones_path, text)?;
        demo.signal_daemon(Signal::SIGHUP)?;
        // Somewhere in the reload: reading the config, rendering, or nft
        // reading its document.
        std::thread::sleep(Duration::from_millis(round * 3));
        demo.kill_daemon()?;
        // An nft already running finishes on its own (its input is whole or
        // it refuses a cut document); give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        let now = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
        // The neighbour-advert guards go in over netlink right after nft's
        // transaction (nft 1.0.6 cannot load them: ARCHITECTURE, "Neighbour
        // adverts"), in place of the document's placeholder that drops every
        // advert: killed between the two, the new ruleset is whole with the
        // placeholder — closed — until the daemon is back. The one state
        // allowed besides the two wholes, counted.
        let without_guards = |r: &(String, String)| {
            let bridge: Vec<&str> =
                r.1.lines()
                    .filter(|l| {
                        !["claims-router", "claims-device", "guards-pending"]
                            .iter()
                            .any(|c| l.contains(&format!("comment \"{c}\"")))
                    })
                    .collect();
            (r.0.clone(), bridge.join("\n"))
        };
        let pending = |r: &(String, String)| {
            without_guards(r) == without_guards(want_after)
                && r.1.contains("comment \"guards-pending\"")
                && !r.1.contains("comment \"claims-device\"")
        };
        ensure!(
            !want_after.1.contains("guards-pending") && want_after.1.contains("comment \"claims-device\""),
            "the daemon's ruleset still holds the placeholder:\n{}",
            want_after.1
        );
        if now == before {
            kept_before += 1;
        } else if &now == want_after {
            took_after += 1;
        } else if pending(&now) {
            between += 1;
        }
        ensure!(
            now == before || &now == want_after || pending(&now),
            "round {round}: killed {} ms into a reload, the kernel holds neither ruleset:\n{}\n{}",
            round * 3,
            now.0,
            now.1
        );
        demo.start_daemon()?;
        let started = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
        ensure!(
            &started == want_after,
            "round {round}: the restart did not put the config on disk in force"
        );
        ensure!(
            camera_online()? == (round % 2 == 1),
            "round {round}: traffic does not follow the config"
        );
    }
    eprintln!(
        "    killed mid-reload 16 times: the ruleset before stayed {kept_before} times, the new one was whole {took_after} \
         times, whole with the neighbour-advert placeholder (adverts dropped) {between} times"
    );
    Ok(Outcome::Passed)
}

/// e. kill -9 the daemon while probes run: nothing gets through while it is down
/// or restarting, and the ruleset after restart equals the one before.
fn e_kill_9_and_restart_never_open_the_network() -> Result<Outcome> {
    let demo = running_home(&[])?;
    // Discovery learns the stranger from the neighbour table as soon as it talks
    // to the router; let that happen first, so "before" is the settled state.
    let _ = bulkhead_netns::ping(demo.home.ns("stranger")?, "10.0.1.1".parse()?, SHORT)?;
    let stranger = mac_of("stranger")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !set_elements(&demo, "quarantine_mac")?.contains(&stranger.to_string()) {
        ensure!(Instant::now() < deadline, "the stranger was never discovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
    let stop = Arc::new(AtomicBool::new(false));
    let forbidden_ok = Arc::new(AtomicUsize::new(0));
    let allowed_ok = Arc::new(AtomicUsize::new(0));
    let probes = Arc::new(AtomicUsize::new(0));
    let laptop = demo.ipv4("laptop")?;
    let camera = demo.ipv4("camera")?;
    std::thread::scope(|scope| -> Result<()> {
        let h = &demo.home;
        let (stop2, bad, good, n) = (stop.clone(), forbidden_ok.clone(), allowed_ok.clone(), probes.clone());
        let prober = scope.spawn(move || -> Result<()> {
            let t = Duration::from_millis(60);
            while !stop2.load(Ordering::SeqCst) {
                // Forbidden: iot -> trusted, routed and on the same bridge; and
                // quarantine -> the internet.
                for (from, to) in [("camera", laptop), ("plug", laptop)] {
                    if tcp_probe(h.ns(from)?, SocketAddr::new(to, 80), t)? {
                        bad.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if tcp_probe(h.ns("stranger")?, SocketAddr::new(h.internet_v4().into(), 80), t)? {
                    bad.fetch_add(1, Ordering::SeqCst);
                }
                // Allowed, as a control that probing works throughout.
                if tcp_probe(h.ns("laptop")?, SocketAddr::new(camera, 80), t)? {
                    good.fetch_add(1, Ordering::SeqCst);
                }
                n.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(300));
        demo.kill_daemon()?;
        std::thread::sleep(Duration::from_millis(1000));
        demo.start_daemon()?;
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        prober.join().map_err(|_| anyhow::anyhow!("prober panicked"))??;
        Ok(())
    })?;
    let (n, bad, good) = (
        probes.load(Ordering::SeqCst),
        forbidden_ok.load(Ordering::SeqCst),
        allowed_ok.load(Ordering::SeqCst),
    );
    println!("    {n} probe rounds, {bad} forbidden successes, {good} allowed successes");
    ensure!(n >= 5, "too few probe rounds ({n}) to mean anything");
    ensure!(
        bad == 0,
        "{bad} forbidden connections succeeded around the kill/restart"
    );
    ensure!(good * 10 >= n * 8, "allowed traffic was disturbed: {good} of {n}");
    let after = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
    ensure!(
        before == after,
        "ruleset after restart differs:\n--- before\n{}\n--- after\n{}",
        before.0,
        after.0
    );
    Ok(Outcome::Passed)
}

/// `bulkhead check-config` names file, line, column and field, and exits non-zero.
fn g_check_config_reports_file_line_field() -> Result<Outcome> {
    let dir = std::env::temp_dir().join(format!("bulkhead-e2e-cfg-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("policies"))?;
    std::fs::write(dir.join("bulkhead.toml"), "policies_dir = \"policies\"\n[wan]\ninterface = \"wan0\"\n[[segments]]\nname = \"lan\"\ninterface = \"br-lan\"\nkind = \"bridge\"\nipv4 = \"10.0.1.0/24\"\n")?;
    std::fs::write(
        dir.join("policies/z.toml"),
        "unknown_zone = \"quarantine\"\n[zones.quarantine]\n",
    )?;
    let out = std::process::Command::new(BIN)
        .args(["--config", &dir.join("bulkhead.toml").to_string_lossy(), "check-config"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(!out.status.success(), "check-config accepted a bad config");
    ensure!(
        err.contains("bulkhead.toml:8:8: segments[0].ipv4:"),
        "no file:line:col: field in:\n{err}"
    );
    Ok(Outcome::Passed)
}

/// Bulkhead never touches a table it does not own: another table in the router
/// namespace survives start, set-zone, reload and stop untouched.
fn h_other_tables_are_never_touched() -> Result<Outcome> {
    let demo = DemoHome::build(&daemon_bin(), &[])?;
    let router = demo.home.router();
    let fw4 = r#"table inet fw4 {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 2222 counter accept comment "someone else's rule"
	}
}
"#;
    let path = demo.dir.join("fw4.nft");
    std::fs::write(&path, fw4)?;
    ensure!(
        router.exec_ok(&["nft", "-f", &path.to_string_lossy()])?,
        "could not load the fake fw4 table"
    );
    let list = |r: &Netns| -> Result<String> {
        Ok(String::from_utf8_lossy(&r.exec(&["nft", "list", "table", "inet", "fw4"])?.stdout).into_owned())
    };
    let before = list(router)?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    demo.call(Request::SetZone {
        mac: mac_of("plug")?,
        zone: ZoneId::new("guest").map_err(anyhow::Error::msg)?,
    })?;
    demo.signal_daemon(Signal::SIGHUP)?;
    std::thread::sleep(Duration::from_millis(300));
    demo.stop_daemon()?;
    let router = demo.home.router();
    ensure!(list(router)? == before, "table inet fw4 changed");
    // Stopping leaves our rules in force.
    ensure!(
        router.exec_ok(&["nft", "list", "table", "inet", "bulkhead"])?,
        "our table vanished on stop"
    );
    expect_tcp(&demo, "camera", demo.ipv4("laptop")?, 80, false)?;
    Ok(Outcome::Passed)
}

/// A VLAN segment created by Bulkhead, where the kernel has 8021q.
fn i_vlan_segment_on_a_kernel_with_8021q() -> Result<Outcome> {
    if !bulkhead::net::vlan_supported() {
        // This kernel has no 802.1Q: the same test, in a VM with Debian's.
        if std::env::var_os(IN_VM).is_some() {
            return Ok(Outcome::Skipped(bulkhead::net::VLAN_UNSUPPORTED.to_string()));
        }
        return in_vm("i_vlan_segment_on_a_kernel_with_8021q", &["8021q"]);
    }
    // With 8021q: a router namespace whose iot segment is VLAN 20 on a trunk port.
    let ns = Netns::new("vlan")?;
    ns.ip_batch(&["link add trunk type veth peer name trunkx"])?;
    let dir = std::env::temp_dir().join(format!("bulkhead-e2e-vlan-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("policies"))?;
    for (name, text) in bulkhead::demo::shipped_policies() {
        std::fs::write(dir.join("policies").join(name), text)?;
    }
    std::fs::write(
        dir.join("bulkhead.toml"),
        "state_dir = \"state\"\npolicies_dir = \"policies\"\ncontrol_socket = \"c.sock\"\n[wan]\ninterface = \"trunkx\"\n[[segments]]\nname = \"iot\"\ninterface = \"trunk.20\"\nkind = \"vlan\"\nparent = \"trunk\"\nvlan_id = 20\nipv4 = \"10.0.20.1/24\"\n",
    )?;
    let log = dir.join("log");
    let pid = ns.spawn_logged(
        BIN,
        &["--config", &dir.join("bulkhead.toml").to_string_lossy(), "daemon"],
        &log,
    )?;
    // An emulated CPU (the VM without KVM) is many times slower.
    let patience = if std::env::var_os(IN_VM).is_some() { 90 } else { 10 };
    let ok = bulkhead_netns::eventually(Duration::from_secs(patience), || {
        let o = ns.exec(&["ip", "-d", "link", "show", "trunk.20"]);
        Ok(
            o.map(|o| String::from_utf8_lossy(&o.stdout).contains("vlan protocol 802.1Q id 20"))
                .unwrap_or(false),
        )
    })?;
    ns.stop_tracked(pid)?;
    let daemon_log = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(ok, "VLAN trunk.20 was not created\n--- daemon log:\n{daemon_log}");
    Ok(Outcome::Passed)
}

/// A document nft rejects (here: a rule jumping to a chain that does not exist,
/// at the very end) leaves the ruleset exactly as it was: the delete/re-create of
/// our tables earlier in the same document never lands.
fn j_rejected_document_leaves_the_kernel_as_it_was() -> Result<Outcome> {
    use bulkhead::firewall::{render, NftBackend, NftCli};
    use std::borrow::Cow;
    let demo = running_home(&[])?;
    let before = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
    let config = bulkhead::config::load(&demo.config_path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rs = bulkhead::policy::desired_ruleset(&config, &Default::default());
    let doc = render::full_document(&rs, &Default::default());
    let mut objects = doc.objects.into_owned();
    objects.push(nftables::schema::NfObject::CmdObject(nftables::schema::NfCmd::Add(
        nftables::schema::NfListObject::Rule(nftables::schema::Rule {
            family: nftables::types::NfFamily::INet,
            table: Cow::Borrowed("bulkhead"),
            chain: Cow::Borrowed("forward"),
            expr: Cow::Owned(vec![nftables::stmt::Statement::Jump(nftables::stmt::JumpTarget {
                target: Cow::Borrowed("no_such_chain"),
            })]),
            handle: None,
            index: None,
            comment: None,
        }),
    )));
    let bad = nftables::schema::Nftables {
        objects: Cow::Owned(objects),
    };
    let result = demo.home.router().run_in(|| NftCli::default().apply(&bad))?;
    ensure!(
        result.is_err(),
        "nft accepted a document with a jump to a missing chain"
    );
    let after = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
    ensure!(before == after, "a rejected document changed the ruleset");
    // And the membership in force is untouched: traffic as before.
    expect_tcp(&demo, "laptop", demo.ipv4("camera")?, 80, true)?;
    expect_tcp(&demo, "camera", demo.ipv4("laptop")?, 80, false)?;
    Ok(Outcome::Passed)
}

/// g2. Every CLI command whose output is cut (`| head -n 1`, or a reader
/// already gone) ends quietly: status 0 or SIGPIPE's, never a panic.
fn g2_cli_output_cut_short_ends_quietly() -> Result<Outcome> {
    use std::os::unix::process::ExitStatusExt;
    let demo = running_home(&[])?;
    let cfg = demo.config_path().to_string_lossy().into_owned();
    let commands: &[&[&str]] = &[
        &["devices"],
        &["devices", "--json"],
        &["alerts"],
        &["alerts", "--json"],
        &["zones"],
        &["zones", "--json"],
        &["status"],
        &["suggestions"],
        &["dns", "status"],
        &["dns", "log"],
        &["detect"],
        &["notify", "status"],
        &["vpn", "status"],
        &["check-config"],
        &["--help"],
    ];
    let mut problems = Vec::new();
    for args in commands {
        let mut full = vec!["--config", cfg.as_str()];
        full.extend_from_slice(args);
        // A reader that is already gone: the first write fails, always.
        let (reader, writer) = nix::unistd::pipe()?;
        drop(reader);
        // The CLI needs only the control socket's path: no namespace.
        let out = std::process::Command::new(BIN)
            .args(&full)
            .stdout(std::process::Stdio::from(writer))
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // 13: SIGPIPE.
        let quiet = out.status.success() || out.status.signal() == Some(13);
        if !quiet || stderr.contains("panicked") {
            problems.push(format!("bulkhead {}: {:?}\n{stderr}", args.join(" "), out.status));
        }
        // And as the issue tried it: into `head -n 1`.
        let line = format!(
            "{BIN} --config {cfg} {} | head -n 1 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
            args.join(" ")
        );
        let piped = std::process::Command::new("bash").args(["-c", &line]).output()?;
        let status = String::from_utf8_lossy(&piped.stdout).trim().to_string();
        let stderr = String::from_utf8_lossy(&piped.stderr);
        if !(status == "0" || status == "141") || stderr.contains("panicked") {
            problems.push(format!(
                "bulkhead {} | head -n 1: status {status}\n{stderr}",
                args.join(" ")
            ));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(Outcome::Passed)
}
