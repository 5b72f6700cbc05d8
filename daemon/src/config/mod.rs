//! `bulkhead.toml` + `policies/*.toml` -> a validated, typed [`Config`].
//!
//! Errors name file, line, column and field; all of them are reported at once.

mod class_rules;
mod error;
mod load;
mod types;

pub use error::{ConfigError, ConfigErrors};
pub use load::{load, parse_ip, DEFAULT_CONFIG_PATH};
pub use types::*;

#[cfg(test)]
mod tests;
