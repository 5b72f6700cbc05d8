//! The demo's DNS: the ISP's resolver (Debian's unbound, serving the test
//! zones of `bulkhead_netns::dns` on 192.0.2.53 in the `isp` namespace) as
//! Bulkhead's upstream, and an ad list for the iot zone.
//!
//! ```text
//!  isp ns: lo 192.0.2.53, 2001:db8:53::53   unbound: example.test (www, cdn, video, private, …)
//!          53 plain, 853 DoT, 8443 DoH; dns.example.test A 192.0.2.53 (its certificate's name)
//!          stream.example.test A 203.0.113.77 (the VPN canary: a domain the demo routes through
//!          the tunnel by name)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Context;
use bulkhead_netns::dns::{Record, TestZones, Unbound, TLS_HOSTNAME};

use super::vpn::CANARY_V4;
use super::DemoHome;

/// The ISP's resolver, IPv4.
pub const RESOLVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
/// The ISP's resolver, IPv6.
pub const RESOLVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x53, 0, 0, 0, 0, 0x53);
/// A name whose address is the VPN canary: selected for the tunnel by domain.
pub const STREAM_NAME: &str = "stream.example.test";
/// A name on the demo's ad list (iot devices get 0.0.0.0 for it).
pub const AD_NAME: &str = "ads.example.test";

impl DemoHome {
    /// Starts the ISP's resolver and writes the router's `[dns]` section with
    /// it as upstream, plus `extra` (more `[dns]` keys, then tables such as
    /// `[[dns.blocklists]]`). Before [`start_daemon`](Self::start_daemon).
    /// The resolver runs until the home is removed. Returns its pid.
    pub fn start_isp_resolver(&self, extra: &str) -> anyhow::Result<u32> {
        self.start_isp_resolver_as(&format!("\"{RESOLVER_V4}\""), extra)
    }

    /// The CA of the ISP resolver's certificate, for
    /// `dns.tls_ca_file` (after [`start_isp_resolver`](Self::start_isp_resolver)).
    pub fn isp_resolver_ca(&self) -> std::path::PathBuf {
        self.dir.join("isp-resolver").join("tls-ca.pem")
    }

    /// [`start_isp_resolver`](Self::start_isp_resolver) with `upstreams`
    /// written as given (e.g. `"tls://192.0.2.53"`).
    pub fn start_isp_resolver_as(&self, upstreams: &str, extra: &str) -> anyhow::Result<u32> {
        let isp = self.home.isp();
        isp.ip_batch(&[
            format!("addr add {RESOLVER_V4}/32 dev lo"),
            format!("addr add {RESOLVER_V6}/128 dev lo nodad"),
        ])?;
        let zones = TestZones::new()
            .with_record(Record::new(STREAM_NAME, 300, "A", CANARY_V4.to_string()))?
            .with_record(Record::new(AD_NAME, 300, "A", "192.0.2.66"))?
            // The resolver's own name (its certificate's), for upstreams
            // given by name and found through dns.bootstrap.
            .with_record(Record::new(TLS_HOSTNAME, 300, "A", RESOLVER_V4.to_string()))?;
        let unbound = Unbound::start(
            isp,
            &[IpAddr::V4(RESOLVER_V4), IpAddr::V6(RESOLVER_V6)],
            &zones,
            &self.dir.join("isp-resolver"),
        )
        .context("starting the ISP's resolver (unbound)")?;
        let lists = self.dir.join("lists");
        std::fs::create_dir_all(&lists)?;
        std::fs::write(
            lists.join("ads.txt"),
            format!("# The demo's ad list (AdGuard syntax).\n||{AD_NAME}^\n"),
        )?;
        let path = self.config_path();
        let mut text = std::fs::read_to_string(&path)?;
        anyhow::ensure!(!text.contains("\n[dns]"), "the [dns] section is written once");
        text.push_str(&format!(
            "\n[dns]\nupstreams = [{upstreams}]\n{extra}\n\n[[dns.blocklists]]\nname = \"ads\"\nfile = \"lists/ads.txt\"\n"
        ));
        std::fs::write(&path, text)?;
        // IoT devices get no ads: the zone (defined in the shipped zones file)
        // names the list.
        let zones_file = self.dir.join("policies/zones.toml");
        let zones_text = std::fs::read_to_string(&zones_file)?;
        anyhow::ensure!(zones_text.contains("[zones.iot]\n"), "the shipped zones define iot");
        std::fs::write(
            &zones_file,
            zones_text.replacen("[zones.iot]\n", "[zones.iot]\ndns_blocklists = [\"ads\"]\n", 1),
        )?;
        Ok(unbound.detach())
    }
}
