//! The OpenAPI document states exactly what the handlers enforce. Walks the generated
//! document and, for every constraint it states on a parameter or a request body
//! (`minimum`, `maximum`, `minLength`, `maxLength`, `pattern`, `enum`, `minItems`,
//! `maxItems`, `maxProperties`, `propertyNames`, `additionalProperties: false`, the
//! unrolled template depth, `x-max-association-types`, `x-max-body-bytes`), probes the
//! handler through `tower::ServiceExt::oneshot` at the bound (accepted: the request gets past
//! validation, so a gateway without nodes answers 503 "no leader", or 404 for a node that
//! is not a member) and one past it (400, or 413 for the body size). A keyword the walker
//! does not know fails the test, so a constraint added to the document must be probed here.
//!
//! Also: the patterns agree with the validators on random strings; every documented error
//! answer uses the shared `ErrorResponse` schema; every reply of the probes is one the
//! document lists.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::Method;
use axum::Router;
use common::*;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const WAIT: Duration = Duration::from_millis(100);

/// Keywords of a parameter's or a body's schema that this test knows how to probe, or that
/// constrain nothing (annotations).
const KNOWN: &[&str] = &[
    "type",
    "format",
    "description",
    "default",
    "examples",
    "example",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "enum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "additionalProperties",
    "maxProperties",
    "propertyNames",
    "$ref",
    "x-max-association-types",
];

/// What a probe expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Past validation (any answer but 400/413/415).
    Accepted,
    /// 400 with a JSON error.
    Rejected,
    /// 413 with a JSON error.
    TooLarge,
}

struct Probe {
    what: String,
    call: Call,
    want: Want,
}

/// One operation of the document, and how to build a valid request for it.
#[derive(Clone)]
struct Operation {
    method: Method,
    template: String,
    op: Value,
}

impl Operation {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    fn parameters(&self) -> Vec<Value> {
        self.op["parameters"].as_array().cloned().unwrap_or_default()
    }

    /// A valid value for each required parameter: the schema's example, or its minimum (ids
    /// counted up per position, so `from` and `to` differ), or the first enum value.
    fn baseline(&self, contract: &Contract) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut next_id = 1u64;
        for p in self.parameters() {
            let name = p["name"].as_str().unwrap().to_string();
            let location = p["in"].as_str().unwrap().to_string();
            if !p["required"].as_bool().unwrap_or(false) {
                continue;
            }
            let schema = resolve(contract, &p["schema"]);
            let value = valid_value(&schema, &mut next_id);
            out.push((name, location, value));
        }
        out
    }

    /// The request with `overrides` (name → raw value, already encoded; `None` leaves the
    /// parameter out) on top of the baseline, and the body.
    fn call(&self, contract: &Contract, overrides: &[(&str, Option<String>)], body: Option<Vec<u8>>) -> Call {
        let mut values = self.baseline(contract);
        for (name, value) in overrides {
            values.retain(|(n, _, _)| n != name);
            if let Some(v) = value {
                let location = self
                    .parameters()
                    .iter()
                    .find(|p| p["name"] == *name)
                    .map(|p| p["in"].as_str().unwrap().to_string())
                    .unwrap_or_else(|| panic!("{}: no parameter {name}", self.label()));
                values.push((name.to_string(), location, v.clone()));
            }
        }
        let mut path = self.template.clone();
        let mut query = Vec::new();
        for (name, location, value) in &values {
            match location.as_str() {
                "path" => path = path.replace(&format!("{{{name}}}"), value),
                "query" => query.push(format!("{name}={value}")),
                other => panic!("{}: parameter {name} in {other}", self.label()),
            }
        }
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        let mut call = Call::new(self.method.clone(), path);
        if self.op.get("security").is_some() {
            call = call.bearer(TOKEN);
        }
        let body = body.or_else(|| self.valid_body());
        if let Some(b) = body {
            call = call.raw(b).header("content-type", "application/json");
        }
        call
    }

    /// A valid body: the schema's example, or `{}` (the attribute objects).
    fn valid_body(&self) -> Option<Vec<u8>> {
        let body = self.op.get("requestBody")?;
        let schema = &body["content"]["application/json"]["schema"];
        let value = match schema.get("$ref").and_then(Value::as_str) {
            Some("#/components/schemas/QueryRequest") => json!({ "entities": [1] }),
            Some("#/components/schemas/UnplugRequest") => json!({ "unplugged": false }),
            Some(other) => panic!("{}: no valid body known for {other}", self.label()),
            None => json!({}),
        };
        Some(serde_json::to_vec(&value).unwrap())
    }
}

fn resolve(contract: &Contract, schema: &Value) -> Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            resolve(contract, &contract.doc["components"]["schemas"][name])
        }
        None => schema.clone(),
    }
}

fn valid_value(schema: &Value, next_id: &mut u64) -> String {
    if let Some(example) = schema["examples"].as_array().and_then(|e| e.first()) {
        return example.as_str().map(String::from).unwrap_or_else(|| example.to_string());
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.as_str().unwrap().to_string();
    }
    match schema["type"].as_str() {
        Some("integer") => {
            let min = schema["minimum"].as_u64().unwrap_or(0);
            let v = (*next_id).max(min);
            *next_id += 1;
            v.to_string()
        }
        Some("array") => valid_value(&schema["items"], next_id),
        other => panic!("no valid value known for a schema of type {other:?}: {schema}"),
    }
}

fn unknown_keywords(schema: &Value) -> Vec<String> {
    schema.as_object().map(|o| o.keys().filter(|k| !KNOWN.contains(&k.as_str())).cloned().collect()).unwrap_or_default()
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
fn encode(s: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(s, RESERVED).to_string()
}

/// Strings to try against a pattern: they cover each character class of the patterns in the
/// document, in first and later positions.
const PATTERN_CORPUS: &[&str] = &[
    "a", "z", "m", "A", "Z", "_", "-", "0", "9", "a1", "a_", "a-", "aB", "ab", "a9_z", "n1", "N-1", "x_y-z", "1a",
    "_a", "-a", "a.b", "a b", "a/b", "é", "aé", "a\u{0}", "a:b", "a+b", "a%b", ".", "..",
];

/// Probes for one parameter: its bounds and one past them.
fn parameter_probes(contract: &Contract, op: &Operation, param: &Value, covered: &mut BTreeSet<String>) -> Vec<Probe> {
    let name = param["name"].as_str().unwrap();
    let location = param["in"].as_str().unwrap();
    let schema = resolve(contract, &param["schema"]);
    let unknown = unknown_keywords(&schema);
    assert!(unknown.is_empty(), "{}: parameter {name}: cannot probe {unknown:?}", op.label());
    let mut probes = Vec::new();
    let mut probe = |what: String, raw: String, want: Want| {
        probes.push(Probe {
            what: format!("{}: {name} {what}", op.label()),
            call: op.call(contract, &[(name, Some(raw))], None),
            want,
        });
    };
    let mut note = |keyword: &str| {
        covered.insert(format!("{} {name} {keyword}", op.label()));
    };
    match schema["type"].as_str() {
        Some("integer") => {
            integer_probes(&schema, &mut |what, raw, want| probe(what, raw, want), &mut note);
            probe("+1 (a sign)".into(), encode("+1"), Want::Rejected);
            probe("' 1' (a space)".into(), encode(" 1"), Want::Rejected);
            probe("1.5".into(), "1.5".into(), Want::Rejected);
            probe("x".into(), "x".into(), Want::Rejected);
        }
        Some("string") if schema.get("enum").is_some() => {
            note("enum");
            let values = schema["enum"].as_array().unwrap();
            for v in values {
                probe(format!("= {v}"), v.as_str().unwrap().to_string(), Want::Accepted);
            }
            let first = values[0].as_str().unwrap();
            if first.to_uppercase() != first {
                probe("upper case".into(), first.to_uppercase(), Want::Rejected);
            }
            probe("bogus".into(), "bogus".into(), Want::Rejected);
            if location == "query" {
                probe("empty".into(), String::new(), Want::Rejected);
            }
        }
        Some("string") => {
            let re = schema["pattern"].as_str().map(|p| regex::Regex::new(p).unwrap());
            let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
            let max = schema["maxLength"].as_u64().map(|m| m as usize);
            let fits = |s: &str| {
                let n = s.chars().count();
                n >= min && max.is_none_or(|m| n <= m) && re.as_ref().is_none_or(|re| re.is_match(s))
            };
            let example = valid_value(&schema, &mut 1);
            assert!(fits(&example), "{}: {name}'s example {example:?} does not fit its schema", op.label());
            if let Some(max) = max {
                note("maxLength");
                let fill = example.chars().last().unwrap();
                let at: String = example.chars().chain(std::iter::repeat(fill)).take(max).collect();
                assert!(fits(&at));
                probe(format!("of maxLength {max}"), encode(&at), Want::Accepted);
                probe(format!("of maxLength + 1 = {}", max + 1), encode(&format!("{at}{fill}")), Want::Rejected);
            }
            if min > 0 {
                note("minLength");
                let at: String = example.chars().take(min).collect();
                assert!(fits(&at));
                probe(format!("of minLength {min}"), encode(&at), Want::Accepted);
                // One under (empty) is only reachable in a query; an empty path segment
                // routes elsewhere.
                if location == "query" {
                    probe("empty".into(), String::new(), Want::Rejected);
                }
            }
            if re.is_some() {
                note("pattern");
                for s in PATTERN_CORPUS {
                    let want = if fits(s) { Want::Accepted } else { Want::Rejected };
                    // Only strings the length bounds allow say something about the pattern.
                    if s.chars().count() >= min.max(1) && max.is_none_or(|m| s.chars().count() <= m) {
                        probe(format!("{s:?} vs the pattern"), encode(s), want);
                    }
                }
            }
        }
        Some("array") => {
            assert_eq!(location, "query", "{}: an array in {location}", op.label());
            assert_eq!(param["style"], "form");
            assert_eq!(param["explode"], false, "{}: {name} is comma-separated", op.label());
            let items = resolve(contract, &schema["items"]);
            assert_eq!(items["type"], "integer");
            if let Some(max) = schema["maxItems"].as_u64() {
                note("maxItems");
                let list = |n: u64| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
                probe(format!("of maxItems {max}"), list(max), Want::Accepted);
                probe(format!("of maxItems + 1 = {}", max + 1), list(max + 1), Want::Rejected);
            }
            if schema["minItems"].as_u64() == Some(1) {
                note("minItems");
                probe("of minItems 1".into(), "7".into(), Want::Accepted);
                probe("empty".into(), String::new(), Want::Rejected);
            }
            integer_probes(
                &items,
                &mut |what, raw, want| probe(format!("item {what}"), format!("1,{raw}"), want),
                &mut note,
            );
            probe("with a space".into(), encode("1, 2"), Want::Rejected);
            probe("with an empty item".into(), "1,,2".into(), Want::Rejected);
        }
        other => panic!("{}: parameter {name} of type {other:?}: cannot probe", op.label()),
    }
    // Every optional query parameter may be left out.
    if !param["required"].as_bool().unwrap_or(false) {
        probes.push(Probe {
            what: format!("{}: {name} left out", op.label()),
            call: op.call(contract, &[(name, None)], None),
            want: Want::Accepted,
        });
    } else if location == "query" {
        probes.push(Probe {
            what: format!("{}: required {name} left out", op.label()),
            call: op.call(contract, &[(name, None)], None),
            want: Want::Rejected,
        });
    }
    probes
}

/// `minimum` and `maximum`: at each, and one past (an integer schema must state both).
fn integer_probes(schema: &Value, probe: &mut dyn FnMut(String, String, Want), note: &mut dyn FnMut(&str)) {
    let min = schema["minimum"].as_u64().expect("an integer parameter states its minimum");
    let max = schema["maximum"].as_u64().expect("an integer parameter states its maximum");
    note("minimum");
    note("maximum");
    probe(format!("= minimum {min}"), min.to_string(), Want::Accepted);
    probe(format!("= minimum - 1 = {}", min as i128 - 1), (min as i128 - 1).to_string(), Want::Rejected);
    probe(format!("= maximum {max}"), max.to_string(), Want::Accepted);
    probe(format!("= maximum + 1 = {}", max as u128 + 1), (max as u128 + 1).to_string(), Want::Rejected);
}

/// Probes for a request body: its size, and each constraint of its schema.
fn body_probes(contract: &Contract, op: &Operation, covered: &mut BTreeSet<String>) -> Vec<Probe> {
    let Some(body) = op.op.get("requestBody") else { return Vec::new() };
    let mut probes = Vec::new();
    let label = op.label();
    let mut probe = |what: String, body: Vec<u8>, want: Want| {
        probes.push(Probe { what: format!("{label}: body {what}"), call: op.call(contract, &[], Some(body)), want });
    };

    // The size: a valid body padded with spaces (still valid JSON) to exactly the limit.
    let limit = body["x-max-body-bytes"].as_u64().expect("every request body states x-max-body-bytes") as usize;
    covered.insert(format!("{label} body x-max-body-bytes"));
    let valid = op.valid_body().unwrap();
    let padded = |n: usize| {
        let mut b = valid.clone();
        b.resize(n, b' ');
        b
    };
    probe(format!("of x-max-body-bytes {limit}"), padded(limit), Want::Accepted);
    probe(format!("of {} bytes", limit + 1), padded(limit + 1), Want::TooLarge);

    let schema = resolve(contract, &body["content"]["application/json"]["schema"]);
    let unknown = unknown_keywords(&schema);
    assert!(unknown.is_empty(), "{label}: body: cannot probe {unknown:?}");
    let Some(properties) = schema["properties"].as_object() else {
        // An attribute object: anything that is an object.
        assert!(schema["type"] == "object" || schema["type"] == json!(["object", "null"]), "{label}: {schema}");
        let mut probe = |what: &str, body: &str, want| {
            probes.push(Probe {
                what: format!("{label}: body {what}"),
                call: op.call(contract, &[], Some(body.as_bytes().to_vec())),
                want,
            })
        };
        probe("an object", r#"{"a":[1,{"b":null}],"c":"d"}"#, Want::Accepted);
        probe("an array", "[1]", Want::Rejected);
        probe("a string", "\"x\"", Want::Rejected);
        return probes;
    };
    let valid: Value = serde_json::from_slice(&op.valid_body().unwrap()).unwrap();
    let with = |key: &str, v: Value| {
        let mut b = valid.as_object().unwrap().clone();
        b.insert(key.to_string(), v);
        serde_json::to_vec(&Value::Object(b)).unwrap()
    };
    if schema["additionalProperties"] == false {
        covered.insert(format!("{label} body additionalProperties"));
        probe("with an unknown field".into(), with("surprise", json!(1)), Want::Rejected);
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        let key = required.as_str().unwrap();
        let mut b = valid.as_object().unwrap().clone();
        b.remove(key);
        probe(format!("without required {key}"), serde_json::to_vec(&b).unwrap(), Want::Rejected);
    }
    for (key, prop) in properties {
        let prop = resolve(contract, prop);
        let unknown = unknown_keywords(&prop);
        assert!(unknown.is_empty(), "{label}: body.{key}: cannot probe {unknown:?}");
        match prop["type"].as_str() {
            Some("array") => {
                let items = resolve(contract, &prop["items"]);
                assert_eq!(items["type"], "integer", "{label}: body.{key}");
                let list = |n: u64| Value::from((1..=n).collect::<Vec<u64>>());
                let max = prop["maxItems"].as_u64().expect("a list states maxItems");
                let min = prop["minItems"].as_u64().expect("a list states minItems");
                covered.insert(format!("{label} body.{key} maxItems"));
                covered.insert(format!("{label} body.{key} minItems"));
                probe(format!(".{key} of maxItems {max}"), with(key, list(max)), Want::Accepted);
                probe(format!(".{key} of maxItems + 1"), with(key, list(max + 1)), Want::Rejected);
                probe(format!(".{key} of minItems {min}"), with(key, list(min)), Want::Accepted);
                if min > 0 {
                    probe(format!(".{key} of minItems - 1"), with(key, list(min - 1)), Want::Rejected);
                }
                let imin = items["minimum"].as_u64().unwrap();
                let imax = items["maximum"].as_u64().unwrap();
                covered.insert(format!("{label} body.{key} items minimum maximum"));
                probe(format!(".{key} item = minimum"), with(key, json!([imin])), Want::Accepted);
                probe(format!(".{key} item = maximum"), with(key, json!([imax])), Want::Accepted);
                let over: Value = serde_json::from_str(&(imax as u128 + 1).to_string()).unwrap();
                probe(format!(".{key} item = maximum + 1"), with(key, json!([over])), Want::Rejected);
                probe(format!(".{key} item = minimum - 1"), with(key, json!([imin as i64 - 1])), Want::Rejected);
            }
            Some("boolean") => {
                probe(format!(".{key} = true"), with(key, json!(true)), Want::Accepted);
                probe(format!(".{key} = false"), with(key, json!(false)), Want::Accepted);
                probe(format!(".{key} = \"yes\""), with(key, json!("yes")), Want::Rejected);
                probe(format!(".{key} = 1"), with(key, json!(1)), Want::Rejected);
            }
            Some("object") => {
                template_probes(&prop, key, &mut |what, v, want| probe(what, with(key, v), want), covered, &label);
            }
            other => panic!("{label}: body.{key} of type {other:?}: cannot probe"),
        }
    }
    probes
}

/// A template: an object whose values are objects one level shallower, down to
/// `maxProperties: 0`; its keys are type names; `x-max-association-types` over all levels.
fn template_probes(
    schema: &Value,
    key: &str,
    probe: &mut dyn FnMut(String, Value, Want),
    covered: &mut BTreeSet<String>,
    label: &str,
) {
    // The depth the schema allows: levels until `maxProperties: 0`.
    let mut depth = 0;
    let mut level = schema.clone();
    while level["maxProperties"] != 0 {
        let unknown = unknown_keywords(&level);
        assert!(unknown.is_empty(), "{label}: body.{key} at depth {depth}: cannot probe {unknown:?}");
        assert!(level["additionalProperties"].is_object(), "{label}: body.{key}: a level without a deeper one");
        level = level["additionalProperties"].clone();
        depth += 1;
        assert!(depth < 100, "{label}: body.{key}: no bottom");
    }
    covered.insert(format!("{label} body.{key} depth"));
    let nested = |n: usize| {
        let mut t = json!({});
        for _ in 0..n {
            t = json!({ "friend": t });
        }
        t
    };
    probe(format!(".{key} {depth} deep"), nested(depth), Want::Accepted);
    probe(format!(".{key} {} deep", depth + 1), nested(depth + 1), Want::Rejected);

    let fan_out = schema["maxProperties"].as_u64().expect("a template level states maxProperties") as usize;
    covered.insert(format!("{label} body.{key} maxProperties"));
    let wide = |n: usize| Value::Object((0..n).map(|i| (format!("t{i}"), json!({}))).collect::<Map<_, _>>());
    probe(format!(".{key} with maxProperties {fan_out} types"), wide(fan_out), Want::Accepted);
    probe(format!(".{key} with {} types", fan_out + 1), wide(fan_out + 1), Want::Rejected);

    let names = &schema["propertyNames"];
    let re = regex::Regex::new(names["pattern"].as_str().unwrap()).unwrap();
    let max_len = names["maxLength"].as_u64().unwrap() as usize;
    let min_len = names["minLength"].as_u64().unwrap() as usize;
    covered.insert(format!("{label} body.{key} propertyNames"));
    let one = |name: &str| json!({ name: {} });
    probe(format!(".{key} name of maxLength"), one(&"a".repeat(max_len)), Want::Accepted);
    probe(format!(".{key} name of maxLength + 1"), one(&"a".repeat(max_len + 1)), Want::Rejected);
    if min_len > 0 {
        probe(format!(".{key} empty name"), one(""), Want::Rejected);
    }
    for s in PATTERN_CORPUS {
        let n = s.chars().count();
        if n >= min_len.max(1) && n <= max_len {
            let want = if re.is_match(s) { Want::Accepted } else { Want::Rejected };
            probe(format!(".{key} name {s:?} vs the pattern"), one(s), want);
            // The same deeper down.
            probe(format!(".{key} nested name {s:?} vs the pattern"), json!({ "friend": one(s) }), want);
        }
    }

    // The bound over all levels: `total` types over two levels.
    let total = schema["x-max-association-types"].as_u64().expect("x-max-association-types") as usize;
    covered.insert(format!("{label} body.{key} x-max-association-types"));
    let spread = |n: usize| {
        // n/2 parents with one child each, plus one leaf when n is odd.
        let mut t = Map::new();
        for i in 0..n / 2 {
            t.insert(format!("p{i}"), json!({ "c": {} }));
        }
        if n % 2 == 1 {
            t.insert("leaf".into(), json!({}));
        }
        Value::Object(t)
    };
    probe(format!(".{key} with {total} types over two levels"), spread(total), Want::Accepted);
    probe(format!(".{key} with {} types over two levels", total + 1), spread(total + 1), Want::Rejected);
}

async fn run(app: &Router, contract: &Contract, probes: Vec<Probe>) -> Vec<String> {
    let mut failures = Vec::new();
    // A few at a time: each accepted probe waits out the missing leader.
    for chunk in probes.chunks(32) {
        let replies = futures::future::join_all(chunk.iter().map(|p| p.call.send(app))).await;
        for (probe, reply) in chunk.iter().zip(replies) {
            let ok = match probe.want {
                Want::Accepted => !matches!(reply.status.as_u16(), 400 | 413 | 415),
                Want::Rejected => reply.status == 400,
                Want::TooLarge => reply.status == 413,
            };
            if !ok {
                failures.push(format!(
                    "{}: want {:?}, got {} {}",
                    probe.what,
                    probe.want,
                    reply.status,
                    String::from_utf8_lossy(&reply.body).chars().take(160).collect::<String>()
                ));
                continue;
            }
            if probe.want != Want::Accepted {
                let code = reply.error_code();
                let want: &[&str] = if probe.want == Want::TooLarge {
                    &["payload_too_large"]
                } else {
                    &["bad_request", "invalid_json"]
                };
                assert!(want.contains(&code.as_str()), "{}: {code}", probe.what);
            }
            contract.check(&reply);
        }
    }
    failures
}

#[tokio::test]
async fn every_documented_constraint_is_enforced_exactly() {
    let (state, app, _bus, _m) = offline_gateway("constraints", WAIT).await;
    // The document this gateway serves (it states this gateway's body limit).
    let served = Call::get("/api/openapi.json").send(&app).await.expect(200).json();
    let contract = Contract { doc: served };
    assert_eq!(
        contract.doc["paths"]["/api/query"]["post"]["requestBody"]["x-max-body-bytes"], state.config.body_limit,
        "the served document states this gateway's BODY_LIMIT"
    );

    let mut probes = Vec::new();
    let mut covered = BTreeSet::new();
    let mut operations = 0;
    for (method, template) in contract.operations() {
        let op = Operation {
            method: Method::from_bytes(method.as_bytes()).unwrap(),
            template: template.clone(),
            op: contract.doc["paths"][&template][method.to_lowercase()].clone(),
        };
        if op.op["responses"].get("101").is_some() {
            // A websocket handshake needs a connection to upgrade; its headers (no bounds)
            // are checked in api.rs with a websocket client.
            let headers: Vec<Value> = op.parameters().into_iter().filter(|p| p["in"] == "header").collect();
            assert_eq!(headers.len(), op.parameters().len(), "{}: only headers", op.label());
            continue;
        }
        // The baseline itself gets past validation.
        if op.op.get("parameters").is_some() || op.op.get("requestBody").is_some() {
            operations += 1;
            probes.push(Probe {
                what: format!("{}: baseline", op.label()),
                call: op.call(&contract, &[], None),
                want: Want::Accepted,
            });
        }
        for param in op.parameters() {
            probes.extend(parameter_probes(&contract, &op, &param, &mut covered));
        }
        probes.extend(body_probes(&contract, &op, &mut covered));
    }
    assert!(operations >= 12, "only {operations} operations with input");
    let count = probes.len();
    let failures = run(&app, &contract, probes).await;
    assert!(failures.is_empty(), "{} of {count} probes failed:\n{}", failures.len(), failures.join("\n"));

    // What must have been probed (the walker found each of these in the document).
    for must in [
        "POST /api/entities/{entity} entity pattern",
        "POST /api/entities/{entity} entity maxLength",
        "GET /api/entities/{entity} entity maximum",
        "GET /api/entities ids maxItems",
        "GET /api/entities consistency enum",
        "GET /api/entities min_seq maximum",
        "GET /api/entities/{id}/associations/{type} limit maximum",
        "GET /api/entities/{id}/associations/{type} offset maximum",
        "GET /api/timeline/{user_id} limit minimum",
        "GET /api/random/{type} count maximum",
        "PUT /api/cluster/nodes/{id}/unplugged id pattern",
        "PUT /api/cluster/nodes/{id}/unplugged id maxLength",
        "POST /api/query body.entities maxItems",
        "POST /api/query body.template depth",
        "POST /api/query body.template maxProperties",
        "POST /api/query body.template propertyNames",
        "POST /api/query body.template x-max-association-types",
        "POST /api/query body additionalProperties",
        "POST /api/query body x-max-body-bytes",
        "PUT /api/entities/{from}/associations/{type}/{to} body x-max-body-bytes",
    ] {
        assert!(covered.contains(must), "not probed: {must}\nprobed: {covered:#?}");
    }
}

#[test]
fn the_bounds_in_the_document_are_the_shared_constants() {
    use instaface_bus::graph;
    let doc = instaface_gateway::openapi::document();
    let param = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path}: no {name}"))["schema"]
            .clone()
    };
    let list = "/api/entities/{id}/associations/{type}";
    assert_eq!(param(list, "get", "limit")["maximum"], graph::MAX_ASSOC_LIMIT);
    assert_eq!(param(list, "get", "offset")["maximum"], graph::MAX_ASSOC_OFFSET);
    assert_eq!(param(list, "get", "type")["maxLength"], graph::MAX_TYPE_NAME_LEN);
    assert_eq!(param(list, "get", "type")["pattern"], graph::TYPE_NAME_PATTERN);
    assert_eq!(param("/api/timeline/{user_id}", "get", "limit")["maximum"], graph::MAX_TIMELINE_LIMIT);
    assert_eq!(param("/api/random/{type}", "get", "count")["maximum"], graph::MAX_RANDOM_COUNT);
    assert_eq!(param("/api/entities", "get", "ids")["maxItems"], graph::MAX_IDS_PER_READ);
    let query = &doc["components"]["schemas"]["QueryRequest"];
    assert_eq!(query["properties"]["entities"]["maxItems"], graph::MAX_IDS_PER_READ);
    let template = &doc["components"]["schemas"]["Template"];
    assert_eq!(template["x-max-association-types"], graph::MAX_TEMPLATE_TYPES);
    assert_eq!(template["maxProperties"], graph::MAX_TEMPLATE_TYPES);
    let mut depth = 0;
    let mut level = template.clone();
    while level["maxProperties"] != 0 {
        level = level["additionalProperties"].clone();
        depth += 1;
    }
    assert_eq!(depth, graph::MAX_TEMPLATE_DEPTH);
}

#[test]
fn every_documented_error_uses_the_shared_error_schema() {
    let doc = instaface_gateway::openapi::document();
    let mut errors = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorResponse",
                        "{method} {path} {status}"
                    );
                    errors += 1;
                }
                if status == "503" {
                    assert!(response["headers"]["Retry-After"].is_object(), "{method} {path}: 503 without Retry-After");
                }
            }
        }
    }
    assert!(errors > 50, "{errors}");
}

proptest! {
    /// The patterns in the document agree with the validators, on strings of the characters
    /// that matter (and some that do not).
    #[test]
    fn the_documented_patterns_are_the_validators(s in "[a-zA-Z0-9_.\\- é/]{0,70}") {
        use instaface_bus::graph;
        let type_re = regex::Regex::new(graph::TYPE_NAME_PATTERN).unwrap();
        let n = s.chars().count();
        let documented = (1..=graph::MAX_TYPE_NAME_LEN).contains(&n) && type_re.is_match(&s);
        prop_assert_eq!(documented, graph::valid_type_name(&s), "type name {:?}", s);

        let node_re = regex::Regex::new(instaface_gateway::bounds::NODE_ID_PATTERN).unwrap();
        let documented = (1..=instaface_gateway::bounds::MAX_NODE_ID_LEN).contains(&n) && node_re.is_match(&s);
        prop_assert_eq!(documented, instaface_bus::valid_node_id(&s), "node id {:?}", s);
    }
}
