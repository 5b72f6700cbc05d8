//! A tiny WebDriver client: Debian's `chromedriver` driving headless
//! `chromium`, enough for the browser tests (navigate, find by CSS, type,
//! click, read text and attributes, see whether a JS dialog is open,
//! screenshots).
//!
//! Where the browser runs: inside a host namespace of the test home (the
//! trusted laptop), not in the host namespace. It then opens the UI at
//! `http://10.0.1.1:8080` the way a homeowner's laptop does, through the real
//! bridge and the real firewall (the `web-ui` router service of its zone), with
//! `Host: 10.0.1.1:8080`. Each namespace has its own loopback, so chromedriver
//! can always use the same port there, tests running in parallel never collide,
//! and nothing listens on the host. The test process talks to chromedriver over
//! a socket it opens inside that namespace (a socket stays in the namespace it
//! was created in). The host-side forwarder `bulkhead demo` uses is tested on
//! its own (it needs a free host port and a Host allowlist entry per port).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bulkhead_netns::Netns;
use serde_json::{json, Value};

use crate::http;

/// chromedriver's port on the namespace's own loopback.
const DRIVER_PORT: u16 = 9515;
/// The longest a page load may take.
const SLOW_LOAD: Duration = Duration::from_secs(10);
/// The W3C element reference key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where screenshots go: `target/browser-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("browser-screenshots")
}

/// Whether chromedriver and chromium are installed; the error says how to get
/// them.
pub fn check_installed() -> Result<()> {
    for tool in ["chromedriver", "chromium"] {
        if !bulkhead::demo::have(tool) {
            bail!("`{tool}` is missing: apt-get install -y --no-install-recommends chromium chromium-driver");
        }
    }
    Ok(())
}

/// A WebDriver error answer (`no such element`, `no such alert`, ...).
#[derive(Debug, thiserror::Error)]
#[error("webdriver {command}: {error}: {message}")]
pub struct DriverError {
    /// The command.
    pub command: String,
    /// The W3C error code.
    pub error: String,
    /// chromedriver's message.
    pub message: String,
}

/// A browser session in one namespace. Dropping it ends the session and stops
/// chromedriver and every process it started.
pub struct Browser<'a> {
    ns: &'a Netns,
    driver_pid: u32,
    session: String,
    /// Screenshot file prefix (the test's name).
    prefix: String,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element {
    id: String,
    /// The selector it was found by (for messages).
    pub css: String,
}

impl<'a> Browser<'a> {
    /// Starts chromedriver in `ns` and opens a headless chromium session.
    /// `prefix` names this test's screenshots; `log_dir` gets chromedriver's log.
    pub fn start(ns: &'a Netns, prefix: &str, log_dir: &Path) -> Result<Browser<'a>> {
        check_installed()?;
        let log = log_dir.join("chromedriver.log");
        let port = format!("--port={DRIVER_PORT}");
        let driver_pid = ns.spawn_logged("chromedriver", &[&port], &log)?;
        let mut b = Browser {
            ns,
            driver_pid,
            session: String::new(),
            prefix: prefix.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(v) = b.raw("GET", "/status", None) {
                if v["ready"].as_bool() == Some(true) {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "chromedriver did not get ready within 20 s:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Leave dialogs open: the tests look for them instead of having
            // chromedriver dismiss them quietly.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--window-size=1280,1000",
                    // Nothing in the background: without a resolver every
                    // lookup waits 20 s; with Bulkhead's, Autofill's lookups
                    // (answered at once) would fill the home's query log.
                    "--no-proxy-server", "--disable-background-networking",
                    "--disable-features=AutofillServerCommunication",
                    "--disable-component-update", "--disable-sync", "--disable-default-apps",
                    "--disable-extensions", "--no-default-browser-check", "--no-pings",
                    // No --user-data-dir: with a profile of our own the first
                    // navigation waits 26 s (first-run fetches); chromedriver's
                    // temporary profile is prepared and removed at quit.
                ],
                // No password manager, so no leak check of the password typed
                // at setup and login (its lookups, too, would fill the log).
                "prefs": {
                    "credentials_enable_service": false,
                    "profile.password_manager_enabled": false,
                    "profile.password_manager_leak_detection": false,
                },
            },
        }}});
        let v = b.raw("POST", "/session", Some(&caps))?;
        b.session = v["sessionId"]
            .as_str()
            .with_context(|| format!("no session id in {v}"))?
            .to_string();
        Ok(b)
    }

    /// One WebDriver command; the `value` of the answer, or the error.
    fn raw(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let addr = SocketAddr::from(([127, 0, 0, 1], DRIVER_PORT));
        let req = match body {
            Some(b) => http::Request::post_json(path, b),
            None => http::Request::get(path),
        };
        let req = http::Request { method, ..req };
        let r = http::send(Some(self.ns), addr, &req)?;
        let v: Value = r.json()?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if r.status >= 400 || value.get("error").is_some_and(|e| e.is_string()) {
            return Err(DriverError {
                command: format!("{method} {path}"),
                error: value["error"].as_str().unwrap_or("?").to_string(),
                message: value["message"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(400)
                    .collect(),
            }
            .into());
        }
        Ok(value)
    }

    /// A command of this session.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        self.raw(method, &format!("/session/{}{path}", self.session), body.as_ref())
    }

    /// Opens `url` and waits for the page to load. A load that takes longer
    /// than [`SLOW_LOAD`] is an error: the UI answers in milliseconds, so the
    /// browser waited for something (a connection slot, say).
    pub fn goto(&self, url: &str) -> Result<()> {
        let t0 = Instant::now();
        self.cmd("POST", "/url", Some(json!({ "url": url })))?;
        check_load_time(&format!("loading {url}"), t0.elapsed())
    }

    /// The current URL.
    pub fn url(&self) -> Result<String> {
        Ok(self.cmd("GET", "/url", None)?.as_str().unwrap_or_default().to_string())
    }

    /// The current path (URL without scheme and authority).
    pub fn path(&self) -> Result<String> {
        let url = self.url()?;
        let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        Ok(after_scheme
            .find('/')
            .map_or("/".to_string(), |i| after_scheme[i..].to_string()))
    }

    /// Waits (up to 10 s) until the current path is `want`, as after a form's
    /// redirect: a click may return before the next page is committed. Errs
    /// with the path it stayed on.
    pub fn wait_path(&self, want: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.path()?;
            if now == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("expected to be on {want}, still on {now}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 10 s) until something matches `css`: a form that redirects
    /// back to its own page is done when the new page's flash message is there.
    pub fn wait_for(&self, css: &str) -> Result<Element> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.find_all(css)?.into_iter().next() {
                return Ok(e);
            }
            if Instant::now() > deadline {
                bail!("nothing matches {css:?} on {} within 10 s", self.url()?);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page's HTML as the browser holds it now (the DOM, serialised).
    pub fn source(&self) -> Result<String> {
        Ok(self
            .cmd("GET", "/source", None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The first element matching `css`; an error if there is none.
    pub fn find(&self, css: &str) -> Result<Element> {
        let v = self
            .cmd("POST", "/element", Some(json!({"using": "css selector", "value": css})))
            .with_context(|| format!("finding {css:?} on {}", self.url().unwrap_or_default()))?;
        element_of(&v, css)
    }

    /// Every element matching `css`.
    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v.as_array()
            .context("elements: not a list")?
            .iter()
            .map(|e| element_of(e, css))
            .collect()
    }

    /// Whether anything matches `css`.
    pub fn exists(&self, css: &str) -> Result<bool> {
        Ok(!self.find_all(css)?.is_empty())
    }

    /// The first element matching `css` inside `parent`.
    pub fn find_in(&self, parent: &Element, css: &str) -> Result<Element> {
        let v = self
            .cmd(
                "POST",
                &format!("/element/{}/element", parent.id),
                Some(json!({"using": "css selector", "value": css})),
            )
            .with_context(|| format!("finding {css:?} in {:?}", parent.css))?;
        element_of(&v, css)
    }

    /// Clicks an element (a submit button waits for the next page's load,
    /// held to the same [`SLOW_LOAD`]).
    pub fn click(&self, e: &Element) -> Result<()> {
        let t0 = Instant::now();
        self.cmd("POST", &format!("/element/{}/click", e.id), Some(json!({})))
            .with_context(|| format!("clicking {:?}", e.css))?;
        check_load_time(&format!("clicking {:?}", e.css), t0.elapsed())
    }

    /// Clears a text field and types `text` into it.
    pub fn type_into(&self, e: &Element, text: &str) -> Result<()> {
        self.cmd("POST", &format!("/element/{}/clear", e.id), Some(json!({})))?;
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.id),
            Some(json!({ "text": text })),
        )
        .with_context(|| format!("typing into {:?}", e.css))?;
        Ok(())
    }

    /// The element's rendered text.
    pub fn text(&self, e: &Element) -> Result<String> {
        Ok(self
            .cmd("GET", &format!("/element/{}/text", e.id), None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The rendered text of the first element matching `css`.
    pub fn text_of(&self, css: &str) -> Result<String> {
        let e = self.find(css)?;
        self.text(&e)
    }

    /// An attribute of the element (`None` if absent).
    pub fn attr(&self, e: &Element, name: &str) -> Result<Option<String>> {
        Ok(self
            .cmd("GET", &format!("/element/{}/attribute/{name}", e.id), None)?
            .as_str()
            .map(str::to_string))
    }

    /// The text of the open JS dialog (alert, confirm, prompt), if one is open.
    pub fn open_dialog(&self) -> Result<Option<String>> {
        match self.cmd("GET", "/alert/text", None) {
            Ok(v) => Ok(Some(v.as_str().unwrap_or_default().to_string())),
            Err(e) => match e.downcast_ref::<DriverError>() {
                Some(d) if d.error == "no such alert" => Ok(None),
                _ => Err(e),
            },
        }
    }

    /// Saves a screenshot of the viewport as
    /// `target/browser-screenshots/<prefix>-<name>.png`.
    pub fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let v = self.cmd("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot: no data")?)
            .context("screenshot: bad base64")?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}-{name}.png", self.prefix));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// The session's cookies as (name, value).
    pub fn cookies(&self) -> Result<Vec<(String, String)>> {
        let v = self.cmd("GET", "/cookie", None)?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["name"].as_str()?.to_string(), c["value"].as_str()?.to_string())))
            .collect())
    }
}

/// A page load over [`SLOW_LOAD`] is an error (the UI answers in
/// milliseconds, so the browser waited for something).
fn check_load_time(what: &str, took: Duration) -> Result<()> {
    if took > SLOW_LOAD {
        bail!(
            "{what} took {took:.1?}. The browser was waiting, not the server: Chrome opens at most 6 \
             connections per host, and pages kept in its back/forward cache still hold their \
             EventSource on /events unless the page closes it on `pagehide`"
        );
    }
    Ok(())
}

fn element_of(v: &Value, css: &str) -> Result<Element> {
    Ok(Element {
        id: v[ELEMENT_KEY]
            .as_str()
            .with_context(|| format!("no element reference in {v}"))?
            .to_string(),
        css: css.to_string(),
    })
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        // Whatever chromium left (its helpers), by pid: only descendants of
        // the chromedriver this browser started.
        for pid in descendants(self.driver_pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.ns.stop_tracked(self.driver_pid);
    }
}

/// Every living descendant of `root` (children first found, then theirs).
fn descendants(root: u32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|s| s.parse::<i32>().ok()) {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root as i32];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}
