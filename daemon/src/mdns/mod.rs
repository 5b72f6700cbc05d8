//! mDNS discovery (mdns-sd): service types, instances, host names and TXT records
//! as evidence.
//!
//! - [`observation_of`]: the PURE conversion of one answer (as [`ServiceParts`])
//!   into bounded [`Evidence`](crate::classify::Evidence), or [`MdnsDropped`].

mod convert;
mod fuzz;
mod state;

pub use convert::{
    observation_of, parts_of, service_type_of, MdnsDropped, MdnsObservation, ServiceParts, MAX_ADDRESSES,
    MAX_TYPE_LABEL,
};
#[doc(hidden)]
pub use fuzz::fuzz_entry;
pub use state::{BrowseState, MdnsCounters, Step, DEFAULT_MAX_TYPES, FIXED_TYPES, META_QUERY};

