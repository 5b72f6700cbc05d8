//! Executing a plan: over rtnetlink for real, in memory for tests, behind
//! the small [`NetApplier`] trait.

use std::future::Future;

use futures::TryStreamExt;
use netlink_packet_route::link::LinkMessage;
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec};
use tokio::task::JoinHandle;

use super::observe::parse_link;
use super::plan::simulate;
use super::{
    plan, vlan_link_message, ChangeError, DesiredNet, NetChange, NetError, NetPlan, NetReport, ObservedKind,
    ObservedLink, ObservedNet,
};

// From asm-generic/errno-base.h, which every Linux architecture shares.
const EEXIST: i32 = 17;
const ENODEV: i32 = 19;

/// Opens an rtnetlink connection and spawns the task that drives it on the
/// current tokio runtime (which must have IO enabled). The connection lives
/// in the network namespace of the calling thread. Abort the task, or drop
/// every clone of the handle, to close it.
pub fn open() -> Result<(Handle, JoinHandle<()>), NetError> {
    // Checked first: spawning outside a runtime would panic.
    let runtime = tokio::runtime::Handle::try_current().map_err(NetError::NoRuntime)?;
    // The third value is the stream of unsolicited messages (multicast
    // groups); this socket joins none, so there is nothing to read.
    let (connection, handle, _unsolicited) = rtnetlink::new_connection().map_err(NetError::Open)?;
    Ok((handle, runtime.spawn(connection)))
}

/// Runs the plan's changes in [`NetChange::phase`] order (stable, so the
/// plan's own order holds within a phase). "Already exists" counts as
/// success. Stops at the first failure: netlink has no transactions, so the
/// changes before it stay, and are listed in [`NetError::Apply`]; observing
/// and planning again picks up from there.
pub async fn apply(handle: &Handle, plan: &NetPlan) -> Result<NetReport, NetError> {
    let mut report = NetReport {
        problems: plan.problems.clone(),
        ..NetReport::default()
    };
    for change in ordered(plan) {
        let outcome = apply_one(handle, change).await;
        record(&mut report, change, outcome)?;
    }
    Ok(report)
}

/// Observes, plans and applies in one go: the daemon's path (through
/// [`RtnetlinkNet`]) and the tests' (through [`MemoryNet`] and in namespaces).
/// Returns the plan it carried out and what happened.
pub async fn reconcile<A: NetApplier>(applier: &mut A, desired: &DesiredNet) -> Result<(NetPlan, NetReport), NetError> {
    let observed = applier.observe().await?;
    let plan = plan(desired, &observed);
    for problem in &plan.problems {
        tracing::warn!(%problem, "segment link cannot be set up");
    }
    let report = applier.apply(&plan).await?;
    Ok((plan, report))
}

/// The edge between the daemon and the kernel's links, so that the daemon
/// can run against [`MemoryNet`] in tests and [`RtnetlinkNet`] for real.
pub trait NetApplier {
    /// Reads the current links and addresses.
    fn observe(&mut self) -> impl Future<Output = Result<ObservedNet, NetError>> + Send;
    /// Executes a plan; see [`apply`].
    fn apply(&mut self, plan: &NetPlan) -> impl Future<Output = Result<NetReport, NetError>> + Send;
}

/// The real applier: an rtnetlink handle from [`open`].
#[derive(Debug, Clone)]
pub struct RtnetlinkNet {
    /// The connection's handle.
    pub handle: Handle,
}

impl NetApplier for RtnetlinkNet {
    async fn observe(&mut self) -> Result<ObservedNet, NetError> {
        super::observe(&self.handle).await
    }

    async fn apply(&mut self, plan: &NetPlan) -> Result<NetReport, NetError> {
        apply(&self.handle, plan).await
    }
}

/// An in-memory kernel: changes are applied to [`MemoryNet::observed`] the
/// way the kernel would apply them (new links start down, "already exists"
/// is reported, missing links fail).
#[derive(Debug, Clone, Default)]
pub struct MemoryNet {
    /// The state, as [`NetApplier::observe`] returns it.
    pub observed: ObservedNet,
}

impl NetApplier for MemoryNet {
    async fn observe(&mut self) -> Result<ObservedNet, NetError> {
        Ok(self.observed.clone())
    }

    async fn apply(&mut self, plan: &NetPlan) -> Result<NetReport, NetError> {
        let mut report = NetReport {
            problems: plan.problems.clone(),
            ..NetReport::default()
        };
        for change in ordered(plan) {
            let outcome = match simulate(&mut self.observed, change) {
                Ok(true) => Ok(Outcome::Applied),
                Ok(false) => Ok(Outcome::Already),
                Err(name) => Err(ChangeError::LinkNotFound(name)),
            };
            record(&mut report, change, outcome)?;
        }
        Ok(report)
    }
}

fn ordered(plan: &NetPlan) -> Vec<&NetChange> {
    let mut changes: Vec<&NetChange> = plan.changes.iter().collect();
    // Stable: keeps ports before bridges among the SetUps.
    changes.sort_by_key(|c| c.phase());
    changes
}

/// How a change that did not fail went.
enum Outcome {
    Applied,
    Already,
}

/// Adds one change's outcome to the report, or turns a failure into
/// [`NetError::Apply`] carrying the report so far.
fn record(report: &mut NetReport, change: &NetChange, outcome: Result<Outcome, ChangeError>) -> Result<(), NetError> {
    match outcome {
        Ok(Outcome::Applied) => {
            tracing::info!(%change, "net: applied");
            report.applied.push(change.clone());
            Ok(())
        }
        Ok(Outcome::Already) => {
            tracing::debug!(%change, "net: already in place");
            report.already.push(change.clone());
            Ok(())
        }
        Err(source) => {
            tracing::warn!(%change, error = %source, "net: change failed");
            Err(NetError::Apply {
                change: Box::new(change.clone()),
                done: Box::new(std::mem::take(report)),
                source: Box::new(source),
            })
        }
    }
}

async fn apply_one(handle: &Handle, change: &NetChange) -> Result<Outcome, ChangeError> {
    match change {
        NetChange::CreateBridge { name } => {
            // Not `LinkBridge::new`, which also sets the bridge up: it stays
            // down until its ports and addresses are in place.
            let msg = LinkMessageBuilder::<LinkBridge>::new(name).build();
            create(handle, name, msg, "a bridge", |k| *k == ObservedKind::Bridge).await
        }
        NetChange::CreateVlan { name, parent, id } => {
            let parent = index_of(handle, parent).await?;
            let msg = vlan_link_message(name, parent, *id);
            create(handle, name, msg, "a VLAN", |k| matches!(k, ObservedKind::Vlan { .. })).await
        }
        NetChange::SetMaster { port, bridge } => {
            let bridge = index_of(handle, bridge).await?;
            let port = index_of(handle, port).await?;
            // Setting IFLA_MASTER releases the port from any previous
            // master first (the kernel's do_set_master), so a move is one
            // request. Setting the master it already has is a no-op.
            let msg = LinkUnspec::new_with_index(port).controller(bridge).build();
            handle.link().set(msg).execute().await.map_err(ChangeError::Netlink)?;
            Ok(Outcome::Applied)
        }
        NetChange::AddAddress { link, addr } => {
            let index = index_of(handle, link).await?;
            let added = handle
                .address()
                .add(index, addr.addr(), addr.prefix_len())
                .execute()
                .await;
            match added {
                Ok(()) => Ok(Outcome::Applied),
                Err(e) if errno(&e) == Some(EEXIST) => Ok(Outcome::Already),
                Err(e) => Err(ChangeError::Netlink(e)),
            }
        }
        NetChange::SetUp { link } => {
            let index = index_of(handle, link).await?;
            let msg = LinkUnspec::new_with_index(index).up().build();
            handle.link().set(msg).execute().await.map_err(ChangeError::Netlink)?;
            Ok(Outcome::Applied)
        }
    }
}

/// Sends a link creation; on "already exists", checks that what exists is
/// of the wanted kind (it may have appeared since the plan was made).
async fn create(
    handle: &Handle,
    name: &str,
    msg: LinkMessage,
    expected: &'static str,
    is_expected: impl Fn(&ObservedKind) -> bool,
) -> Result<Outcome, ChangeError> {
    let err = match handle.link().add(msg).execute().await {
        Ok(()) => return Ok(Outcome::Applied),
        Err(e) if errno(&e) == Some(EEXIST) => e,
        Err(e) => return Err(ChangeError::Netlink(e)),
    };
    match find_link(handle, name).await? {
        Some(link) if is_expected(&link.kind) => Ok(Outcome::Already),
        Some(link) => Err(ChangeError::WrongKind {
            name: name.to_owned(),
            expected,
            found: link.kind,
        }),
        // Gone again already; report the kernel's answer.
        None => Err(ChangeError::Netlink(err)),
    }
}

/// The link named `name`, `None` if there is none.
async fn find_link(handle: &Handle, name: &str) -> Result<Option<ObservedLink>, ChangeError> {
    let found: Result<Vec<LinkMessage>, _> = handle.link().get().match_name(name).execute().try_collect().await;
    match found {
        Ok(msgs) => Ok(msgs.iter().find_map(parse_link)),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(ChangeError::Netlink(e)),
    }
}

async fn index_of(handle: &Handle, name: &str) -> Result<u32, ChangeError> {
    match find_link(handle, name).await? {
        Some(link) => Ok(link.index),
        None => Err(ChangeError::LinkNotFound(name.to_owned())),
    }
}

/// The positive errno of a kernel refusal, if it was one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Some(-msg.raw_code()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{LinkKind, ObservedLink, SegmentLink};

    fn desired() -> DesiredNet {
        DesiredNet {
            segments: vec![SegmentLink {
                interface: "br-guest".into(),
                kind: LinkKind::Bridge {
                    ports: vec!["wlan2".into()],
                },
                addresses: vec!["10.0.3.1/24".parse().expect("literal")],
            }],
        }
    }

    fn memory() -> MemoryNet {
        MemoryNet {
            observed: ObservedNet {
                links: vec![ObservedLink {
                    name: "wlan2".into(),
                    index: 4,
                    kind: ObservedKind::Other(None),
                    master: None,
                    up: false,
                    addresses: vec![],
                }],
            },
        }
    }

    #[tokio::test]
    async fn reconcile_twice_changes_nothing_the_second_time() {
        let mut net = memory();
        let (_, first) = reconcile(&mut net, &desired()).await.expect("applies");
        assert_eq!(first.applied.len(), 5, "{first:?}");
        assert!(first.already.is_empty());
        let (_, second) = reconcile(&mut net, &desired()).await.expect("applies");
        assert_eq!(second, NetReport::default());
        assert!(!second.changed());
    }

    #[tokio::test]
    async fn apply_runs_in_phase_order_and_reports_partial_work() {
        let mut net = memory();
        // Out of order on purpose, and one change refers to a missing link.
        let plan = NetPlan {
            changes: vec![
                NetChange::SetUp {
                    link: "br-guest".into(),
                },
                NetChange::SetMaster {
                    port: "ghost".into(),
                    bridge: "br-guest".into(),
                },
                NetChange::CreateBridge {
                    name: "br-guest".into(),
                },
            ],
            problems: vec![],
        };
        let err = net.apply(&plan).await.expect_err("ghost is missing");
        let NetError::Apply { change, done, source } = &err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(
            **change,
            NetChange::SetMaster {
                port: "ghost".into(),
                bridge: "br-guest".into()
            }
        );
        assert_eq!(
            done.applied,
            vec![NetChange::CreateBridge {
                name: "br-guest".into()
            }]
        );
        assert!(matches!(**source, ChangeError::LinkNotFound(ref n) if n == "ghost"));
        assert_eq!(
            err.to_string(),
            "enslave ghost to br-guest failed after 1 change(s) had been made"
        );
    }

    #[test]
    fn errno_of_kernel_refusals() {
        let mut msg = rtnetlink::packet_core::ErrorMessage::default();
        msg.code = std::num::NonZeroI32::new(-EEXIST);
        assert_eq!(errno(&rtnetlink::Error::NetlinkError(msg)), Some(EEXIST));
        assert_eq!(errno(&rtnetlink::Error::RequestFailed), None);
    }

    #[tokio::test]
    async fn open_outside_runtime_is_an_error_not_a_panic() {
        let outside = std::thread::spawn(|| matches!(open(), Err(NetError::NoRuntime(_))))
            .join()
            .expect("thread");
        assert!(outside);
    }
}
