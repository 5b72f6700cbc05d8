//! One network namespace: create it, run commands, processes and closures in it,
//! and remove it on drop.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{Error, Result};

/// Where iproute2 keeps named namespaces (bind mounts of `/proc/PID/ns/net`).
const NETNS_DIR: &str = "/run/netns";
/// Prefix of every namespace name this crate creates.
const PREFIX: &str = "bh";
/// Longest tag accepted, so names stay readable in `ip netns list`.
const MAX_TAG_LEN: usize = 24;
/// How long a process gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);
/// Serialises `ip netns add` across threads and processes: the first `add` on a
/// machine sets up the shared `/run/netns` mount, and concurrent first `add`s can
/// stack that mount several times.
const ADD_LOCK: &str = "/tmp/bulkhead-netns.lock";

/// Per-process counter that makes namespace names unique within this process;
/// the pid in the name makes them unique across processes.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A network namespace created by this crate, named `bh{pid}-{counter}-{tag}`.
///
/// Dropping it stops the processes it tracks (SIGTERM, up to 1 s, then SIGKILL,
/// then reaps them) and deletes the namespace. Drop runs on unwind too, so a
/// panicking test still cleans up.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// Processes started with [`Netns::spawn`], keyed by pid.
    children: Mutex<HashMap<u32, Child>>,
}

impl Netns {
    /// Creates a namespace with a unique name ending in `tag` and brings `lo` up.
    ///
    /// `tag` must be 1 to 24 characters of `[A-Za-z0-9_-]`.
    pub fn new(tag: &str) -> Result<Netns> {
        validate_tag(tag)?;
        let pid = std::process::id();
        let name = {
            let _lock = lock_add()?;
            let name = loop {
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                let name = format!("{PREFIX}{pid}-{n}-{tag}");
                // Counters are never reused within a process, so an existing name
                // is a leftover from a dead process that had the same pid: skip it.
                if !Path::new(NETNS_DIR).join(&name).exists() {
                    break name;
                }
            };
            run_checked(Command::new("ip").args(["netns", "add", &name]))?;
            name
        };
        // From here on Drop deletes the namespace, also if the next step fails.
        let ns = Netns {
            name,
            children: Mutex::new(HashMap::new()),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Whether a namespace called `name` exists (in `/run/netns`).
    pub fn exists(name: &str) -> bool {
        Path::new(NETNS_DIR).join(name).exists()
    }

    /// Runs `ip netns exec NAME args...`; fails, with its stderr, unless it exits 0.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        run_checked(&mut self.exec_command(args))
    }

    /// Runs `ip netns exec NAME args...` and returns its output whatever its
    /// exit status (for clients whose failure is an answer, e.g. `dig`'s 9
    /// for "no reply"). Errs only when the program could not be started.
    pub fn exec_output(&self, args: &[&str]) -> Result<Output> {
        let mut command = self.exec_command(args);
        let output = run(&mut command)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() && stderr.starts_with("exec of ") {
            return Err(Error::Command {
                command: describe(&command),
                status: output.status,
                stderr: stderr.trim().to_string(),
            });
        }
        Ok(output)
    }

    /// Runs `ip netns exec NAME args...` and tells whether it exited 0.
    ///
    /// For commands whose failure is an answer (`ping`, `grep`). Errs only when
    /// the program could not be started at all.
    pub fn exec_ok(&self, args: &[&str]) -> Result<bool> {
        let mut command = self.exec_command(args);
        let output = run(&mut command)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // `ip netns exec` reports a failed execvp this way, with an exit status a
        // failing program could also have: tell them apart by the message.
        if !output.status.success() && stderr.starts_with("exec of ") {
            return Err(Error::Command {
                command: describe(&command),
                status: output.status,
                stderr: stderr.trim().to_string(),
            });
        }
        Ok(output.status.success())
    }

    /// Runs `ip -n NAME args...` (no mount namespace setup, so cheaper than
    /// `exec(&["ip", ...])`); fails, with its stderr, unless it exits 0.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        run_checked(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Creates a veth pair: `name` here, `peer_name` in `peer` (both down).
    pub fn veth_to(&self, name: &str, peer: &Netns, peer_name: &str) -> Result<()> {
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer_name,
            "netns",
            peer.name(),
        ])
        .map(drop)
    }

    /// Runs several `ip` commands (each without the leading `ip`) in this
    /// namespace with one `ip -n NAME -batch -`; stops at the first failure.
    pub fn ip_batch<S: AsRef<str>>(&self, commands: &[S]) -> Result<()> {
        let mut script = String::new();
        for command in commands {
            script.push_str(command.as_ref());
            script.push('\n');
        }
        let mut command = Command::new("ip");
        command
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| Error::Spawn {
            command: describe(&command),
            source,
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| Error::io(format!("writing to {}", describe(&command)), e))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| Error::io(format!("waiting for {}", describe(&command)), e))?;
        check(&command, output).map(drop)
    }

    /// Starts `program args...` in the namespace and returns its pid.
    ///
    /// `ip netns exec` execs the program, so the pid is the program's own. Stdin
    /// is closed; stdout and stderr are inherited. The process is tracked: Drop
    /// stops it.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<u32> {
        self.spawn_with(program, args, Stdio::inherit(), Stdio::inherit())
    }

    /// Like [`Netns::spawn`], with stdout and stderr appended to the file `log`.
    pub fn spawn_logged(&self, program: &str, args: &[&str], log: &Path) -> Result<u32> {
        let context = || format!("opening log {}", log.display());
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(context(), e))?;
        let err = out.try_clone().map_err(|e| Error::io(context(), e))?;
        self.spawn_with(program, args, out.into(), err.into())
    }

    fn spawn_with(&self, program: &str, args: &[&str], out: Stdio, err: Stdio) -> Result<u32> {
        let mut command = self.exec_command(&[program]);
        command.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        let child = command.spawn().map_err(|source| Error::Spawn {
            command: describe(&command),
            source,
        })?;
        let pid = child.id();
        self.lock_children().insert(pid, child);
        Ok(pid)
    }

    /// Sends `signal` to a process started with [`Netns::spawn`].
    ///
    /// Only tracked pids are accepted, so this can never signal a stranger.
    pub fn kill_tracked(&self, pid: u32, signal: Signal) -> Result<()> {
        if !self.lock_children().contains_key(&pid) {
            return Err(not_tracked(pid));
        }
        kill(nix_pid(pid), signal).map_err(|e| Error::sys(format!("kill {pid} {signal}"), e))
    }

    /// Waits up to `timeout` for a tracked process to exit.
    ///
    /// Returns its status once it has exited (it is then reaped and no longer
    /// tracked), or `None` if it is still running.
    pub fn wait_tracked(&self, pid: u32, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut children = self.lock_children();
                let child = children.get_mut(&pid).ok_or_else(|| not_tracked(pid))?;
                let status = child
                    .try_wait()
                    .map_err(|e| Error::io(format!("waiting for {pid}"), e))?;
                if let Some(status) = status {
                    children.remove(&pid);
                    return Ok(Some(status));
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops a tracked process the way Drop does (SIGTERM, up to 1 s, SIGKILL)
    /// and reaps it.
    pub fn stop_tracked(&self, pid: u32) -> Result<()> {
        let child = self.lock_children().remove(&pid).ok_or_else(|| not_tracked(pid))?;
        terminate(vec![child]);
        Ok(())
    }

    /// Runs `f` on a fresh OS thread that has joined this namespace, and returns
    /// its result.
    ///
    /// Sockets opened by `f` belong to this namespace for their whole life, so
    /// they can be returned and used from any thread. Processes started from `f`
    /// start in the namespace too. A panic in `f` is passed on to the caller.
    pub fn run_in<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let path = self.path();
        let file = File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        // A fresh thread, not the caller's: setns changes the calling thread for
        // good, and the caller must stay in its own namespace.
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name(format!("in {}", self.name))
                .spawn_scoped(scope, move || -> Result<T> {
                    setns(&file, CloneFlags::CLONE_NEWNET)
                        .map_err(|e| Error::sys(format!("setns into {}", path.display()), e))?;
                    Ok(f())
                })
                .map_err(|e| Error::io(format!("starting a thread for {}", self.name), e))?;
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts a long-lived OS thread that joins this namespace and runs `f`.
    ///
    /// Like [`Netns::run_in`], but the caller does not wait: for background work
    /// in a namespace (a connector for a port forwarder, periodic traffic). The
    /// namespace file is opened before the thread starts, so an error there is
    /// reported here; the thread keeps the namespace alive while it runs, so
    /// stop it before the namespace is dropped.
    pub fn spawn_thread<T, F>(&self, name: &str, f: F) -> Result<std::thread::JoinHandle<Result<T>>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let path = self.path();
        let file = File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || -> Result<T> {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::sys(format!("setns into {}", path.display()), e))?;
                Ok(f())
            })
            .map_err(|e| Error::io(format!("starting thread {name} for {}", self.name), e))
    }

    /// Deletes namespaces left by dead runs: those named `bh{pid}-{n}-{tag}`
    /// whose pid no longer exists. Returns the names removed.
    pub fn cleanup_stale() -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for name in list_netns()? {
            let Some(pid) = owner_pid(&name) else {
                continue;
            };
            if pid_alive(pid) {
                continue;
            }
            match run_checked(Command::new("ip").args(["netns", "del", &name])) {
                Ok(_) => removed.push(name),
                // Another process cleaning up at the same time got there first.
                Err(_) if !Netns::exists(&name) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Names of the namespaces this process has created and not yet removed.
    pub fn list_own() -> Result<Vec<String>> {
        let pid = std::process::id();
        Ok(list_netns()?
            .into_iter()
            .filter(|name| owner_pid(name) == Some(pid))
            .collect())
    }

    fn exec_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(args);
        command
    }

    fn lock_children(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Child>> {
        // A panic while holding the lock leaves the map itself intact.
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let children = self.children.get_mut().unwrap_or_else(PoisonError::into_inner);
        terminate(children.drain().map(|(_, child)| child).collect());
        if let Err(e) = run_checked(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("bulkhead-netns: removing namespace {}: {e}", self.name);
        }
    }
}

/// SIGTERM to all, up to [`TERM_GRACE`] for them to exit, SIGKILL to the rest,
/// and reap every one of them.
fn terminate(mut children: Vec<Child>) {
    for child in &children {
        // Fails only if it already exited, which the wait below handles.
        let _ = kill(nix_pid(child.id()), Signal::SIGTERM);
    }
    let deadline = Instant::now() + TERM_GRACE;
    while !children.is_empty() && Instant::now() < deadline {
        children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
        if !children.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for mut child in children {
        let _ = child.kill();
        if let Err(e) = child.wait() {
            eprintln!("bulkhead-netns: reaping {}: {e}", child.id());
        }
    }
}

/// Takes the cross-process lock around `ip netns add`; released on drop.
fn lock_add() -> Result<Flock<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(ADD_LOCK)
        .map_err(|e| Error::io(format!("opening {ADD_LOCK}"), e))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| Error::sys(format!("locking {ADD_LOCK}"), e))
}

fn validate_tag(tag: &str) -> Result<()> {
    let ok_chars = tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if tag.is_empty() || tag.len() > MAX_TAG_LEN || !ok_chars {
        return Err(Error::Spec(format!(
            "namespace tag {tag:?} must be 1-{MAX_TAG_LEN} characters of [A-Za-z0-9_-]"
        )));
    }
    Ok(())
}

/// The pid in a name of ours (`bh{pid}-{counter}-{tag}`), `None` for other names.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('-')?;
    let (counter, tag) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(counter) || tag.is_empty() {
        return None;
    }
    pid.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    // Signal 0 checks existence; EPERM means it exists but is not ours.
    !matches!(kill(nix_pid(pid), None), Err(Errno::ESRCH))
}

fn list_netns() -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {NETNS_DIR}"), e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {NETNS_DIR}"), e))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

fn nix_pid(pid: u32) -> Pid {
    // Linux pids are at most 2^22, far inside i32.
    Pid::from_raw(pid as i32)
}

fn not_tracked(pid: u32) -> Error {
    Error::NotFound {
        kind: "tracked process",
        name: pid.to_string(),
    }
}

/// Runs a command to completion, capturing its output, whatever its status.
pub(crate) fn run(command: &mut Command) -> Result<Output> {
    command.output().map_err(|source| Error::Spawn {
        command: describe(command),
        source,
    })
}

/// Runs a command to completion; fails, with its stderr, unless it exits 0.
pub(crate) fn run_checked(command: &mut Command) -> Result<Output> {
    let output = run(command)?;
    check(command, output)
}

fn check(command: &Command, output: Output) -> Result<Output> {
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Command {
            command: describe(command),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// The command line, for error messages.
fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn owner_pid_parses_only_our_names() {
        assert_eq!(owner_pid("bh123-0-isp"), Some(123));
        assert_eq!(owner_pid("bh123-7-lan-laptop"), Some(123));
        assert_eq!(owner_pid("bh123-0-"), None);
        assert_eq!(owner_pid("bhx-0-isp"), None);
        assert_eq!(owner_pid("bh12-a-isp"), None);
        assert_eq!(owner_pid("blue"), None);
        assert_eq!(owner_pid("bh-1-2"), None);
    }

    #[test]
    fn tags_are_validated() {
        assert!(validate_tag("router").is_ok());
        assert!(validate_tag("lan_2-x").is_ok());
        assert!(validate_tag("").is_err());
        assert!(validate_tag("a/b").is_err());
        assert!(validate_tag("x y").is_err());
        assert!(validate_tag(&"x".repeat(MAX_TAG_LEN + 1)).is_err());
    }
}
