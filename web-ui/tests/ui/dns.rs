//! The DNS query log: the Queries page and its filter, a device's DNS section,
//! the overview's counts, the JSON API, hostile query names, the resolver off.

use axum::http::StatusCode;
use bulkhead_web::model::{DnsOutcome, DnsQueryView, DnsSummaryView, ErrorBody, Overview};
use bulkhead_web::testing::dns_query;

use crate::common::{json, text, ui, CAMERA, QUARANTINED};
use crate::hostile_text::assert_inert;

const LAPTOP: &str = "02:00:00:00:01:01";
const PLUG: &str = "02:00:00:00:02:02";

/// The `data-outcome` of each row of a question table, in order.
fn outcomes(html: &str) -> Vec<String> {
    html.split("<tr data-outcome=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The `data-mac` of each row of a question table (empty: no known device).
fn askers(html: &str) -> Vec<String> {
    html.split("<tr data-outcome=\"")
        .skip(1)
        .map(|row| {
            let head = row.split('>').next().unwrap_or("");
            head.split("data-mac=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn the_queries_page_lists_the_newest_questions() {
    let ui = ui();
    let s = ui.login().await;
    let html = ui.page("/queries", &s).await;
    assert!(
        html.contains("aria-current=\"page\">Queries</a>"),
        "in the nav, current"
    );
    // Every question of the demo, newest first, every outcome.
    let rows = outcomes(&html);
    assert_eq!(rows.len(), 16);
    assert_eq!(rows[0], "blocked", "the camera's ad question, 10 s ago");
    for kind in [
        "forwarded",
        "cached",
        "local",
        "blocked",
        "rebinding-dropped",
        "refused",
        "failed",
    ] {
        assert!(rows.iter().any(|r| r == kind), "{kind}");
    }
    for label in [
        ">BLOCKED by ads<",
        ">rebinding dropped<",
        ">refused<",
        ">failed<",
        ">cached<",
        ">local<",
        ">forwarded<",
    ] {
        assert!(html.contains(label), "{label}");
    }
    assert!(html.contains("192.0.2.53:53"), "the upstream that answered");
    // Askers by their best name, the MAC beside it; a bare MAC is not repeated.
    assert!(html.contains(&format!(
        "<a href=\"/devices/{LAPTOP}\"><bdi>Anna&#39;s laptop</bdi></a><span class=\"sub\">{LAPTOP} · 192.168.1.10</span>"
    )));
    assert!(html.contains("<bdi>plug-kitchen</bdi>"), "the hostname when unnamed");
    assert!(html.contains("192.168.1.99<span class=\"sub\">no known device</span>"));
    assert!(askers(&html).contains(&String::new()));
    // The counters since the resolver started (not "today": that is not known).
    assert!(html.contains(
        "<div class=\"card stat\" id=\"dns-answered\"><span class=\"stat-num\">16</span><span class=\"stat-label\">questions since the resolver started</span>"
    ));
    assert!(html.contains("id=\"dns-blocked\" href=\"/queries?blocked=true\"><span class=\"stat-num\">4</span>"));
    // Upstream health and the lists.
    assert!(html.contains("failing (3 in a row)") && html.contains("198.51.100.53:53"));
    assert!(html.contains("10.8.0.1:53</code> <span class=\"badge tunnel\">through the VPN</span>"));
    assert!(html.contains("<strong>3</strong> rules"), "the ads list's rules");
    assert!(html.contains("unreadable: No such file or directory (os error 2)"));
    // The filter: every device to choose, nothing chosen; the form submits
    // with a button.
    assert!(html.contains("<option value=\"\">All devices</option>"));
    assert_eq!(html.matches("<option value=\"02:00:00:00:").count(), 7);
    assert!(!html.contains(" selected>"));
    assert!(html.contains("<input type=\"number\" name=\"limit\" min=\"1\" max=\"1000\" value=\"100\">"));
    assert_eq!(
        html.matches("<form").count(),
        html.matches("<button type=\"submit\"").count()
    );
    assert!(!html.contains("id=\"dns-off\""));
}

#[tokio::test]
async fn the_filter_narrows_by_device_blocked_search_and_limit() {
    let ui = ui();
    let s = ui.login().await;
    let html = ui.page(&format!("/queries?device={PLUG}"), &s).await;
    assert_eq!(askers(&html), [PLUG, PLUG]);
    assert!(html.contains(&format!(
        "<option value=\"{PLUG}\" selected>plug-kitchen · {PLUG}</option>"
    )));
    let html = ui.page("/queries?blocked=true", &s).await;
    assert_eq!(outcomes(&html), ["blocked"; 4]);
    assert!(html.contains("name=\"blocked\" value=\"true\" checked>"));
    // Search is case-insensitive, on the name.
    let html = ui.page("/queries?search=WWW.EXAMPLE", &s).await;
    assert_eq!(outcomes(&html).len(), 4);
    assert!(html.contains("value=\"WWW.EXAMPLE\""));
    // Together: the camera's blocked questions.
    let html = ui
        .page(&format!("/queries?device={CAMERA}&blocked=on&search=ads&limit=10"), &s)
        .await;
    assert_eq!(askers(&html), [CAMERA]);
    assert!(html.contains("<p class=\"muted\" id=\"query-count\">1 matching question, newest first</p>"));
    // The limit, brought into range.
    assert_eq!(outcomes(&ui.page("/queries?limit=2", &s).await).len(), 2);
    let html = ui.page("/queries?limit=5000", &s).await;
    assert!(html.contains("value=\"1000\">"));
    assert_eq!(outcomes(&html).len(), 16);
    assert!(ui.page("/queries?limit=0", &s).await.contains("value=\"1\">"));
    // Values that mean nothing show the whole log (as the devices page does);
    // a form sends every field, blank ones too.
    for q in [
        "device=nonsense&blocked=maybe&limit=x",
        "device=&blocked=&search=&limit=",
        "%zz",
    ] {
        assert_eq!(outcomes(&ui.page(&format!("/queries?{q}"), &s).await).len(), 16, "{q}");
    }
    // A device that is gone still filters, and stays chosen.
    let gone = "02:00:00:00:0d:0d";
    let html = ui.page(&format!("/queries?device={gone}"), &s).await;
    assert!(outcomes(&html).is_empty());
    assert!(html.contains(&format!("<option value=\"{gone}\" selected>{gone}</option>")));
    assert!(html.contains("No logged question matches."));
    // Typed search text comes back escaped.
    let html = ui.page("/queries?search=%22%3E%3Cscript%3Ex", &s).await;
    assert!(html.contains("value=\"&#34;&#62;&#60;script&#62;x\""));
    assert_inert("search echo", &html);
}

#[tokio::test]
async fn hostile_query_names_render_inert() {
    let ui = ui();
    let s = ui.login().await;
    let now = bulkhead_web::format::now();
    let long = format!("{}.evil.test", "x".repeat(243)); // 253 bytes, the longest name
    let hostile = [
        "<script>alert(1)</script>.evil.test".to_string(),
        "\"><img src=x onerror=alert(1)>.evil.test".to_string(),
        "\"autofocus onfocus=alert(1) x=\".evil.test".to_string(),
        "line1\nline2\tTAB\r\u{1b}[31m\u{85}.evil.test".to_string(),
        "invoice\u{202E}fdp.exe.evil.test".to_string(),
        "a\u{2066}b\u{061C}c.evil.test".to_string(),
        long.clone(),
    ];
    for (i, name) in hostile.iter().enumerate() {
        let outcome = if i % 2 == 0 {
            DnsOutcome::Blocked { list: "ads".into() }
        } else {
            DnsOutcome::Cached
        };
        ui.fake
            .push_dns_query(dns_query(now - 1, Some(CAMERA), "192.168.1.12", name, "A", outcome));
    }
    for path in [
        "/queries".to_string(),
        "/queries?search=evil".to_string(),
        format!("/devices/{CAMERA}"),
    ] {
        let html = ui.page(&path, &s).await;
        assert_inert(&path, &html);
        assert!(!html.contains("\"autofocus"), "{path}: an attribute from a name");
        assert!(
            html.contains("<bdi>&#60;script&#62;alert(1)&#60;/script&#62;.evil.test</bdi>"),
            "{path}"
        );
        assert!(html.contains("<bdi>&#34;&#62;&#60;img src=x onerror=alert(1)&#62;.evil.test</bdi>"));
        assert!(html.contains("<bdi>&#34;autofocus onfocus=alert(1) x=&#34;.evil.test</bdi>"));
        assert!(html.contains("line1\\u{000A}line2\\u{0009}TAB\\u{000D}\\u{001B}[31m\\u{0085}.evil.test"));
        assert!(html.contains("invoice\\u{202E}fdp.exe.evil.test"));
        assert!(html.contains("a\\u{2066}b\\u{061C}c.evil.test"));
        assert!(
            html.contains(&format!("<bdi>{long}</bdi>")),
            "{path}: the long name, whole"
        );
    }
    // The demo's own hostile names, too (the speaker's and the stranger's).
    let html = ui.page("/queries", &s).await;
    assert!(html.contains("<bdi>&#34;onmouseover=alert(1) x=&#34;.example.test</bdi>"));
    let html = ui.page(&format!("/devices/{QUARANTINED}"), &s).await;
    assert_inert("stranger", &html);
    assert!(html.contains("<bdi>&#60;script&#62;alert(1)&#60;/script&#62;.example.test</bdi>"));
    // The API returns them raw (JSON-escaped).
    let v: Vec<DnsQueryView> =
        serde_json::from_value(json(ui.get("/api/dns/log?search=evil", Some(&s)).await).await).expect("entries");
    let names: Vec<&str> = v.iter().map(|q| q.name.as_str()).collect();
    for name in &hostile {
        assert!(names.contains(&name.as_str()), "{name:?}");
    }
}

#[tokio::test]
async fn a_device_page_shows_its_counts_top_names_and_latest_questions() {
    let ui = ui();
    let s = ui.login().await;
    // The camera: three questions, two blocked.
    let html = ui.page(&format!("/devices/{CAMERA}"), &s).await;
    assert!(
        html.contains("<p id=\"dns-counts\"><strong>3</strong> questions today, <strong>2</strong> of them blocked.")
    );
    assert!(html.contains(&format!("<a href=\"/queries?device={CAMERA}\">")));
    assert_eq!(outcomes(&html), ["blocked", "blocked", "forwarded"]);
    assert!(html.contains("id=\"device-queries\""));
    assert!(
        !html.contains("<th scope=\"col\">Device</th>"),
        "no asker column on its own page"
    );
    assert!(html.contains("<li><bdi>ads.example.test</bdi> <span class=\"muted\">× 1</span></li>"));

    // The laptop asks a lot: its ten most asked names, its twenty newest.
    let now = bulkhead_web::format::now();
    for i in 0..60u32 {
        // Name k is asked k+1 times (k = 0..=9), then 5 names once each.
        let name = match i {
            0..55 => {
                let k = (0..10).find(|k| i < (k + 1) * (k + 2) / 2).unwrap_or(9);
                format!("n{k}.example.net")
            }
            _ => format!("once{i}.example.net"),
        };
        ui.fake.push_dns_query(dns_query(
            now - 5,
            Some(LAPTOP),
            "192.168.1.10",
            &name,
            "A",
            DnsOutcome::Cached,
        ));
    }
    let html = ui.page(&format!("/devices/{LAPTOP}"), &s).await;
    assert_eq!(outcomes(&html).len(), 20, "the 20 newest");
    let top = html
        .split("<ol class=\"top-names\" id=\"dns-top\">")
        .nth(1)
        .and_then(|s| s.split("</ol>").next())
        .expect("top names");
    let names: Vec<&str> = top
        .split("<li><bdi>")
        .skip(1)
        .filter_map(|s| s.split("</bdi>").next())
        .collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert_eq!(names[0], "n9.example.net", "asked most");
    assert!(top.contains("<li><bdi>n9.example.net</bdi> <span class=\"muted\">× 10</span></li>"));
    assert!(!top.contains("once"), "names asked once are not in the top ten");
    // 60 new + the demo's 4 for the laptop.
    assert!(html.contains("<strong>64</strong> questions today, <strong>0</strong> of them blocked."));
    assert!(html.contains("<h3>Most asked names today</h3>"));
    assert!(top.contains("<li><bdi>www.example.com</bdi> <span class=\"muted\">× 3</span></li>"));

    // A device that asked nothing.
    let html = ui.page("/devices/02:00:00:00:02:03", &s).await;
    assert!(html.contains("<strong>1</strong> questions"));
    ui.fake.set_resolver(true);
    let html = ui.page("/devices/02:00:00:00:02:03", &s).await;
    assert!(html.contains("<strong>0</strong> questions"));
    assert!(html.contains("None today (or its questions are not logged)."));
}

#[tokio::test]
async fn the_overview_counts_the_devices_questions_today() {
    let ui = ui();
    let s = ui.login().await;
    let html = ui.page("/", &s).await;
    // The demo's 16 questions, less the one from an address no device holds.
    assert!(html.contains(
        "<a class=\"card stat\" id=\"dns-stat\" href=\"/queries\"><span class=\"stat-num\">15</span><span class=\"stat-label\">DNS questions today, 4 blocked</span></a>"
    ), "{}", html.split("dns-stat").nth(1).unwrap_or_default());
    let o: Overview = serde_json::from_value(json(ui.get("/api/overview", Some(&s)).await).await).expect("Overview");
    assert_eq!((o.dns_questions, o.dns_blocked), (Some(15), Some(4)));
}

#[tokio::test]
async fn the_api_reads_the_log_and_the_summary() {
    let ui = ui();
    let s = ui.login().await;
    let r = ui.get("/api/dns/log", Some(&s)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let all: Vec<DnsQueryView> = serde_json::from_value(json(r).await).expect("entries");
    assert_eq!(all.len(), 16);
    assert!(all.windows(2).all(|w| w[0].at >= w[1].at), "newest first");
    let raw = json(ui.get("/api/dns/log?limit=1", Some(&s)).await).await;
    assert_eq!(raw[0]["outcome"], serde_json::json!({"kind": "blocked", "list": "ads"}));
    assert_eq!(raw[0]["mac"], CAMERA);
    let get = |q: String| {
        let ui = &ui;
        let s = &s;
        async move {
            let r = ui.get(&format!("/api/dns/log?{q}"), Some(s)).await;
            assert_eq!(r.status(), StatusCode::OK, "{q}");
            serde_json::from_value::<Vec<DnsQueryView>>(json(r).await).expect("entries")
        }
    };
    let plug = get(format!("device={}", PLUG.to_uppercase())).await;
    assert_eq!(plug.len(), 2);
    assert!(plug.iter().all(|q| q.mac.as_deref() == Some(PLUG)));
    let blocked = get("blocked=true".into()).await;
    assert!(blocked.len() == 4 && blocked.iter().all(|q| q.outcome.is_blocked()));
    assert_eq!(get("blocked=false&search=Example.COM".into()).await.len(), 4);
    assert_eq!(
        get("device=&blocked=&search=&limit=".into()).await.len(),
        16,
        "blank is any"
    );
    assert_eq!(get("limit=3".into()).await.len(), 3);
    // The API is strict.
    for q in [
        "limit=0",
        "limit=1001",
        "limit=many",
        "device=plug",
        "blocked=maybe",
        &format!("search={}", "a".repeat(256)),
    ] {
        let r = ui.get(&format!("/api/dns/log?{q}"), Some(&s)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
        assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok(), "{q}");
    }
    let sum: DnsSummaryView =
        serde_json::from_value(json(ui.get("/api/dns/summary", Some(&s)).await).await).expect("summary");
    assert_eq!((sum.answered, sum.blocked, sum.cache_hits, sum.local), (16, 4, 2, 1));
    assert_eq!(sum.device(PLUG), (2, 2));
    assert_eq!(sum.upstreams.len(), 3);
    assert_eq!(sum.lists.len(), 2);
    // Session-protected like the rest of the API.
    for path in ["/api/dns/log", "/api/dns/summary"] {
        let r = ui.get(path, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
    }
    // And the page without a session goes to the login.
    let r = ui.get("/queries", None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_resolver_off_is_said_plainly() {
    let ui = ui();
    let s = ui.login().await;
    ui.fake.set_resolver(false);
    let html = ui.page("/queries", &s).await;
    assert!(html.contains("id=\"dns-off\"") && html.contains("The DNS resolver is off"));
    assert!(!html.contains("id=\"query-filter\"") && !html.contains("<table"));
    let html = ui.page(&format!("/devices/{CAMERA}"), &s).await;
    assert!(html.contains("<p class=\"empty\" id=\"dns-off\">The DNS resolver is off.</p>"));
    assert!(html.contains("id=\"device-name\""), "the rest of the page is there");
    let html = ui.page("/", &s).await;
    assert!(html.contains("id=\"dns-stat\" href=\"/queries\"><span class=\"stat-num\">off</span>"));
    for path in ["/api/dns/log", "/api/dns/summary"] {
        let r = ui.get(path, Some(&s)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let e: ErrorBody = serde_json::from_value(json(r).await).expect("ErrorBody");
        assert_eq!(e.error, "the DNS resolver is off");
    }
    let o = json(ui.get("/api/overview", Some(&s)).await).await;
    assert!(o["dns_questions"].is_null() && o["dns_blocked"].is_null());
    // On again: an empty log.
    ui.fake.set_resolver(true);
    let html = ui.page("/queries", &s).await;
    assert!(html.contains("No questions logged yet."));
    assert!(outcomes(&html).is_empty());
}

#[tokio::test]
async fn the_backend_down_is_503_here_too() {
    let ui = ui();
    let s = ui.login().await;
    ui.fake.set_unavailable(true);
    let r = ui.get("/queries", Some(&s)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(r).await.contains("The router is busy"));
    for path in ["/api/dns/log", "/api/dns/summary"] {
        let r = ui.get(path, Some(&s)).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
    }
}
