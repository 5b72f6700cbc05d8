//! Links and addresses: make the kernel's interfaces match the segments the
//! config wants, by diff.
//!
//! The flow is the one every applier in Bulkhead follows:
//!
//! ```text
//! DesiredNet ─┐
//!             ├─> plan() (pure) ─> NetPlan ─> apply() ─> NetReport
//! observe() ──┘
//! ```
//!
//! [`plan`] compares what the config wants ([`DesiredNet`]) with what the
//! kernel holds ([`ObservedNet`]) and returns the minimal list of changes as
//! plain data. [`apply`] executes them over rtnetlink, treating "already
//! exists" as success, so running the whole flow twice changes nothing the
//! second time.
//!
//! # What Bulkhead may change
//!
//! A router shares its kernel with the user, OpenWrt's netifd and other
//! daemons, and Bulkhead cannot tell which of them made a link or an address.
//! So the rules are:
//!
//! * It only ever **adds**: bridges and VLANs that are missing, ports to its
//!   bridges, gateway addresses, the admin "up" flag.
//! * It **never deletes** a link or an address, not even one that looks stale
//!   or one it made itself on an earlier run: extra addresses may belong to the
//!   user or to OpenWrt, and a wrongly deleted address cuts the router off.
//! * The one thing it takes away from someone else: a port listed for a bridge
//!   that Bulkhead manages ([`LinkKind::Bridge`]) is moved into that bridge even
//!   if it is enslaved to another master. Listing the port in the config is
//!   taken as the user's instruction to do so.
//! * When the kernel holds something that contradicts the config (a name used
//!   by a link of another kind, a VLAN with another id, the gateway address
//!   with another prefix length) it does not "fix" it; the plan carries a
//!   [`PlanProblem`] instead, and the rest of the plan goes ahead.

mod apply;
pub mod forwarding;
mod observe;
mod plan;
mod vlan;

#[cfg(test)]
pub(crate) mod in_netns;
#[cfg(test)]
mod netns_test;

use std::fmt;

use ipnet::IpNet;

pub use apply::{apply, open, reconcile, MemoryNet, NetApplier, RtnetlinkNet};
pub use observe::{observe, observed_from_messages, wireless_ports};
pub use plan::{plan, retired_links};
pub use vlan::{vlan_link_message, vlan_supported, VLAN_UNSUPPORTED};

/// What the config wants the kernel's links and addresses to be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredNet {
    /// One entry per segment the router serves.
    pub segments: Vec<SegmentLink>,
}

/// The link that carries one segment, and the router's addresses on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentLink {
    /// Interface name (at most 15 bytes, the kernel's limit).
    pub interface: String,
    /// How the interface comes to exist.
    pub kind: LinkKind,
    /// The router's gateway addresses on the segment, with the segment's
    /// prefix length (e.g. `10.0.1.1/24`, `fd00:1::1/64`).
    pub addresses: Vec<IpNet>,
}

/// How a segment's interface comes to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// Made by someone else (a NIC, OpenWrt's `br-lan`, a Wi-Fi interface);
    /// Bulkhead only adds addresses and sets it up.
    Existing,
    /// A bridge Bulkhead creates if missing, with these ports enslaved to it.
    Bridge {
        /// Names of the links to enslave; they must exist or be created by
        /// the same plan (a VLAN segment, for instance).
        ports: Vec<String>,
    },
    /// An 802.1Q VLAN link Bulkhead creates if missing.
    Vlan {
        /// Name of the link the VLAN is stacked on.
        parent: String,
        /// VLAN id, 1..=4094.
        id: u16,
    },
}

/// The kernel's links and addresses, as read by [`observe`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedNet {
    /// Every link in the namespace.
    pub links: Vec<ObservedLink>,
}

impl ObservedNet {
    /// The link with this name, if any.
    pub fn link(&self, name: &str) -> Option<&ObservedLink> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The link with this ifindex, if any.
    pub fn link_by_index(&self, index: u32) -> Option<&ObservedLink> {
        self.links.iter().find(|l| l.index == index)
    }
}

/// One link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedLink {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// What kind of link it is, as far as planning cares.
    pub kind: ObservedKind,
    /// Index of the master (bridge, bond, VRF) it is enslaved to, if any.
    pub master: Option<u32>,
    /// Administrative state (`IFF_UP`), not carrier.
    pub up: bool,
    /// Its IPv4 and IPv6 addresses, with prefix lengths.
    pub addresses: Vec<IpNet>,
}

/// The kind of an observed link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservedKind {
    /// A Linux bridge.
    Bridge,
    /// An 802.1Q VLAN.
    Vlan {
        /// Index of the link it is stacked on.
        parent: u32,
        /// VLAN id.
        id: u16,
    },
    /// Anything else: the rtnetlink kind name (`veth`, `dummy`, …) if the
    /// kernel reports one, `None` for plain devices such as NICs.
    Other(Option<String>),
}

impl fmt::Display for ObservedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bridge => f.write_str("a bridge"),
            Self::Vlan { id, .. } => write!(f, "VLAN {id}"),
            Self::Other(Some(kind)) => write!(f, "a {kind} link"),
            Self::Other(None) => f.write_str("a plain device"),
        }
    }
}

/// One change to the kernel. Names, not indexes, so that a plan is readable
/// and stays valid when it refers to links the same plan creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetChange {
    /// Create a bridge (down; a later [`NetChange::SetUp`] brings it up).
    CreateBridge {
        /// Bridge name.
        name: String,
    },
    /// Create an 802.1Q VLAN link (down).
    CreateVlan {
        /// VLAN link name.
        name: String,
        /// Link it is stacked on.
        parent: String,
        /// VLAN id.
        id: u16,
    },
    /// Enslave `port` to `bridge`, moving it from any other master.
    SetMaster {
        /// The port.
        port: String,
        /// The bridge.
        bridge: String,
    },
    /// Add an address to a link.
    AddAddress {
        /// The link.
        link: String,
        /// Address with prefix length.
        addr: IpNet,
    },
    /// Set a link administratively up.
    SetUp {
        /// The link.
        link: String,
    },
}

impl NetChange {
    /// Position in the order [`apply`] runs changes in: links are created
    /// first (bridges before VLANs, since a VLAN may sit on a new bridge),
    /// then ports are enslaved, then addresses added, and links are set up
    /// last, once they are wired and addressed, so that nothing forwards on
    /// a half-built segment.
    pub fn phase(&self) -> u8 {
        match self {
            Self::CreateBridge { .. } => 0,
            Self::CreateVlan { .. } => 1,
            Self::SetMaster { .. } => 2,
            Self::AddAddress { .. } => 3,
            Self::SetUp { .. } => 4,
        }
    }
}

impl fmt::Display for NetChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreateBridge { name } => write!(f, "create bridge {name}"),
            Self::CreateVlan { name, parent, id } => {
                write!(f, "create VLAN {name} (id {id} on {parent})")
            }
            Self::SetMaster { port, bridge } => write!(f, "enslave {port} to {bridge}"),
            Self::AddAddress { link, addr } => write!(f, "add {addr} to {link}"),
            Self::SetUp { link } => write!(f, "set {link} up"),
        }
    }
}

/// Something in the desired state that cannot be made true without removing
/// or replacing what is already there, or that is invalid. Reported as data;
/// the affected segment (or just the affected port or address) is left out of
/// the plan and the rest goes ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanProblem {
    /// Two segments name the same interface; the later one is ignored.
    #[error("interface {interface} is listed by more than one segment")]
    DuplicateSegment {
        /// The interface.
        interface: String,
    },
    /// A name Bulkhead would create is not a valid Linux interface name.
    #[error("{name:?} is not a valid interface name: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A [`LinkKind::Existing`] interface is not there.
    #[error("interface {interface} does not exist")]
    MissingInterface {
        /// The interface.
        interface: String,
    },
    /// A bridge port neither exists nor is created by the plan.
    #[error("port {port} of bridge {bridge} does not exist")]
    MissingPort {
        /// The bridge.
        bridge: String,
        /// The port.
        port: String,
    },
    /// A port cannot be enslaved: it is the bridge itself or another bridge.
    #[error("{port} cannot be a port of bridge {bridge}: {reason}")]
    InvalidPort {
        /// The bridge.
        bridge: String,
        /// The port.
        port: String,
        /// Why.
        reason: &'static str,
    },
    /// Two managed bridges list the same port; the first one keeps it.
    #[error("port {port} is listed for both {bridge} and {other}")]
    PortConflict {
        /// The port.
        port: String,
        /// The bridge that gets it.
        bridge: String,
        /// The bridge that does not.
        other: String,
    },
    /// A VLAN's parent neither exists nor is created by the plan.
    #[error("parent {parent} of VLAN {vlan} does not exist")]
    MissingVlanParent {
        /// The VLAN link.
        vlan: String,
        /// Its parent.
        parent: String,
    },
    /// A VLAN id outside 1..=4094.
    #[error("VLAN {vlan}: id {id} is outside 1..=4094")]
    InvalidVlanId {
        /// The VLAN link.
        vlan: String,
        /// The id.
        id: u16,
    },
    /// The name is taken by a link of another kind.
    #[error("{interface} should be {expected} but is {found}")]
    WrongKind {
        /// The interface.
        interface: String,
        /// What the config wants.
        expected: &'static str,
        /// What the kernel has.
        found: String,
    },
    /// A VLAN with this name exists on another parent or with another id.
    #[error("VLAN {interface} should be id {id} on {parent} but is id {found_id} on {found_parent}")]
    VlanMismatch {
        /// The VLAN link.
        interface: String,
        /// Wanted parent.
        parent: String,
        /// Wanted id.
        id: u16,
        /// Actual parent (its name, or `#index` if not found).
        found_parent: String,
        /// Actual id.
        found_id: u16,
    },
    /// The gateway address is on the link with another prefix length.
    /// Bulkhead does not remove addresses, so it leaves it alone.
    #[error("{link} has {found}, config wants {want}")]
    AddressPrefixMismatch {
        /// The link.
        link: String,
        /// What the config wants.
        want: IpNet,
        /// What the link has.
        found: IpNet,
    },
}

/// The result of [`plan`]: changes to make and problems found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPlan {
    /// Changes, already in the order [`apply`] runs them.
    pub changes: Vec<NetChange>,
    /// Things in the config that could not be planned.
    pub problems: Vec<PlanProblem>,
}

impl NetPlan {
    /// True when the kernel already matches: nothing to change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetReport {
    /// Changes the kernel accepted.
    pub applied: Vec<NetChange>,
    /// Changes the kernel answered with "already exists" (counted as
    /// success: someone, maybe an earlier run, made them in the meantime).
    pub already: Vec<NetChange>,
    /// The plan's problems, carried along so one report says everything.
    pub problems: Vec<PlanProblem>,
}

impl NetReport {
    /// True when the kernel was changed.
    pub fn changed(&self) -> bool {
        !self.applied.is_empty()
    }
}

/// Errors from reading or changing the kernel's links and addresses.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// [`open`] was called outside a tokio runtime.
    #[error("no tokio runtime to drive the netlink connection")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink route socket")]
    Open(#[source] std::io::Error),
    /// Dumping links or addresses failed.
    #[error("cannot read {what} from the kernel")]
    Observe {
        /// `"links"` or `"addresses"`.
        what: &'static str,
        /// The netlink error (boxed: rtnetlink's error can hold a whole message).
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// One change failed; the ones before it stay applied (netlink has no
    /// transactions). Planning again from a fresh observation resumes.
    #[error("{change} failed after {n} change(s) had been made", n = .done.applied.len())]
    Apply {
        /// The change that failed.
        change: Box<NetChange>,
        /// What had been done before it.
        done: Box<NetReport>,
        /// Why it failed.
        #[source]
        source: Box<ChangeError>,
    },
}

/// Why a single change failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The kernel refused the request.
    #[error("netlink request failed")]
    Netlink(#[source] rtnetlink::Error),
    /// A link the change refers to is not there (anymore).
    #[error("link {0} does not exist")]
    LinkNotFound(String),
    /// Creation answered "already exists" but the link there is of another
    /// kind (it appeared between observing and applying).
    #[error("{name} already exists but is {found}, not {expected}")]
    WrongKind {
        /// The link.
        name: String,
        /// What the change wanted.
        expected: &'static str,
        /// What is there.
        found: ObservedKind,
    },
}
