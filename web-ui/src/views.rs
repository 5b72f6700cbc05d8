//! The pages' templates (askama, compiled in; HTML-escaped by default — no
//! template uses `|safe`) and the data each one shows. Device-supplied text goes
//! through the `shown` filter ([`crate::text::Shown`]) as well, and sits in
//! `<bdi>` so right-to-left text cannot reorder what is around it.

use std::collections::HashMap;

use askama::Template;

use crate::alert_text::Piece;
use crate::app::SessionCtx;
use crate::auth::Flash;
use crate::inventory::{DeviceQuery, SortKey, Status};
use crate::model::{
    AlertView, DeviceDetail, DeviceSummary, DnsLogQuery, DnsOutcome, DnsQueryView, DnsSummaryView, NotificationsView,
    Overview, UnixTime, VpnView, ZoneView,
};

/// The embedded stylesheet.
pub const APP_CSS: &str = include_str!("../static/app.css");
/// The embedded script.
pub const APP_JS: &str = include_str!("../static/app.js");
/// The embedded icon.
pub const ICON_SVG: &str = include_str!("../static/icon.svg");

/// A fingerprint of the assets, in their URLs, so a new build is fetched anew
/// while browsers may cache the files.
pub const ASSET_VERSION: u64 = fnv1a(APP_CSS.as_bytes()) ^ fnv1a(APP_JS.as_bytes()).rotate_left(1);

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// Template filters: `shown` (device text), `ago`, `utc`, `rfc3339`, `bytes`,
/// `query` (a URL query value).
mod filters {
    use std::borrow::{Borrow, Cow};

    use crate::format::{Ago, Bytes, Rfc3339, Utc};
    use crate::text::Shown;

    /// Device-supplied text with control and bidi characters made visible.
    pub fn shown<'a, T: AsRef<str> + ?Sized>(s: &'a T, _: &dyn askama::Values) -> askama::Result<Shown<'a>> {
        Ok(Shown(s.as_ref()))
    }

    /// "3 min ago".
    pub fn ago<T: Borrow<i64>, N: Borrow<i64>>(at: &T, _: &dyn askama::Values, now: &N) -> askama::Result<Ago> {
        Ok(Ago {
            at: *at.borrow(),
            now: *now.borrow(),
        })
    }

    /// "2024-05-01 12:34 UTC".
    pub fn utc<T: Borrow<i64>>(at: &T, _: &dyn askama::Values) -> askama::Result<Utc> {
        Ok(Utc(*at.borrow()))
    }

    /// "2024-05-01T12:34:56Z".
    pub fn rfc3339<T: Borrow<i64>>(at: &T, _: &dyn askama::Values) -> askama::Result<Rfc3339> {
        Ok(Rfc3339(*at.borrow()))
    }

    /// "1.2 MiB".
    pub fn bytes<T: Borrow<u64>>(n: &T, _: &dyn askama::Values) -> askama::Result<Bytes> {
        Ok(Bytes(*n.borrow()))
    }

    /// Percent-encoded for a URL query.
    pub fn query<'a, T: AsRef<str> + ?Sized>(s: &'a T, _: &dyn askama::Values) -> askama::Result<Cow<'a, str>> {
        Ok(crate::text::query_value(s.as_ref()))
    }
}

/// The main navigation: (key, link, label).
const NAV: [(&str, &str, &str); 8] = [
    ("overview", "/", "Overview"),
    ("devices", "/devices", "Devices"),
    ("zones", "/zones", "Zones"),
    ("queries", "/queries", "Queries"),
    ("alerts", "/alerts", "Alerts"),
    ("notifications", "/notifications", "Notifications"),
    ("vpn", "/vpn", "VPN"),
    ("settings", "/settings", "Settings"),
];

/// What every page's frame shows.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The page title.
    pub title: String,
    /// The navigation entry that is current (`""` for none).
    pub nav: &'static str,
    /// The session's CSRF token (the logout form), empty when signed out.
    pub csrf: String,
    /// A message from the last action.
    pub flash: Option<Flash>,
    /// Signed in: show the navigation and live updates.
    pub signed_in: bool,
}

impl Layout {
    /// A signed-in page.
    pub fn signed_in(title: impl Into<String>, nav: &'static str, session: &SessionCtx) -> Layout {
        Layout {
            title: title.into(),
            nav,
            csrf: session.csrf.clone(),
            flash: session.flash.clone(),
            signed_in: true,
        }
    }

    /// A page for visitors not signed in.
    pub fn public(title: impl Into<String>, flash: Option<Flash>) -> Layout {
        Layout {
            title: title.into(),
            nav: "",
            csrf: String::new(),
            flash,
            signed_in: false,
        }
    }

    /// The navigation entries.
    pub fn nav_items(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &NAV
    }

    /// The assets' fingerprint.
    pub fn version(&self) -> u64 {
        ASSET_VERSION
    }
}

/// `/`.
#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage<'a> {
    /// Frame.
    pub layout: Layout,
    /// The figures (the quarantined list possibly cut short).
    pub o: &'a Overview,
    /// Devices waiting for approval, all of them.
    pub waiting: usize,
    /// Now.
    pub now: UnixTime,
}

impl OverviewPage<'_> {
    /// The busiest top talker's bytes (the meters' scale).
    fn talker_max(&self) -> u64 {
        self.o
            .top_talkers
            .iter()
            .map(|t| t.last_hour_received + t.last_hour_sent)
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// DNS questions of the devices and blocked today; `None`: it is off.
    fn dns(&self) -> Option<(u64, u64)> {
        Some((self.o.dns_questions?, self.o.dns_blocked?))
    }
}

/// `/devices`.
#[derive(Template)]
#[template(path = "devices.html")]
pub struct DevicesPage<'a> {
    /// Frame.
    pub layout: Layout,
    /// The devices shown, filtered and sorted.
    pub devices: &'a [DeviceSummary],
    /// All devices.
    pub total: usize,
    /// The filter.
    pub query: &'a DeviceQuery,
    /// The zones to filter by.
    pub zones: Vec<String>,
    /// The classes to filter by.
    pub classes: Vec<String>,
    /// The statuses to filter by.
    pub statuses: [&'static str; 4],
    /// The sort keys.
    pub sort_keys: [SortKey; 6],
    /// The query string of the filter without the sort.
    pub filter_qs: String,
    /// Now.
    pub now: UnixTime,
}

impl<'a> DevicesPage<'a> {
    /// The page for `devices` (already filtered) out of `total`; `all` gives
    /// the filter's choices.
    pub fn new(
        layout: Layout,
        devices: &'a [DeviceSummary],
        all_zones: Vec<String>,
        all_classes: Vec<String>,
        total: usize,
        query: &'a DeviceQuery,
        now: UnixTime,
    ) -> DevicesPage<'a> {
        DevicesPage {
            layout,
            devices,
            total,
            query,
            zones: all_zones,
            classes: all_classes,
            statuses: Status::ALL.map(Status::as_str),
            sort_keys: SortKey::ALL,
            filter_qs: query.filter_query(),
            now,
        }
    }

    fn zone_selected(&self, z: &str) -> bool {
        self.query.zone.as_deref() == Some(z)
    }

    fn class_selected(&self, c: &str) -> bool {
        self.query.class.as_deref() == Some(c)
    }

    fn status_selected(&self, s: &str) -> bool {
        self.query.status.map(Status::as_str) == Some(s)
    }

    fn filtered(&self) -> bool {
        self.query.zone.is_some()
            || self.query.class.is_some()
            || self.query.status.is_some()
            || !self.query.q.is_empty()
    }

    /// The link that sorts by `key` (the other way round if already sorted by it).
    fn sort_href(&self, key: &str) -> String {
        let desc = self.query.sort.as_str() == key && !self.query.desc;
        let dir = if desc { "desc" } else { "asc" };
        if self.filter_qs.is_empty() {
            format!("/devices?sort={key}&dir={dir}")
        } else {
            format!("/devices?{}&sort={key}&dir={dir}", self.filter_qs)
        }
    }

    fn sort_mark(&self, key: &str) -> &'static str {
        match (self.query.sort.as_str() == key, self.query.desc) {
            (false, _) => "",
            (true, false) => " ▲",
            (true, true) => " ▼",
        }
    }

    fn aria_sort(&self, key: &str) -> &'static str {
        match (self.query.sort.as_str() == key, self.query.desc) {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        }
    }
}

/// `/devices/{mac}`.
#[derive(Template)]
#[template(path = "device.html")]
pub struct DevicePage<'a> {
    /// Frame.
    pub layout: Layout,
    /// The device.
    pub d: &'a DeviceDetail,
    /// Its DNS questions; `None`: the resolver is off.
    pub dns: Option<DeviceDns<'a>>,
    /// What it sent and received; `None`: counting is off.
    pub traffic: Option<DeviceTraffic>,
    /// Now.
    pub now: UnixTime,
}

/// A device's traffic section: totals by path and two charts.
pub struct DeviceTraffic {
    /// The figures.
    pub view: crate::model::DeviceTrafficView,
    /// The last hour, by minute.
    pub hour: crate::traffic_chart::Chart,
    /// The last 24 hours, by hour.
    pub day: crate::traffic_chart::Chart,
}

impl DeviceTraffic {
    /// The section for `view` at `now`.
    pub fn new(view: crate::model::DeviceTrafficView, now: UnixTime) -> DeviceTraffic {
        DeviceTraffic {
            hour: crate::traffic_chart::chart(&view.minutes, now, 60, 60),
            day: crate::traffic_chart::chart(&view.hours, now, 3600, 24),
            view,
        }
    }

    /// (element id, caption, chart) of the two charts.
    pub fn charts(&self) -> [(&'static str, &'static str, &crate::traffic_chart::Chart); 2] {
        [
            ("traffic-hour", "The last hour, by minute", &self.hour),
            ("traffic-day", "The last 24 hours, by hour", &self.day),
        ]
    }

    /// (path, sent, received) rows.
    pub fn paths(&self) -> [(&'static str, crate::model::FlowView, crate::model::FlowView); 3] {
        let (s, r) = (&self.view.sent, &self.view.received);
        [
            ("Internet", s.internet, r.internet),
            ("Through the VPN", s.tunnel, r.tunnel),
            ("Other zones", s.zones, r.zones),
        ]
    }
}

/// A device's DNS section.
pub struct DeviceDns<'a> {
    /// Questions answered today.
    pub queries: u64,
    /// Of which blocked.
    pub blocked: u64,
    /// Its most asked names today, most first.
    pub top: &'a [(String, u64)],
    /// Its newest questions.
    pub table: QueryTable<'a>,
}

impl<'a> DeviceDns<'a> {
    /// Names listed as the most asked.
    pub const TOP_NAMES: usize = 10;
    /// Questions listed as the newest.
    pub const RECENT: usize = 20;

    /// The section for a device with today's counters and most asked names,
    /// and these logged questions (newest first).
    pub fn new(counts: (u64, u64), top: &'a [(String, u64)], log: &'a [DnsQueryView], now: UnixTime) -> DeviceDns<'a> {
        DeviceDns {
            queries: counts.0,
            blocked: counts.1,
            top: &top[..top.len().min(Self::TOP_NAMES)],
            table: QueryTable::new("device-queries", &log[..log.len().min(Self::RECENT)], &[], false, now),
        }
    }
}

/// The table of DNS questions (the Queries page, a device's page):
/// `query_table.html`.
pub struct QueryTable<'a> {
    /// The table's id.
    pub id: &'static str,
    /// Newest first.
    pub rows: &'a [DnsQueryView],
    /// Devices by MAC, for their names.
    devices: HashMap<&'a str, &'a DeviceSummary>,
    /// Show who asked (not on a device's own page).
    pub device_column: bool,
    /// Now.
    pub now: UnixTime,
}

impl<'a> QueryTable<'a> {
    /// A table of `rows`, naming askers from `devices`.
    pub fn new(
        id: &'static str,
        rows: &'a [DnsQueryView],
        devices: &'a [DeviceSummary],
        device_column: bool,
        now: UnixTime,
    ) -> QueryTable<'a> {
        QueryTable {
            id,
            rows,
            devices: devices.iter().map(|d| (d.mac.as_str(), d)).collect(),
            device_column,
            now,
        }
    }

    /// The device with this MAC, if known.
    fn device(&self, mac: &str) -> Option<&'a DeviceSummary> {
        self.devices.get(mac).copied()
    }
}

/// `/queries`.
#[derive(Template)]
#[template(path = "queries.html")]
pub struct QueriesPage<'a> {
    /// Frame.
    pub layout: Layout,
    /// The filter.
    pub query: &'a DnsLogQuery,
    /// The resolver's counters; `None`: it is off.
    pub summary: Option<&'a DnsSummaryView>,
    /// The questions; `None`: the resolver is off.
    pub table: Option<QueryTable<'a>>,
    /// The devices to filter by, by name.
    pub devices: Vec<&'a DeviceSummary>,
}

impl<'a> QueriesPage<'a> {
    /// The page; `devices` gives the filter's choices.
    pub fn new(
        layout: Layout,
        query: &'a DnsLogQuery,
        log: Option<&'a [DnsQueryView]>,
        summary: Option<&'a DnsSummaryView>,
        devices: &'a [DeviceSummary],
        now: UnixTime,
    ) -> QueriesPage<'a> {
        let mut choices: Vec<&DeviceSummary> = devices.iter().collect();
        choices.sort_by_cached_key(|d| (d.display_name().to_lowercase(), d.mac.clone()));
        QueriesPage {
            layout,
            query,
            // Both or neither: the resolver is on or off.
            summary: summary.filter(|_| log.is_some()),
            table: log
                .filter(|_| summary.is_some())
                .map(|rows| QueryTable::new("queries", rows, devices, true, now)),
            devices: choices,
        }
    }

    fn device_selected(&self, mac: &str) -> bool {
        self.query.device.as_deref() == Some(mac)
    }

    /// The device filtered by, when it is not one of the known devices.
    fn unknown_device(&self) -> Option<&str> {
        self.query
            .device
            .as_deref()
            .filter(|m| !self.devices.iter().any(|d| d.mac == *m))
    }

    fn search(&self) -> &str {
        self.query.search.as_deref().unwrap_or("")
    }
}

impl DevicePage<'_> {
    /// The tunnel choice as the form's value.
    fn route(&self) -> &'static str {
        match self.d.device.tunnel_choice {
            Some(true) => "through",
            Some(false) => "direct",
            None => "policy",
        }
    }
}

/// `/zones`.
#[derive(Template)]
#[template(path = "zones.html")]
pub struct ZonesPage<'a> {
    /// Frame.
    pub layout: Layout,
    /// The zones.
    pub zones: &'a [ZoneView],
    /// What is shared across zones (`None`: the daemon could not say).
    pub sharing: Option<crate::model::SharingView>,
    /// The picture of the zones.
    pub map: crate::zone_map::ZoneMap,
}

/// `/alerts`.
#[derive(Template)]
#[template(path = "alerts.html")]
pub struct AlertsPage<'a> {
    /// Frame.
    pub layout: Layout,
    /// Newest first.
    pub alerts: &'a [AlertView],
    /// How many are not acknowledged.
    pub unacknowledged: usize,
    /// The zones a held device can be approved into.
    pub zones: Vec<String>,
    /// Now.
    pub now: UnixTime,
}

/// `/notifications`.
#[derive(Template)]
#[template(path = "notifications.html")]
pub struct NotificationsPage<'a> {
    /// Frame.
    pub layout: Layout,
    /// The channels.
    pub n: &'a NotificationsView,
    /// Now.
    pub now: UnixTime,
}

/// `/vpn`.
#[derive(Template)]
#[template(path = "vpn.html")]
pub struct VpnPage<'a> {
    /// Frame.
    pub layout: Layout,
    /// The tunnel.
    pub vpn: &'a VpnView,
    /// Now.
    pub now: UnixTime,
}

/// `/settings`.
#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    /// Frame.
    pub layout: Layout,
}

/// `/setup`.
#[derive(Template)]
#[template(path = "setup.html")]
pub struct SetupPage {
    /// Frame.
    pub layout: Layout,
    /// The pre-session token (also in the `bulkhead_pre` cookie).
    pub pre_csrf: String,
}

/// `/login`.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// Frame.
    pub layout: Layout,
    /// The pre-session token (also in the `bulkhead_pre` cookie).
    pub pre_csrf: String,
}

/// Something went wrong.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// Frame.
    pub layout: Layout,
    /// The heading.
    pub heading: String,
    /// What happened.
    pub message: String,
}
