//! Web UI benchmarks (root; builds its own namespaces, removes them after).
//!
//! The real daemon in the demo's router namespace, with 1,000 devices added
//! through the control socket (names, addresses), the UI on 127.0.0.1:8080 of
//! that namespace, logged in through the real setup flow (`/api/setup` with the
//! daemon's setup token):
//!
//! 1. Server time of the devices page, the JSON device list and `/healthz`
//!    (the floor: routing, middleware and headers, no backend call), from the
//!    `Server-Timing` header the UI puts on every response, over one keep-alive
//!    connection; the client's wall time beside it. Requests alternate between
//!    the three routes (A B C A B C …), medians over all rounds.
//! 2. Requests per second with `wrk` (inside the router namespace, 2 connections,
//!    1 thread: the daemon's runtime is single-threaded and the box has 2 cores),
//!    alternating routes over rounds, medians.
//! 3. The daemon's resident memory (VmRSS, VmHWM) idle before the devices were
//!    added and idle after the load, with 1,000 devices.
//!
//! No peer: LuCI (uhttpd + rpcd + ubus) and AdGuard Home's UI are not
//! installable on this Debian machine; `/healthz` is the floor to read the pages
//! against, and the goals (devices page < 20 ms, RSS < 30 MB) are the bar.
//!
//! Run: `cargo bench -p bulkhead --features demo --bench web_ui` (figures in BENCHMARKS.md).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bulkhead::config::MacAddr;
use bulkhead::control::{Request, Response};
use bulkhead::demo::DemoHome;
use bulkhead_netns::HostSnapshot;

const BIN: &str = env!("CARGO_BIN_EXE_bulkhead");
/// Devices added on top of the demo's.
const DEVICES: usize = 1000;
/// Measured requests per route in part 1.
const REQUESTS: usize = 200;
/// wrk rounds per route, and the length of one.
const WRK_ROUNDS: usize = 3;
const WRK_RUN: &str = "5s";
const PASSWORD: &str = "correct horse battery staple";

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn p95(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64) * 0.95).ceil() as usize;
    v.get(i.saturating_sub(1)).copied().unwrap_or(f64::NAN)
}

/// One HTTP/1.1 response, as much as the benchmark needs.
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Server-Timing: app;dur=1.234` → 1.234 (ms).
    fn server_ms(&self) -> Option<f64> {
        let v = self.header("server-timing")?;
        v.split(';')
            .find_map(|p| p.trim().strip_prefix("dur="))
            .and_then(|d| d.parse().ok())
    }
}

/// A keep-alive HTTP/1.1 client on one TCP connection.
struct Client {
    reader: BufReader<TcpStream>,
    host: String,
    cookie: String,
}

impl Client {
    fn new(stream: TcpStream, host: &str) -> Result<Client> {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::new(stream),
            host: host.to_string(),
            cookie: String::new(),
        })
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        json: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<HttpResponse> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if !self.cookie.is_empty() {
            req.push_str(&format!("Cookie: {}\r\n", self.cookie));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        match json {
            Some(body) => req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            None => req.push_str("\r\n"),
        }
        self.reader.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(len) = find("content-length").and_then(|l| l.parse::<usize>().ok()) {
            body.resize(len, 0);
            self.reader.read_exact(&mut body)?;
        } else if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16).context("chunk size")?;
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") && v.starts_with("bulkhead_session=") {
                self.cookie = v.split(';').next().unwrap_or_default().to_string();
            }
        }
        Ok(HttpResponse { status, headers, body })
    }
}

fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

fn main() -> Result<()> {
    ensure!(
        bulkhead_netns::is_root(),
        "the web benchmark builds namespaces and needs root"
    );
    for tool in ["wrk", "nft"] {
        ensure!(
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()?
                .status
                .success(),
            "`{tool}` is missing (apt-get install wrk nftables)"
        );
    }
    let before = HostSnapshot::take()?;
    let result = run();
    let after = HostSnapshot::take()?;
    ensure!(before == after, "the host namespace changed during the benchmark");
    result
}

fn run() -> Result<()> {
    let demo = DemoHome::build(std::path::Path::new(BIN), &[])?;
    // The UI on the router namespace's loopback (the demo's listener list may
    // already have it; the bench says what it needs).
    let cfg = std::fs::read_to_string(demo.config_path())?;
    let cfg = match cfg.lines().find(|l| l.starts_with("listen = [")) {
        Some(line) => cfg.replace(line, "listen = [\"127.0.0.1:8080\", \"10.0.1.1:8080\"]"),
        None => bail!("the demo's config has no [web] listen line"),
    };
    std::fs::write(demo.config_path(), cfg)?;
    let pid = demo.start_daemon()?;
    std::thread::sleep(Duration::from_secs(5));
    let (rss_empty, _) = rss_kib(pid)?;

    let t = Instant::now();
    for i in 0..DEVICES {
        let mac = MacAddr([0x02, 0xbe, 0, 0, (i >> 8) as u8, i as u8]);
        let ip = format!("fd00:1::be:{i:x}").parse().ok();
        match demo.call(Request::AddDevice { mac, ip })? {
            Response::Done { .. } => {}
            other => bail!("adding a device: {other:?}"),
        }
        // Realistic rows: most devices have a name, some hostile-length ones.
        if i % 4 != 0 {
            let name = format!("device {i} in the {} room", ["living", "kitchen", "attic"][i % 3]);
            let _ = demo.call(Request::Rename { mac, name: Some(name) })?;
        }
    }
    eprintln!("added {DEVICES} devices in {:.1} s", t.elapsed().as_secs_f64());

    let token = match demo.call(Request::Auth)? {
        Response::Auth {
            setup_token: Some(t), ..
        } => t,
        other => bail!("no setup token: {other:?}"),
    };
    let router = demo.home.router();
    let stream = router.run_in(|| TcpStream::connect("127.0.0.1:8080"))??;
    let mut c = Client::new(stream, "127.0.0.1:8080")?;
    let body = serde_json::json!({ "token": token, "password": PASSWORD }).to_string();
    let r = c.request("POST", "/api/setup", Some(&body), &[])?;
    ensure!(
        r.status == 200 && !c.cookie.is_empty(),
        "setup failed: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );

    let routes = ["/devices", "/api/devices", "/healthz"];
    for path in routes {
        let r = c.request("GET", path, None, &[])?;
        ensure!(r.status == 200, "{path}: {}", r.status);
        ensure!(r.server_ms().is_some(), "{path}: no Server-Timing header");
        if path == "/devices" {
            let rows = String::from_utf8_lossy(&r.body).matches("data-mac=").count();
            ensure!(rows >= DEVICES, "{path} shows {rows} devices, expected ≥ {DEVICES}");
            eprintln!("/devices: {} bytes, {rows} rows", r.body.len());
        }
    }
    let mut server = vec![Vec::new(); routes.len()];
    let mut wall = vec![Vec::new(); routes.len()];
    for _ in 0..REQUESTS {
        for (i, path) in routes.iter().enumerate() {
            let t = Instant::now();
            let r = c.request("GET", path, None, &[])?;
            wall[i].push(t.elapsed().as_secs_f64() * 1e3);
            ensure!(r.status == 200, "{path}: {}", r.status);
            server[i].push(r.server_ms().context("Server-Timing")?);
        }
    }
    println!("\n## Server time, {DEVICES} devices + the demo's, {REQUESTS} requests per route (alternating)\n");
    println!("| route | server median (ms) | server p95 (ms) | client wall median (ms) |");
    println!("|---|---:|---:|---:|");
    for (i, path) in routes.iter().enumerate() {
        println!(
            "| `{path}` | {:.2} | {:.2} | {:.2} |",
            median(&server[i]),
            p95(&server[i]),
            median(&wall[i])
        );
    }

    let cookie = c.cookie.clone();
    let mut rps = vec![Vec::new(); routes.len()];
    for _ in 0..WRK_ROUNDS {
        for (i, path) in routes.iter().enumerate() {
            let url = format!("http://127.0.0.1:8080{path}");
            let out = router.exec(&[
                "wrk",
                "-t1",
                "-c2",
                "-d",
                WRK_RUN,
                "-H",
                &format!("Cookie: {cookie}"),
                &url,
            ])?;
            let text = String::from_utf8_lossy(&out.stdout);
            ensure!(!text.contains("Non-2xx"), "wrk {path} got error responses:\n{text}");
            let r: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("Requests/sec:"))
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| format!("wrk output:\n{text}"))?;
            rps[i].push(r);
        }
    }
    println!("\n## Requests per second (wrk -t1 -c2 -d{WRK_RUN}, {WRK_ROUNDS} alternating rounds, median)\n");
    println!("| route | req/s | rounds |");
    println!("|---|---:|---|");
    for (i, path) in routes.iter().enumerate() {
        let runs: Vec<String> = rps[i].iter().map(|r| format!("{r:.0}")).collect();
        println!("| `{path}` | {:.0} | {} |", median(&rps[i]), runs.join(", "));
    }

    drop(c);
    std::thread::sleep(Duration::from_secs(10));
    let (rss, hwm) = rss_kib(pid)?;
    println!("\n## Daemon memory\n");
    println!("| when | VmRSS (MiB) | VmHWM (MiB) |");
    println!("|---|---:|---:|");
    println!("| idle, demo devices only | {:.1} | |", rss_empty as f64 / 1024.0);
    println!(
        "| idle after the load, {DEVICES} more devices | {:.1} | {:.1} |",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    demo.stop_daemon()?;
    Ok(())
}
