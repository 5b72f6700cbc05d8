//! Validating `[[classify]]` rules: raw TOML with spans -> [`ClassRule`]s.
//!
//! Every problem is reported at its file:line:column with the field path
//! (`classify[3].match.vendor[1]`), and all of a file's problems at once.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::error::Reporter;
use super::load::{RawClassRule, RawConditions, SpannedList};
use super::types::ZoneId;
use crate::classify::{
    check_rule_id, parse_dhcp_params, parse_glob, parse_txt_key, ClassRule, Conditions, Glob, RuleError,
};

/// Checks a zone reference against the policy's zones, reporting unknown ones.
pub(super) type ZoneRef<'z> = dyn Fn(&mut Reporter<'_>, &Spanned<String>, String) -> Option<ZoneId> + 'z;

/// Rule ids already defined (in this or an earlier file), with where.
pub(super) type SeenRuleIds = BTreeMap<String, String>;

/// Validates one file's rules, in order. Invalid rules are reported and left out.
pub(super) fn validate_class_rules(
    raw: &[Spanned<RawClassRule>],
    rep: &mut Reporter<'_>,
    zone_ref: &ZoneRef<'_>,
    seen: &mut SeenRuleIds,
) -> Vec<ClassRule> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, rule)| validate_rule(i, rule, rep, zone_ref, seen))
        .collect()
}

fn validate_rule(
    i: usize,
    raw: &Spanned<RawClassRule>,
    rep: &mut Reporter<'_>,
    zone_ref: &ZoneRef<'_>,
    seen: &mut SeenRuleIds,
) -> Option<ClassRule> {
    let f = |name: &str| format!("classify[{i}].{name}");
    let r = raw.get_ref();
    let at_rule = raw.span();
    let id = required(rep, &r.id, &at_rule, f("id"), "a rule needs an `id` (a-z, 0-9 and -)")
        .and_then(|id| check_id(id, seen, rep, f("id")));
    let class = required(rep, &r.class, &at_rule, f("class"), "a rule needs a `class`")
        .and_then(|c| parsed(rep, c, f("class"), |s| s.parse()));
    let zone = match &r.zone {
        None => Some(None),
        Some(z) => zone_ref(rep, z, f("zone")).map(Some),
    };
    let confidence = required(
        rep,
        &r.confidence,
        &at_rule,
        f("confidence"),
        "a rule needs a `confidence` (low, medium or high)",
    )
    .and_then(|c| parsed(rep, c, f("confidence"), |s| s.parse()));
    let source = required(
        rep,
        &r.source,
        &at_rule,
        f("source"),
        "a rule needs a `source`: where its signature comes from",
    )
    .and_then(|s| {
        if s.get_ref().trim().is_empty() {
            rep.at(
                s.span(),
                f("source"),
                "`source` cannot be empty: say where the signature comes from",
            );
            None
        } else {
            Some(s.get_ref().trim().to_string())
        }
    });
    let conditions = match &r.conditions {
        None => {
            rep.at(
                at_rule,
                f("match"),
                "a rule needs at least one condition in its `[classify.match]` table",
            );
            None
        }
        Some(c) => validate_conditions(c, rep, &f("match")),
    };
    Some(ClassRule {
        id: id?,
        class: class?,
        zone: zone?,
        confidence: confidence?,
        source: source?,
        conditions: conditions?,
    })
}

/// A required field, or an error at the rule when it is missing.
fn required<'v>(
    rep: &mut Reporter<'_>,
    value: &'v Option<Spanned<String>>,
    at_rule: &Range<usize>,
    field: String,
    message: &str,
) -> Option<&'v Spanned<String>> {
    if value.is_none() {
        rep.at(at_rule.clone(), field, message);
    }
    value.as_ref()
}

fn parsed<T>(
    rep: &mut Reporter<'_>,
    value: &Spanned<String>,
    field: String,
    parse: impl Fn(&str) -> Result<T, RuleError>,
) -> Option<T> {
    parse(value.get_ref())
        .map_err(|e| rep.at(value.span(), field, e.to_string()))
        .ok()
}

fn check_id(id: &Spanned<String>, seen: &mut SeenRuleIds, rep: &mut Reporter<'_>, field: String) -> Option<String> {
    let name = id.get_ref();
    if let Err(e) = check_rule_id(name) {
        rep.at(id.span(), field, e.to_string());
        return None;
    }
    if let Some(first) = seen.get(name) {
        rep.at(
            id.span(),
            field,
            format!("rule id `{name}` is already used by the rule at {first}"),
        );
        return None;
    }
    seen.insert(name.clone(), rep.position(id.span().start));
    Some(name.clone())
}

fn validate_conditions(raw: &Spanned<RawConditions>, rep: &mut Reporter<'_>, field: &str) -> Option<Conditions> {
    let c = raw.get_ref();
    let f = |name: &str| format!("{field}.{name}");
    let vendor = list(rep, c.vendor.as_ref(), &f("vendor"), parse_glob);
    let dhcp_params = list(rep, c.dhcp_params.as_ref(), &f("dhcp_params"), parse_dhcp_params);
    let dhcp_params_prefix = list(
        rep,
        c.dhcp_params_prefix.as_ref(),
        &f("dhcp_params_prefix"),
        parse_dhcp_params,
    );
    let vendor_class = list(rep, c.vendor_class.as_ref(), &f("vendor_class"), parse_glob);
    let hostname = list(rep, c.hostname.as_ref(), &f("hostname"), parse_glob);
    let mdns_service = list(rep, c.mdns_service.as_ref(), &f("mdns_service"), parse_glob);
    let txt = match &c.txt {
        None => Some(BTreeMap::new()),
        Some(table) => validate_txt(table, rep, &f("txt")),
    };
    let upnp = match &c.upnp {
        None => Some(BTreeMap::new()),
        Some(table) => validate_upnp(table, rep, &f("upnp")),
    };
    let conditions = Conditions {
        vendor: vendor?,
        dhcp_params: dhcp_params?,
        dhcp_params_prefix: dhcp_params_prefix?,
        vendor_class: vendor_class?,
        hostname: hostname?,
        mdns_service: mdns_service?,
        txt: txt?,
        upnp: upnp?,
        randomized_mac: c.randomized_mac.as_ref().map(|r| *r.get_ref()),
    };
    if conditions.count() == 0 {
        rep.at(
            raw.span(),
            field,
            "a rule needs at least one condition (vendor, dhcp_params, dhcp_params_prefix, vendor_class, \
             hostname, mdns_service, txt, upnp or randomized_mac)",
        );
        return None;
    }
    Some(conditions)
}

fn validate_txt(
    table: &Spanned<BTreeMap<String, SpannedList>>,
    rep: &mut Reporter<'_>,
    field: &str,
) -> Option<BTreeMap<String, Vec<Glob>>> {
    let key_of = |key: &str| parse_txt_key(key).map_err(|e| e.to_string());
    validate_keyed(table, rep, field, ("txt", "keys", "TXT key"), &key_of)
}

/// `upnp = { manufacturer = [...], model = [...] }`: known fields only.
fn validate_upnp(
    table: &Spanned<BTreeMap<String, SpannedList>>,
    rep: &mut Reporter<'_>,
    field: &str,
) -> Option<BTreeMap<String, Vec<Glob>>> {
    use crate::classify::UPNP_FIELDS;
    let key_of = |key: &str| {
        if UPNP_FIELDS.contains(&key) {
            Ok(key.to_string())
        } else {
            Err(format!(
                "unknown UPnP field `{}` (known: {})",
                key.escape_debug(),
                UPNP_FIELDS.join(", ")
            ))
        }
    };
    validate_keyed(table, rep, field, ("upnp", "fields", "UPnP field"), &key_of)
}

/// A table of key -> globs (`txt`, `upnp`): not empty, each key as `key_of`
/// says, each list of globs valid, no key twice once normalised. `names` is
/// (the table, what its keys are called, one key's name) for the messages.
fn validate_keyed(
    table: &Spanned<BTreeMap<String, SpannedList>>,
    rep: &mut Reporter<'_>,
    field: &str,
    (table_name, keys, key_name): (&str, &str, &str),
    key_of: &dyn Fn(&str) -> Result<String, String>,
) -> Option<BTreeMap<String, Vec<Glob>>> {
    if table.get_ref().is_empty() {
        rep.at(
            table.span(),
            field,
            format!("an empty `{table_name}` table is no condition: add {keys} or leave it out"),
        );
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, globs) in table.get_ref() {
        let f = format!("{field}.{}", key.escape_debug());
        let key = match key_of(key) {
            Ok(k) => k,
            Err(e) => {
                rep.at(globs.span(), f, e);
                ok = false;
                continue;
            }
        };
        match list(rep, Some(globs), &f, parse_glob) {
            Some(g) => {
                if out.insert(key.clone(), g).is_some() {
                    rep.at(
                        globs.span(),
                        f,
                        format!("{key_name} `{key}` is given twice (keys ignore case)"),
                    );
                    ok = false;
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// An any-of list: absent is no condition (empty), present must be non-empty and
/// every entry must parse. Errors name `field[j]`.
fn list<T>(
    rep: &mut Reporter<'_>,
    raw: Option<&SpannedList>,
    field: &str,
    parse: impl Fn(&str) -> Result<T, RuleError>,
) -> Option<Vec<T>> {
    let Some(items) = raw else {
        return Some(Vec::new());
    };
    if items.get_ref().is_empty() {
        rep.at(
            items.span(),
            field,
            "an empty list matches nothing: add entries or leave the condition out",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (j, item) in items.get_ref().iter().enumerate() {
        match parse(item.get_ref()) {
            Ok(v) => out.push(v),
            Err(e) => {
                rep.at(item.span(), format!("{field}[{j}]"), e.to_string());
                ok = false;
            }
        }
    }
    ok.then_some(out)
}
