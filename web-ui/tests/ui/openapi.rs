//! The OpenAPI document: it lists every API route and nothing else, and the
//! API's bodies match it and the model.

use axum::http::{header, Method, StatusCode};
use bulkhead_web::model::{
    AlertView, DeviceAction, DeviceDetail, DeviceSummary, DnsQueryView, DnsSummaryView, NotificationsView, Overview,
    SessionInfo, VpnView, ZoneView,
};
use bulkhead_web::testing::sample_device;
use serde_json::Value;

use crate::common::{json, json_req, ui};

/// Resolves `#/components/schemas/X`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "dangling $ref {r}");
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Checks `v` against an OpenAPI 3.0 schema (the subset the document uses:
/// type, nullable, required, properties, additionalProperties, items, enum,
/// allOf, oneOf with a discriminator, minimum/maximum).
fn check(doc: &Value, schema: &Value, v: &Value, at: &str) {
    let schema = resolve(doc, schema);
    if v.is_null() {
        assert!(
            schema["nullable"] == Value::Bool(true),
            "{at}: null where the schema is not nullable"
        );
        return;
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check(doc, s, v, at);
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let tag = schema["discriminator"]["propertyName"].as_str().expect("discriminator");
        let value = v[tag].as_str().expect("tag");
        let target = &schema["discriminator"]["mapping"][value];
        assert!(one.iter().any(|s| s["$ref"] == *target), "{at}: unknown tag {value}");
        check(
            doc,
            target
                .as_str()
                .map(|r| serde_json::json!({ "$ref": r }))
                .as_ref()
                .expect("ref"),
            v,
            at,
        );
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        assert!(e.contains(v), "{at}: {v} not in {e:?}");
    }
    match schema.get("type").and_then(Value::as_str) {
        None => {}
        Some("object") => {
            let o = v.as_object().unwrap_or_else(|| panic!("{at}: not an object"));
            let props = schema["properties"].as_object();
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().expect("name");
                assert!(o.contains_key(r), "{at}: missing required {r}");
            }
            if let Some(props) = props {
                for (k, val) in o {
                    match props.get(k) {
                        Some(p) => check(doc, p, val, &format!("{at}.{k}")),
                        None => panic!("{at}: property {k} is not documented"),
                    }
                }
                // Every model field is listed as required (serde writes them all).
                for k in props.keys() {
                    assert!(o.contains_key(k), "{at}: documented {k} missing from the body");
                }
            }
        }
        Some("array") => {
            for (i, item) in v
                .as_array()
                .unwrap_or_else(|| panic!("{at}: not an array"))
                .iter()
                .enumerate()
            {
                check(doc, &schema["items"], item, &format!("{at}[{i}]"));
            }
        }
        Some("string") => assert!(v.is_string(), "{at}: not a string"),
        Some("boolean") => assert!(v.is_boolean(), "{at}: not a boolean"),
        Some("integer") => {
            assert!(v.is_i64() || v.is_u64(), "{at}: not an integer");
            if let (Some(min), Some(n)) = (schema["minimum"].as_i64(), v.as_i64()) {
                assert!(n >= min, "{at}: {n} < {min}");
            }
        }
        Some(t) => panic!("{at}: unexpected type {t}"),
    }
}

fn openapi() -> Value {
    serde_json::from_str(bulkhead_web::api::OPENAPI).expect("the OpenAPI document is JSON")
}

#[tokio::test]
async fn openapi_lists_every_api_route_and_nothing_else() {
    let doc = openapi();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    let table = bulkhead_web::api::route_table();
    assert_eq!(paths.len(), table.len(), "one document entry per route");
    let ui = ui();
    let s = ui.login().await;
    for route in &table {
        let entry = paths
            .get(route.path)
            .unwrap_or_else(|| panic!("{} is not in the document", route.path));
        let documented: Vec<String> = entry
            .as_object()
            .expect("ops")
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        let served: Vec<String> = route.methods.iter().map(|m| m.to_string()).collect();
        assert_eq!(documented, served, "{}", route.path);
        // The router answers each one (not 404/405), and with a documented status.
        for m in route.methods {
            let path = route
                .path
                .replace("{mac}", "02:00:00:00:77:77")
                .replace("{id}", "424242");
            let method: Method = m.parse().expect("method");
            let body = (method == Method::POST).then(|| serde_json::json!({}));
            let r = ui.send(json_req(method.clone(), &path, Some(&s), body)).await;
            let status = r.status().as_str().to_string();
            assert_ne!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
            let responses = &entry[m.to_lowercase()]["responses"];
            assert!(
                responses.get(&status).is_some(),
                "{m} {path} answered {status}, not documented"
            );
            assert!(responses.get("421").is_some(), "{m} {path}: 421 undocumented");
            let public = ["/api/openapi.json", "/api/setup", "/api/login"].contains(&route.path);
            assert_eq!(
                responses.get("401").is_some(),
                !public || route.path == "/api/login",
                "{m} {path}: 401"
            );
            if method == Method::POST {
                assert!(responses.get("403").is_some(), "{m} {path}: 403 (Origin) undocumented");
            }
        }
    }
    // Every $ref resolves; the security schemes are the cookie and the header.
    let text = bulkhead_web::api::OPENAPI;
    for r in text.split("\"$ref\": \"").skip(1) {
        let r = r.split('"').next().expect("ref");
        resolve(&doc, &serde_json::json!({ "$ref": r }));
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "bulkhead_session");
    assert_eq!(schemes["csrf"]["in"], "header");
    assert_eq!(schemes["csrf"]["name"], "X-CSRF-Token");
}

#[tokio::test]
async fn api_bodies_match_the_document_and_the_model() {
    let doc = openapi();
    // A home with everything: nulls and values, quarantined and not.
    let ui = ui();
    let mut bare = sample_device("02:00:00:00:0f:01", None, None, "unknown");
    bare.device.vendor = None;
    bare.device.confidence = None;
    bare.dhcp_fingerprint = None;
    bare.dhcp_vendor_class = None;
    bare.dhcp_client_id = None;
    ui.fake.insert_device(bare);
    let s = ui.login().await;
    let schema_of = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"].clone()
    };
    let cases = [
        ("/api/overview", "/api/overview"),
        ("/api/devices", "/api/devices"),
        ("/api/devices/{mac}", "/api/devices/02:00:00:00:0f:01"),
        ("/api/devices/{mac}", "/api/devices/02:00:00:00:02:01"),
        ("/api/zones", "/api/zones"),
        ("/api/alerts", "/api/alerts"),
        ("/api/vpn", "/api/vpn"),
        ("/api/dns/log", "/api/dns/log"),
        (
            "/api/dns/log",
            "/api/dns/log?device=02:00:00:00:02:02&blocked=true&search=ads&limit=5",
        ),
        ("/api/dns/summary", "/api/dns/summary"),
        ("/api/traffic", "/api/traffic"),
        ("/api/devices/{mac}/traffic", "/api/devices/02:00:00:00:02:01/traffic"),
        ("/api/devices/{mac}/traffic", "/api/devices/02:00:00:00:0f:01/traffic"),
        ("/api/notifications", "/api/notifications"),
        ("/api/session", "/api/session"),
    ];
    for (doc_path, path) in cases {
        let r = ui.get(path, Some(&s)).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("application/json"));
        let v = json(r).await;
        check(&doc, &schema_of(doc_path, "get", "200"), &v, path);
        // And the bodies are the model types.
        match doc_path {
            "/api/overview" => drop(serde_json::from_value::<Overview>(v).expect("Overview")),
            "/api/devices" => drop(serde_json::from_value::<Vec<DeviceSummary>>(v).expect("devices")),
            "/api/devices/{mac}" => drop(serde_json::from_value::<DeviceDetail>(v).expect("DeviceDetail")),
            "/api/zones" => drop(serde_json::from_value::<Vec<ZoneView>>(v).expect("zones")),
            "/api/alerts" => drop(serde_json::from_value::<Vec<AlertView>>(v).expect("alerts")),
            "/api/vpn" => drop(serde_json::from_value::<VpnView>(v).expect("VpnView")),
            "/api/dns/log" => drop(serde_json::from_value::<Vec<DnsQueryView>>(v).expect("questions")),
            "/api/dns/summary" => drop(serde_json::from_value::<DnsSummaryView>(v).expect("DnsSummaryView")),
            "/api/notifications" => drop(serde_json::from_value::<NotificationsView>(v).expect("NotificationsView")),
            "/api/traffic" => drop(serde_json::from_value::<bulkhead_web::model::TrafficView>(v).expect("TrafficView")),
            "/api/devices/{mac}/traffic" => {
                drop(serde_json::from_value::<bulkhead_web::model::DeviceTrafficView>(v).expect("DeviceTrafficView"))
            }
            _ => drop(serde_json::from_value::<SessionInfo>(v).expect("SessionInfo")),
        }
    }
    // The demo's log holds every outcome the document lists, and no other.
    let log = json(ui.get("/api/dns/log", Some(&s)).await).await;
    let mut kinds: Vec<&str> = log
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|q| q["outcome"]["kind"].as_str())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut documented: Vec<&str> = doc["components"]["schemas"]["DnsOutcome"]["discriminator"]["mapping"]
        .as_object()
        .expect("mapping")
        .keys()
        .map(String::as_str)
        .collect();
    documented.sort_unstable();
    assert_eq!(kinds, documented);
    // The resolver off: 404 with an error body, the overview's DNS null.
    ui.fake.set_resolver(false);
    for path in ["/api/dns/log", "/api/dns/summary"] {
        let r = ui.get(path, Some(&s)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        check(&doc, &schema_of(path, "get", "404"), &json(r).await, path);
    }
    let v = json(ui.get("/api/overview", Some(&s)).await).await;
    check(
        &doc,
        &schema_of("/api/overview", "get", "200"),
        &v,
        "overview (resolver off)",
    );
    ui.fake.set_resolver(true);
    // The unconfigured tunnel, too.
    ui.fake.set_vpn(VpnView {
        state: "down".into(),
        ..VpnView::default()
    });
    let v = json(ui.get("/api/vpn", Some(&s)).await).await;
    check(&doc, &schema_of("/api/vpn", "get", "200"), &v, "vpn (unconfigured)");
    // Posts.
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/devices/02:00:00:00:0f:01",
            Some(&s),
            Some(serde_json::json!({"action": "approve", "zone": null})),
        ))
        .await;
    let v = json(r).await;
    check(&doc, &schema_of("/api/devices/{mac}", "post", "200"), &v, "action");
    let r = ui
        .send(json_req(Method::POST, "/api/alerts/ack-all", Some(&s), None))
        .await;
    check(
        &doc,
        &schema_of("/api/alerts/ack-all", "post", "200"),
        &json(r).await,
        "ack-all",
    );
    let r = ui.get("/api/devices/02:00:00:00:77:77", Some(&s)).await;
    check(
        &doc,
        &schema_of("/api/devices/{mac}", "get", "404"),
        &json(r).await,
        "404",
    );
    // Every documented request body example the model accepts is a DeviceAction.
    for variant in doc["components"]["schemas"]["DeviceAction"]["discriminator"]["mapping"]
        .as_object()
        .expect("mapping")
        .keys()
    {
        let body = match variant.as_str() {
            "rename" => serde_json::json!({"action": "rename", "name": "x"}),
            "set-zone" => serde_json::json!({"action": "set-zone", "zone": "iot"}),
            "approve" => serde_json::json!({"action": "approve"}),
            "tunnel" => serde_json::json!({"action": "tunnel", "route": true}),
            "block" => serde_json::json!({"action": "block", "blocked": false}),
            "watch" => serde_json::json!({"action": "watch", "watched": true}),
            "forget" => serde_json::json!({"action": "forget"}),
            "link" => serde_json::json!({"action": "link", "known": "02:00:00:00:01:02"}),
            other => panic!("undocumented variant {other}"),
        };
        serde_json::from_value::<DeviceAction>(body).expect("documented variants are DeviceActions");
    }
}
