//! PURE: evidence in, class + zone + confidence out, with the rule that matched.
//! (Filled in by the classification work; see docs/ARCHITECTURE.md.)

mod evidence;

pub use evidence::{bounded, Evidence, MAX_ITEMS, MAX_TEXT};
