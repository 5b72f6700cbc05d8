//! Test support: run async rtnetlink code inside a test network namespace.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};

/// Runs `f` with an rtnetlink handle opened inside the namespace at `path`
/// (`/run/netns/<name>`), on a current-thread runtime of a fresh thread that has
/// joined it. Refuses to go on unless the thread really is in that namespace: a
/// mistake here would reconfigure the host.
pub(crate) fn with_rtnetlink_in<T, F, Fut>(path: PathBuf, f: F) -> T
where
    T: Send,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send,
    Fut: Future<Output = T>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let ns = File::open(&path).expect("open namespace file");
                setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
                let want = std::fs::metadata(&path).expect("stat namespace");
                let have = std::fs::metadata("/proc/thread-self/ns/net").expect("stat own namespace");
                assert_eq!(
                    (want.dev(), want.ino()),
                    (have.dev(), have.ino()),
                    "thread is not in the test namespace"
                );
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                    .expect("tokio runtime");
                runtime.block_on(async move {
                    let (handle, connection) = super::open().expect("rtnetlink in the namespace");
                    let out = f(handle).await;
                    connection.abort();
                    out
                })
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
