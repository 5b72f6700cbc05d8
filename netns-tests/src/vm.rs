//! A VM with Debian's kernel, for what this machine's kernel lacks (802.1Q,
//! WireGuard, nf_flow_table): it runs one command of this machine — a test
//! binary and its filter — on this machine's own files, and returns its output
//! and exit status.
//!
//! - The kernel: Debian's `linux-image-<KERNEL>` package, fetched with
//!   `apt-get download` and unpacked with `dpkg-deb -x` into `target/vm/`
//!   (kept between runs), its `modules.dep` and `modules.alias` written by
//!   busybox's `depmod` (this machine has no kmod).
//! - The first stage, a small initramfs written here (newc cpio): a static
//!   busybox (Debian's `busybox-static`, unpacked the same way) loads virtio,
//!   9p and overlay, mounts this machine's root read-only over 9p with a
//!   tmpfs on top (overlayfs: the guest writes, nothing reaches the host), and
//!   switches to it.
//! - The second stage, a shell script: proc, sys, dev and run (not /tmp: the
//!   command may live there, as a CI clone does; the overlay keeps its writes
//!   in the guest anyway); the
//!   kernel's module helper pointed at busybox's `modprobe` (so nft, veth and
//!   bridges load their modules on demand, as on a real distribution), the
//!   requested modules loaded, then the command, its exit status printed as
//!   `BULKHEAD-VM-EXIT=<n>` on the serial console, and power off.
//!
//! The guest has no network device at all (`-nic none`): it only has what the
//! test creates inside it. KVM is used when a KVM guest actually boots here
//! (probed once, with a timeout; remembered in `target/vm/accel`), TCG
//! otherwise, and the runner says which.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The Debian kernel package the tests run on (bookworm's). When the mirror no
/// longer has it, the newest `linux-image-6.1.0-*-amd64` is taken instead,
/// and the runner says so.
pub const KERNEL: &str = "6.1.0-57-amd64";

/// Modules the first stage loads, in dependency order (virtio PCI, 9p, overlay).
const STAGE1_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "9pnet",
    "9pnet_virtio",
    "netfs",
    "fscache",
    "9p",
    "overlay",
];

/// The prepared kernel, busybox and module tree.
#[derive(Debug, Clone)]
pub struct VmKernel {
    /// The kernel release (`uname -r` in the guest).
    pub release: String,
    /// `vmlinuz`.
    pub vmlinuz: PathBuf,
    /// `.../lib/modules/<release>` (with modules.dep).
    pub modules: PathBuf,
    /// The static busybox.
    pub busybox: PathBuf,
    /// The directory all this lives in.
    pub dir: PathBuf,
}

/// What a run gave.
#[derive(Debug, Clone)]
pub struct VmOutcome {
    /// Everything the serial console said (kernel messages, the command's
    /// output).
    pub output: String,
    /// The command's exit status (None: the VM ended without saying, e.g. a
    /// panic or the timeout).
    pub status: Option<i32>,
    /// "KVM" or "TCG".
    pub accel: &'static str,
    /// How long the VM ran.
    pub took: Duration,
}

fn fail(what: impl Into<String>) -> Error {
    Error::io(what.into(), std::io::Error::other("failed"))
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| Error::io(format!("{what}: starting {cmd:?}"), e))?;
    if !out.status.success() {
        return Err(Error::io(
            format!("{what}: {cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim()),
            std::io::Error::other(format!("{}", out.status)),
        ));
    }
    Ok(())
}

/// Whether this machine can run the VM at all (qemu and apt-get present).
pub fn available() -> std::result::Result<(), String> {
    for tool in ["qemu-system-x86_64", "apt-get", "dpkg-deb"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        if !found {
            return Err(format!("{tool} is not installed (Debian: qemu-system-x86, apt, dpkg)"));
        }
    }
    Ok(())
}

/// Runs this very program again in the VM (kernel prepared in `dir`) with
/// `args`, `env` and `modules`, from the current directory: how a test or a
/// bench that needs what this machine's kernel lacks runs itself there.
pub fn run_self(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    modules: &[&str],
    timeout: Duration,
) -> Result<(VmKernel, VmOutcome)> {
    let kernel = prepare(dir)?;
    let exe = std::env::current_exe().map_err(|e| Error::io("finding this program".to_string(), e))?;
    let exe = exe.to_string_lossy().into_owned();
    let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current directory".to_string(), e))?;
    let argv: Vec<&str> = std::iter::once(exe.as_str()).chain(args.iter().copied()).collect();
    let outcome = run(
        &kernel,
        &VmCommand {
            argv: &argv,
            cwd: &cwd,
            env,
            modules,
            memory_mib: 1536,
            timeout,
        },
    )?;
    Ok((kernel, outcome))
}

/// Fetches and unpacks the kernel and busybox into `dir` unless already there.
/// Tests running at once prepare one after the other (a lock file in `dir`).
pub fn prepare(dir: &Path) -> Result<VmKernel> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(|e| Error::io("opening the VM directory's lock", e))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io("locking the VM directory", std::io::Error::from(e)))?;
    prepare_locked(dir)
}

fn prepare_locked(dir: &Path) -> Result<VmKernel> {
    let busybox = dir.join("busybox/bin/busybox");
    if !busybox.exists() {
        let deb = download(dir, "busybox-static")?;
        run_ok(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir.join("busybox")),
            "unpacking busybox-static",
        )?;
        let _ = std::fs::remove_file(&deb);
    }
    let release = match std::fs::read_to_string(dir.join("release")) {
        Ok(r) if dir.join("kernel/boot").join(format!("vmlinuz-{}", r.trim())).exists() => r.trim().to_string(),
        _ => {
            let release = match download(dir, &format!("linux-image-{KERNEL}")) {
                Ok(deb) => {
                    unpack_kernel(dir, &deb)?;
                    KERNEL.to_string()
                }
                Err(e) => {
                    let newest = newest_kernel().ok_or(e)?;
                    eprintln!("vm: linux-image-{KERNEL} is not available; using linux-image-{newest}");
                    let deb = download(dir, &format!("linux-image-{newest}"))?;
                    unpack_kernel(dir, &deb)?;
                    newest
                }
            };
            let modroot = dir.join("kernel");
            run_ok(
                Command::new(&busybox)
                    .arg("depmod")
                    .arg("-b")
                    .arg(&modroot)
                    .arg(&release),
                "depmod",
            )?;
            std::fs::write(dir.join("release"), &release).map_err(|e| Error::io("writing release", e))?;
            release
        }
    };
    Ok(VmKernel {
        vmlinuz: dir.join("kernel/boot").join(format!("vmlinuz-{release}")),
        modules: dir.join("kernel/lib/modules").join(&release),
        busybox,
        dir: dir.to_path_buf(),
        release,
    })
}

fn unpack_kernel(dir: &Path, deb: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir.join("kernel"));
    run_ok(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.join("kernel")),
        "unpacking the kernel",
    )?;
    let _ = std::fs::remove_file(deb);
    Ok(())
}

/// `apt-get download PACKAGE` into `dir`; the .deb's path. A fresh machine
/// may have no package lists yet: then `apt-get update` once and again.
fn download(dir: &Path, package: &str) -> Result<PathBuf> {
    download_once(dir, package).or_else(|_| {
        run_ok(Command::new("apt-get").args(["update", "-q"]), "apt-get update")?;
        download_once(dir, package)
    })
}

fn download_once(dir: &Path, package: &str) -> Result<PathBuf> {
    let before: Vec<PathBuf> = debs(dir);
    let out = Command::new("apt-get")
        .args(["download", "-q", package])
        .current_dir(dir)
        .output()
        .map_err(|e| Error::io("running apt-get download", e))?;
    let after = debs(dir);
    let prefix = format!("{package}_");
    after
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .find(|p| out.status.success() || !before.contains(p))
        .ok_or_else(|| {
            fail(format!(
                "apt-get download {package}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })
}

fn debs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                .collect()
        })
        .unwrap_or_default()
}

/// The newest `6.1.0-N-amd64` the package lists know.
fn newest_kernel() -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["search", "--names-only", "^linux-image-6\\.1\\.0-[0-9]+-amd64$"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .strip_prefix("linux-image-")
                .map(str::to_string)
        })
        .max_by_key(|r| r.split('-').nth(1).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0))
}

/// A newc cpio archive (what the kernel unpacks as its initramfs).
#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, body: &[u8]) {
        self.ino += 1;
        let name_len = name.len() + 1;
        let _ = write!(
            Bytes(&mut self.data),
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            body.len(),
            0,
            0,
            0,
            0,
            name_len,
            0
        );
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
    }
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, b"");
    }
    fn file(&mut self, name: &str, mode: u32, body: &[u8]) {
        self.entry(name, 0o100_000 | mode, body);
    }
    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, b"");
        self.data
    }
}

/// `write!` into a byte vector.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Single-quoted for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What to run in the guest.
#[derive(Debug, Clone)]
pub struct VmCommand<'a> {
    /// The program and its arguments (paths of this machine).
    pub argv: &'a [&'a str],
    /// The working directory.
    pub cwd: &'a Path,
    /// Environment variables set for it (besides PATH and HOME).
    pub env: &'a [(&'a str, &'a str)],
    /// Modules to load first (with their dependencies), e.g. `8021q`.
    pub modules: &'a [&'a str],
    /// Guest memory, MiB.
    pub memory_mib: u32,
    /// The whole run's limit.
    pub timeout: Duration,
}

fn stage2(kernel: &VmKernel, cmd: &VmCommand<'_>) -> String {
    let mut s = String::from("#!/vm/busybox sh\n");
    let bb = "/vm/busybox";
    let _ = writeln!(
        s,
        "{bb} mount -t proc proc /proc\n{bb} mount -t sysfs sys /sys\n{bb} mount -t devtmpfs dev /dev\n\
         {bb} mkdir -p /dev/pts /dev/shm\n{bb} mount -t devpts devpts /dev/pts\n{bb} mount -t tmpfs shm /dev/shm\n\
         {bb} ln -sf /proc/self/fd /dev/fd\n{bb} ln -sf /proc/self/fd/0 /dev/stdin\n\
         {bb} ln -sf /proc/self/fd/1 /dev/stdout\n{bb} ln -sf /proc/self/fd/2 /dev/stderr\n\
         {bb} mount -t tmpfs run /run\n{bb} mkdir -p /run/netns\n\
         {bb} mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null\n\
         {bb} mkdir -p /usr/lib/modules\n{bb} ln -s {} /usr/lib/modules/{}\n\
         {bb} ln -s {bb} /vm/modprobe\necho /vm/modprobe > /proc/sys/kernel/modprobe\n\
         {bb} hostname bulkhead-vm\n{bb} ip link set lo up",
        quote(&kernel.modules.to_string_lossy()),
        kernel.release
    );
    for m in cmd.modules {
        let _ = writeln!(s, "/vm/modprobe {} || echo \"vm: modprobe {m} failed\"", quote(m));
    }
    let _ = writeln!(
        s,
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root"
    );
    for (k, v) in cmd.env {
        let _ = writeln!(s, "export {k}={}", quote(v));
    }
    let argv: Vec<String> = cmd.argv.iter().map(|a| quote(a)).collect();
    let _ = writeln!(
        s,
        "cd {} && {}\necho \"BULKHEAD-VM-EXIT=$?\"\n{bb} sync\n{bb} poweroff -f",
        quote(&cmd.cwd.to_string_lossy()),
        argv.join(" ")
    );
    s
}

fn stage1() -> String {
    let mut s = String::from("#!/bin/busybox sh\nB=/bin/busybox\n");
    s.push_str("$B mount -t proc proc /proc\n$B mount -t sysfs sys /sys\n$B mount -t devtmpfs dev /dev\n");
    s.push_str(
        "for m in $($B cat /modules/order); do $B insmod /modules/$m.ko || echo \"vm: insmod $m failed\"; done\n",
    );
    s.push_str(
        "$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower || echo 'vm: 9p mount failed'\n\
         $B mount -t tmpfs -o size=2g,mode=0755 upper /upper\n$B mkdir -p /upper/u /upper/w\n\
         $B mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot || echo 'vm: overlay mount failed'\n\
         $B mkdir -p /newroot/vm\n$B cp /bin/busybox /newroot/vm/busybox\n$B cp /stage2 /newroot/vm/stage2\n\
         $B umount /proc /sys /dev\n\
         exec $B switch_root /newroot /vm/stage2\n",
    );
    s
}

/// Builds the initramfs for `cmd`.
fn initramfs(kernel: &VmKernel, cmd: &VmCommand<'_>) -> Result<Vec<u8>> {
    let mut c = Cpio::default();
    for d in ["bin", "modules", "proc", "sys", "dev", "lower", "upper", "newroot"] {
        c.dir(d);
    }
    let busybox = std::fs::read(&kernel.busybox).map_err(|e| Error::io("reading busybox", e))?;
    c.file("bin/busybox", 0o755, &busybox);
    let mut order = String::new();
    for m in STAGE1_MODULES {
        let path =
            find_module(&kernel.modules, m).ok_or_else(|| fail(format!("module {m}.ko not in the kernel package")))?;
        let body = std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        c.file(&format!("modules/{m}.ko"), 0o644, &body);
        let _ = writeln!(order, "{m}");
    }
    c.file("modules/order", 0o644, order.as_bytes());
    c.file("init", 0o755, stage1().as_bytes());
    c.file("stage2", 0o755, stage2(kernel, cmd).as_bytes());
    Ok(c.finish())
}

fn find_module(dir: &Path, name: &str) -> Option<PathBuf> {
    let want = format!("{name}.ko");
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n.to_string_lossy() == want) {
                return Some(p);
            }
        }
    }
    None
}

/// Runs `cmd` in a VM with `kernel`; `accel` "kvm" or "tcg".
fn boot(kernel: &VmKernel, cmd: &VmCommand<'_>, accel: &'static str) -> Result<VmOutcome> {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let initrd = kernel.dir.join(format!("initrd-{}-{n}.cpio", std::process::id()));
    std::fs::write(&initrd, initramfs(kernel, cmd)?).map_err(|e| Error::io("writing the initramfs", e))?;
    let started = Instant::now();
    let accel_arg = if accel == "kvm" { "kvm" } else { "tcg,thread=multi" };
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", accel_arg, "-cpu", "max", "-smp", "2"])
        .args(["-m", &cmd.memory_mib.to_string()])
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=3"])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("starting qemu-system-x86_64", e))?;
    let mut stdout = child.stdout.take().ok_or_else(|| fail("qemu's stdout"))?;
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        all
    });
    let deadline = started + cmd.timeout;
    let timed_out = loop {
        match child.try_wait() {
            Ok(Some(_)) => break false,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break true;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(Error::io("waiting for qemu", e)),
        }
    };
    let _ = std::fs::remove_file(&initrd);
    let raw = reader.join().unwrap_or_default();
    let mut output = String::from_utf8_lossy(&raw).into_owned();
    if let Some(mut err) = child.stderr.take() {
        let mut e = String::new();
        let _ = err.read_to_string(&mut e);
        output.push_str(&e);
    }
    if timed_out {
        let _ = writeln!(output, "\nvm: killed after {:?}", cmd.timeout);
    }
    let status = output.lines().rev().find_map(|l| {
        l.trim()
            .strip_prefix("BULKHEAD-VM-EXIT=")
            .and_then(|n| n.trim().parse().ok())
    });
    Ok(VmOutcome {
        output,
        status,
        accel: if accel == "kvm" { "KVM" } else { "TCG" },
        took: started.elapsed(),
    })
}

/// KVM when a KVM guest boots here (a trivial command within 20 s), else
/// TCG; probed once per `target/vm`.
fn accel(kernel: &VmKernel) -> &'static str {
    let remembered = kernel.dir.join("accel");
    match std::fs::read_to_string(&remembered).as_deref().map(str::trim) {
        Ok("kvm") => return "kvm",
        Ok("tcg") => return "tcg",
        _ => {}
    }
    let kvm_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let works = kvm_usable
        && boot(
            kernel,
            &VmCommand {
                argv: &["/bin/true"],
                cwd: Path::new("/"),
                env: &[],
                modules: &[],
                memory_mib: 256,
                timeout: Duration::from_secs(20),
            },
            "kvm",
        )
        .is_ok_and(|o| o.status == Some(0));
    let chosen = if works { "kvm" } else { "tcg" };
    let _ = std::fs::write(&remembered, chosen);
    chosen
}

/// Runs `cmd` in the VM (KVM if it works here, else TCG) and returns what
/// happened. Needs root (qemu reads every file of this machine over 9p).
pub fn run(kernel: &VmKernel, cmd: &VmCommand<'_>) -> Result<VmOutcome> {
    let accel = accel(kernel);
    let outcome = boot(kernel, cmd, accel)?;
    let _ = std::io::stderr().write_all(
        format!(
            "vm: {} ran `{}` in {:.1}s (status {:?})\n",
            outcome.accel,
            cmd.argv.join(" "),
            outcome.took.as_secs_f32(),
            outcome.status
        )
        .as_bytes(),
    );
    Ok(outcome)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"#!/bin/sh\n");
        let data = c.finish();
        assert!(data.starts_with(b"070701"));
        assert!(data.len().is_multiple_of(4));
        assert!(data.windows(10).any(|w| w == b"TRAILER!!!"));
        // The header's mode field: a regular file, 0755.
        assert_eq!(&data[14..22], b"000081ed");
    }

    #[test]
    fn the_command_is_quoted_for_the_shell() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        let k = VmKernel {
            release: "6.1.0-57-amd64".into(),
            vmlinuz: PathBuf::from("/v"),
            modules: PathBuf::from("/m/6.1.0-57-amd64"),
            busybox: PathBuf::from("/b"),
            dir: PathBuf::from("/d"),
        };
        let s = stage2(
            &k,
            &VmCommand {
                argv: &["/t/e2e", "i_vlan; rm -rf /"],
                cwd: Path::new("/work"),
                env: &[("CI", "true")],
                modules: &["8021q"],
                memory_mib: 512,
                timeout: Duration::from_secs(1),
            },
        );
        assert!(s.contains("cd '/work' && '/t/e2e' 'i_vlan; rm -rf /'"), "{s}");
        assert!(
            s.contains("export CI='true'") && s.contains("/vm/modprobe '8021q'"),
            "{s}"
        );
    }
}
