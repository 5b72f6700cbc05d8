//! The control socket: root-only, one JSON request per connection, answered by
//! the event loop in turn with everything else (the CLI and the web backend
//! both send [`Request`]s this way).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::control::{Request, Response};

/// A request for the event loop and where its answer goes.
pub(crate) type Job = (Request, oneshot::Sender<Response>);

/// Binds the socket (mode 0600, its folder 0700), refusing to steal it from a
/// daemon that still answers.
pub(super) fn bind_control(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("chmod {}", dir.display()))?;
        }
    }
    // A socket left by a killed daemon: remove it, but never a non-socket file,
    // and never the socket of a daemon that still answers (two daemons would
    // fight over the same tables).
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        anyhow::ensure!(
            meta.file_type().is_socket(),
            "{} exists and is not a socket",
            path.display()
        );
        anyhow::ensure!(
            std::os::unix::net::UnixStream::connect(path).is_err(),
            "another bulkhead daemon is running (it answers on {})",
            path.display()
        );
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    // Root-only: the socket changes the firewall.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).context("chmod control socket")?;
    Ok(listener)
}

pub(super) async fn accept_loop(listener: UnixListener, jobs: mpsc::Sender<Job>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let jobs = jobs.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_client(stream, jobs).await {
                        tracing::debug!(error = %e, "control client");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// At most this much of a request line is read; the socket is root-only, but a
/// bound costs nothing.
const MAX_REQUEST: u64 = 64 * 1024;

async fn serve_client(stream: UnixStream, jobs: mpsc::Sender<Job>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
    let mut line = String::new();
    lines.read_line(&mut line).await?;
    let resp = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response::Error {
            message: format!("bad request: {e}"),
        },
        Ok(req) => {
            let (tx, rx) = oneshot::channel();
            if jobs.send((req, tx)).await.is_err() {
                return Ok(());
            }
            rx.await.unwrap_or(Response::Error {
                message: "daemon is stopping".into(),
            })
        }
    };
    let mut out =
        serde_json::to_string(&resp).unwrap_or_else(|_| "{\"result\":\"error\",\"message\":\"encode\"}".into());
    out.push('\n');
    write.write_all(out.as_bytes()).await
}
