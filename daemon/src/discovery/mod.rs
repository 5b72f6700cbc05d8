//! Discovery: every source of facts about devices, turned into inventory
//! [`Event`](crate::inventory::Event)s. Nothing here decides a zone or touches
//! the firewall: the core ([`crate::core`]) takes what these modules observe.
//!
//! - [`dhcp`]: Bulkhead's own DHCPv4 server (pure state machine + sockets), and
//!   observer mode beside another server (captured client packets, dnsmasq's
//!   lease file).
//! - [`mdns`]: the mDNS browser (service types, instances, TXT) on the LAN
//!   segments only.
//! - [`neigh`]: the kernel's neighbour table (ARP and NDP) as sightings.
//! - [`ssdp`]: SSDP/UPnP: `SERVER` headers and device descriptions.
//! - [`oui`]: the IEEE MAC vendor registry, compiled in.

pub mod dhcp;
pub mod mdns;
pub mod neigh;
pub mod oui;
pub mod ssdp;
