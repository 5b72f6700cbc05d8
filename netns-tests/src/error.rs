//! The crate's error type.

use std::io;
use std::process::ExitStatus;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A harness failure: something the harness itself could not do.
///
/// Probes report "blocked" or "unreachable" as `Ok(false)`, never as an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command could not be started at all (missing binary, ...).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: io::Error,
    },
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{context}: {source}")]
    Sys {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
    /// A name or spec was rejected before anything was created.
    #[error("invalid spec: {0}")]
    Spec(String),
    /// A lookup named something that does not exist.
    #[error("no such {kind}: {name}")]
    NotFound {
        /// What kind of thing (namespace, host, process, ...).
        kind: &'static str,
        /// The name looked up.
        name: String,
    },
    /// A helper process did not come up.
    #[error("{0}")]
    NotReady(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn sys(context: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            context: context.into(),
            source,
        }
    }
}
