//! OpenWrt's UCI configuration (`/etc/config/bulkhead`) as a main file.
//!
//! On OpenWrt, UCI is the source of truth: LuCI and `uci set` edit
//! `/etc/config/bulkhead`, and the daemon reads it directly (no file rendered
//! by the init script that could go stale or hide an error). It is parsed
//! (`parse`, libuci's syntax), turned into the TOML main file (`render`, each
//! line remembering its UCI line) and validated by the one loader, whose
//! errors are pointed back at the UCI file's lines. The policy files stay
//! TOML (`/etc/bulkhead/policies`).

mod network;
pub mod parse;
mod render;

use std::path::{Path, PathBuf};

pub use parse::{parse, Pos, SyntaxError, UciFile};
pub use render::{render, RenderError, Rendered};

use super::ConfigError;

/// Where OpenWrt keeps Bulkhead's configuration.
pub const OPENWRT_CONFIG_PATH: &str = "/etc/config/bulkhead";

/// Whether a main file is UCI rather than TOML: its first command is
/// `config` or `package` (neither can start a TOML document).
pub fn looks_like_uci(text: &str) -> bool {
    text.lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| {
            let word = l.split([' ', '\t']).next().unwrap_or_default();
            let rest = l[word.len()..].trim_start();
            matches!(word, "config" | "package") && !rest.is_empty() && !rest.starts_with('=')
        })
}

/// The network file next to a UCI main file (`/etc/config/network`).
pub fn network_file_for(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new(".")).join("network")
}

/// Parses and renders `text` (the UCI file at `path`) with the network file's
/// text, or why it could not be read. Errors name the file and line they are in.
pub fn to_toml(path: &Path, text: &str, network_text: Result<&str, &str>) -> Result<Rendered, Vec<ConfigError>> {
    let network_path = network_file_for(path);
    let file = parse(text).map_err(|errors| syntax_errors(path, errors))?;
    let network = match network_text {
        Ok(t) => Ok(parse(t).map_err(|errors| syntax_errors(&network_path, errors))?),
        Err(why) => Err(why),
    };
    render(&file, network.as_ref().map_err(|why| *why)).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| ConfigError {
                file: path.to_path_buf(),
                line: e.at.line,
                column: e.at.column,
                field: e.field,
                message: e.message,
            })
            .collect()
    })
}

fn syntax_errors(path: &Path, errors: Vec<SyntaxError>) -> Vec<ConfigError> {
    errors
        .into_iter()
        .map(|e| ConfigError {
            file: path.to_path_buf(),
            line: e.at.line,
            column: e.at.column,
            field: String::new(),
            message: e.message,
        })
        .collect()
}

impl Rendered {
    /// Points the loader's errors about the rendered TOML (`file` is the UCI
    /// file's path) at the UCI lines they came from.
    pub fn point_back(&self, file: &Path, errors: &mut [ConfigError]) {
        for e in errors.iter_mut().filter(|e| e.file == file && e.line > 0) {
            match self.origins.get(e.line - 1) {
                Some(at) => {
                    e.line = at.line;
                    e.column = at.column;
                }
                None => {
                    e.line = 0;
                    e.column = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
