//! PURE: evidence in, class + zone + confidence out, with the rule that matched.
//!
//! Rules come from the policy files' `[[classify]]` tables ([`ClassRule`],
//! validated by `config`); [`classify`] picks the best matching rule for a
//! device's [`Evidence`]; [`placement`] decides whether the match may move the
//! device (a low-confidence match never moves a device to a less-restricted zone).
//! No I/O here: the vendor name comes from [`crate::discovery::oui`], evidence from the
//! DHCP and mDNS sources. See docs/ARCHITECTURE.md, "Classification".

mod classifier;
mod evidence;
mod glob;
mod placement;
mod rules;

pub use classifier::{classify, ClassMatch};
pub use evidence::{bounded, Evidence, MAX_ITEMS, MAX_TEXT, UPNP_FIELDS};
pub use glob::{Glob, GlobError};
pub use placement::{at_least_as_restricted, placement};
pub use rules::{
    check_rule_id, parse_dhcp_params, parse_glob, parse_txt_key, ClassRule, Conditions, Confidence, DeviceClass,
    RuleError, MAX_RULE_ID,
};

#[cfg(test)]
mod tests;
