//! Test support: calling the router without a socket, a gateway state on a prefix of its
//! own, the OpenAPI contract checker, and the table of bad inputs every route must answer
//! with a JSON 4xx.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use instaface_bus::config::BusArgs;
use instaface_bus::graph_client::ClientConfig;
use instaface_bus::membership::Membership;
use instaface_bus::{Bus, Subjects};
use instaface_gateway::config::GatewayConfig;
use instaface_gateway::AppState;
use serde_json::Value;
use tower::ServiceExt;

/// What the gateway answered.
#[derive(Debug, Clone)]
pub struct Reply {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{} {}: body is not JSON ({e}): {:?}", self.method, self.path, String::from_utf8_lossy(&self.body))
        })
    }

    /// The `X-Instaface-Seq` header.
    pub fn seq(&self) -> Option<u64> {
        self.headers.get("x-instaface-seq").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error code of a JSON error body.
    pub fn error_code(&self) -> String {
        let v = self.json();
        let code = v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{} {}: not an error body: {v}", self.method, self.path));
        assert!(
            v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{} {}: no message: {v}",
            self.method,
            self.path
        );
        code.to_string()
    }

    /// Fails unless the status is `want`.
    pub fn expect(self, want: u16) -> Reply {
        assert_eq!(
            self.status.as_u16(),
            want,
            "{} {} answered {}: {}",
            self.method,
            self.path,
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// The client address the router sees (`ConnectInfo`), as a served connection would
    /// give it; `None`: none, as with the router driven directly.
    pub peer: Option<SocketAddr>,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>) -> Call {
        Call { method, path: path.into(), headers: Vec::new(), body: None, peer: None }
    }
    /// Sends it as if from `peer` (`"127.0.0.1:5000"`, `"[::1]:5000"`, …).
    pub fn peer_addr(mut self, peer: &str) -> Call {
        self.peer = Some(peer.parse().expect("a socket address"));
        self
    }
    pub fn get(path: impl Into<String>) -> Call {
        Call::new(Method::GET, path)
    }
    pub fn delete(path: impl Into<String>) -> Call {
        Call::new(Method::DELETE, path)
    }
    /// A JSON body with its content type.
    pub fn json(mut self, body: Value) -> Call {
        self.body = Some(serde_json::to_vec(&body).unwrap());
        self.header("content-type", "application/json")
    }
    /// A raw body (no content type unless added).
    pub fn raw(mut self, body: impl Into<Vec<u8>>) -> Call {
        self.body = Some(body.into());
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn bearer(self, token: &str) -> Call {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Sends it through the router, without a socket.
    pub async fn send(&self, app: &Router) -> Reply {
        let mut req = Request::builder().method(self.method.clone()).uri(&self.path);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let mut req = req.body(self.body.clone().map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        let response = app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap();
        Reply { method: self.method.clone(), path: self.path.clone(), status, headers, body }
    }

    /// Sends it to a gateway listening at `base` (`http://127.0.0.1:port`).
    pub async fn send_http(&self, http: &reqwest::Client, base: &str) -> Result<Reply, reqwest::Error> {
        let method = reqwest::Method::from_bytes(self.method.as_str().as_bytes()).unwrap();
        let mut req = http.request(method, format!("{base}{}", self.path));
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        let response = req.send().await?;
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let mut headers = HeaderMap::new();
        for (k, v) in response.headers() {
            headers.insert(
                axum::http::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
                axum::http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        let body = response.bytes().await?;
        Ok(Reply {
            method: self.method.clone(),
            path: self.path.clone(),
            status,
            headers,
            body: Bytes::from(body.to_vec()),
        })
    }
}

/// A prefix no other test uses.
pub fn unique_prefix(name: &str) -> String {
    format!("tgw{:08x}.{name}", rand_u32())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.finish() as u32
}

/// Connects to the local NATS for `prefix` and waits for the connection.
pub async fn bus(prefix: &str) -> Bus {
    let bus = Bus::connect(&BusArgs::local(prefix), "gateway-test").await.expect("nats");
    instaface_testkit::wait_until(Duration::from_secs(10), "the NATS connection", || bus.is_connected()).await;
    bus
}

/// The token the tests configure.
pub const TOKEN: &str = "s3cret-token";

/// The configuration the tests use: a token, a small body limit, quick polls.
pub fn test_config() -> GatewayConfig {
    GatewayConfig {
        admin_token: Some(TOKEN.into()),
        body_limit: 16 * 1024,
        cluster_poll: Duration::from_millis(200),
        membership_poll: Duration::from_millis(200),
        status_timeout: Duration::from_millis(300),
        redis_url: Some("redis://127.0.0.1:6379".into()),
        ..GatewayConfig::default()
    }
}

/// A gateway on a prefix where no node runs, with members `n1…n3` in Redis: every call that
/// reaches the bus ends in "no leader" after `wait`.
pub async fn offline_gateway(name: &str, wait: Duration) -> (AppState, Router, Bus, Membership) {
    offline_gateway_with(name, wait, test_config()).await
}

/// [`offline_gateway`] with another configuration.
pub async fn offline_gateway_with(
    name: &str,
    wait: Duration,
    config: GatewayConfig,
) -> (AppState, Router, Bus, Membership) {
    let prefix = unique_prefix(name);
    let bus = bus(&prefix).await;
    let membership =
        Membership::connect("redis://127.0.0.1:6379", &Subjects::new(prefix.clone())).await.expect("redis");
    membership.ensure(&["n1".into(), "n2".into(), "n3".into()], "test").await.expect("members");
    let state = AppState::start(
        bus.clone(),
        ClientConfig { request_timeout: wait, deadline: wait, ..ClientConfig::default() },
        config,
    )
    .await
    .expect("gateway state");
    let app = instaface_gateway::app(state.clone());
    (state, app, bus, membership)
}

// ---- the OpenAPI contract ----

/// The OpenAPI document, and checks of replies against it.
pub struct Contract {
    pub doc: Value,
}

impl Contract {
    pub fn load() -> Contract {
        Contract { doc: instaface_gateway::openapi::document() }
    }

    /// Every (method, path template) the document lists.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()) {
                    out.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        out.sort();
        out
    }

    /// The template of the operation that serves `method path` (query string ignored).
    pub fn template_for(&self, method: &Method, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap();
        let segments: Vec<&str> = path.split('/').collect();
        let method = method.as_str().to_lowercase();
        self.doc["paths"].as_object().unwrap().iter().find_map(|(template, item)| {
            let t: Vec<&str> = template.split('/').collect();
            let matches = t.len() == segments.len()
                && t.iter().zip(&segments).all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s);
            (matches && item.get(&method).is_some()).then(|| template.clone())
        })
    }

    /// Checks a reply against the document: the operation exists, documents the status, the
    /// body validates against the documented schema, and documented headers are present.
    pub fn check(&self, reply: &Reply) {
        let what = format!("{} {} -> {}", reply.method, reply.path, reply.status);
        let template =
            self.template_for(&reply.method, &reply.path).unwrap_or_else(|| panic!("{what}: no such operation"));
        let op = &self.doc["paths"][&template][reply.method.as_str().to_lowercase()];
        let status = reply.status.as_str();
        let response = op["responses"].get(status).or_else(|| op["responses"].get("default")).unwrap_or_else(|| {
            panic!(
                "{what}: status not documented for {template} (documented: {:?})",
                op["responses"].as_object().unwrap().keys()
            )
        });
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for name in headers.keys() {
                assert!(
                    reply.headers.contains_key(name.to_lowercase().as_str()),
                    "{what}: documented header {name} missing"
                );
            }
        }
        match response.get("content").and_then(|c| c.get("application/json")).and_then(|c| c.get("schema")) {
            Some(schema) => {
                let body = reply.json();
                if let Err(e) = self.validate(&body, schema, "$") {
                    panic!("{what}: body does not match the schema: {e}\nbody: {body}");
                }
            }
            None if reply.status == StatusCode::NO_CONTENT => assert!(reply.body.is_empty(), "{what}: 204 with a body"),
            None => {}
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
                let target = &self.doc["components"]["schemas"][name];
                assert!(!target.is_null(), "dangling $ref {r}");
                self.resolve(target)
            }
            None => schema,
        }
    }

    /// A JSON Schema check covering what utoipa emits: `$ref`, `type` (also as a list),
    /// `properties`, `required`, `additionalProperties`, `items`, `enum`, `oneOf`,
    /// `anyOf`, `allOf`, `minimum`.
    pub fn validate(&self, value: &Value, schema: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.validate(value, s, at)?;
            }
        }
        if let Some(any) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
            let ok = any.iter().filter(|s| self.validate(value, s, at).is_ok()).count();
            let one = schema.get("oneOf").is_some();
            if ok == 0 || (one && ok > 1) {
                return Err(format!("{at}: {value} matches {ok} of the alternatives"));
            }
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            if !values.contains(value) {
                return Err(format!("{at}: {value} not in {values:?}"));
            }
        }
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let fits = types.iter().any(|t| match *t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "null" => value.is_null(),
                _ => false,
            });
            if !fits {
                return Err(format!("{at}: {value} is not of type {types:?}"));
            }
        }
        if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64()) {
            if n < min {
                return Err(format!("{at}: {n} < minimum {min}"));
            }
        }
        if let Some(obj) = value.as_object() {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(r) {
                        return Err(format!("{at}: required field {r:?} missing"));
                    }
                }
            }
            for (k, v) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => self.validate(v, s, &format!("{at}.{k}"))?,
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => return Err(format!("{at}: unexpected field {k:?}")),
                        Some(s @ Value::Object(_)) => self.validate(v, s, &format!("{at}.{k}"))?,
                        _ => {}
                    },
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
            for (i, v) in arr.iter().enumerate() {
                self.validate(v, items, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }
}

// ---- bad inputs ----

/// One bad request and what it must be answered with.
pub struct BadInput {
    pub call: Call,
    pub status: u16,
    pub code: &'static str,
}

fn bad(call: Call, status: u16, code: &'static str) -> BadInput {
    BadInput { call, status, code }
}

/// Bad inputs for every route. `id` is an existing entity where one is needed (any id on a
/// gateway without nodes: these are all refused before reaching the bus); `body_limit` is
/// the configured limit.
pub fn bad_inputs(id: u64, body_limit: usize) -> Vec<BadInput> {
    use Method as M;
    let too_big = serde_json::json!({ "blob": "x".repeat(body_limit + 1) });
    let many_ids = (1..=1001).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let deep = |n: usize| {
        let mut t = serde_json::json!({});
        for _ in 0..n {
            t = serde_json::json!({ "friend": t });
        }
        t
    };
    let ok = serde_json::json!({ "unplugged": true });
    let assoc = format!("/api/entities/{id}/associations/friend/{id}");
    vec![
        // POST /api/entities/{type}
        bad(Call::new(M::POST, "/api/entities/User").json(serde_json::json!({})), 400, "bad_request"),
        bad(Call::new(M::POST, "/api/entities/1user").json(serde_json::json!({})), 400, "bad_request"),
        bad(Call::new(M::POST, "/api/entities/a-b").json(serde_json::json!({})), 400, "bad_request"),
        bad(
            Call::new(M::POST, format!("/api/entities/{}", "a".repeat(33))).json(serde_json::json!({})),
            400,
            "bad_request",
        ),
        bad(Call::new(M::POST, "/api/entities/user").json(serde_json::json!([1, 2])), 400, "invalid_json"),
        bad(Call::new(M::POST, "/api/entities/user").json(serde_json::json!("text")), 400, "invalid_json"),
        bad(
            Call::new(M::POST, "/api/entities/user").raw("{\"name\":").header("content-type", "application/json"),
            400,
            "invalid_json",
        ),
        bad(Call::new(M::POST, "/api/entities/user").raw("{}"), 415, "unsupported_media_type"),
        bad(
            Call::new(M::POST, "/api/entities/user").raw("{}").header("content-type", "text/plain"),
            415,
            "unsupported_media_type",
        ),
        bad(Call::new(M::POST, "/api/entities/user").json(too_big.clone()), 413, "payload_too_large"),
        bad(Call::new(M::POST, "/api/entities/%FF").json(serde_json::json!({})), 400, "bad_request"),
        bad(Call::new(M::POST, "/api/entities/%C3%A9t%C3%A9").json(serde_json::json!({})), 400, "bad_request"),
        bad(Call::new(M::POST, "/api/entities/user").json(deep_value(300)), 400, "invalid_json"),
        // GET /api/entities/{id}
        bad(Call::get("/api/entities/abc"), 400, "bad_request"),
        bad(Call::get("/api/entities/%FF"), 400, "bad_request"),
        bad(Call::get("/api/entities/%20"), 400, "bad_request"),
        bad(Call::get("/api/entities/-1"), 400, "bad_request"),
        bad(Call::get("/api/entities/1.5"), 400, "bad_request"),
        bad(Call::get("/api/entities/18446744073709551616"), 400, "bad_request"),
        bad(Call::get(format!("/api/entities/{id}?consistency=bogus")), 400, "bad_request"),
        bad(Call::get(format!("/api/entities/{id}?min_seq=soon")), 400, "bad_request"),
        bad(Call::get(format!("/api/entities/{id}?min_seq=-3")), 400, "bad_request"),
        // GET /api/entities?ids=
        bad(Call::get("/api/entities"), 400, "bad_request"),
        bad(Call::get("/api/entities?ids="), 400, "bad_request"),
        bad(Call::get("/api/entities?ids=1,x"), 400, "bad_request"),
        bad(Call::get("/api/entities?ids=1,,2"), 400, "bad_request"),
        bad(Call::get("/api/entities?ids=%FF"), 400, "bad_request"),
        bad(Call::get(format!("/api/entities?ids={many_ids}")), 400, "bad_request"),
        bad(Call::get(format!("/api/entities?ids={id}&consistency=STRONG")), 400, "bad_request"),
        // PATCH /api/entities/{id}
        bad(Call::new(M::PATCH, "/api/entities/abc").json(serde_json::json!({})), 400, "bad_request"),
        bad(Call::new(M::PATCH, format!("/api/entities/{id}")).json(serde_json::json!([])), 400, "invalid_json"),
        bad(Call::new(M::PATCH, format!("/api/entities/{id}")).json(serde_json::json!(null)), 400, "invalid_json"),
        bad(
            Call::new(M::PATCH, format!("/api/entities/{id}"))
                .raw("not json")
                .header("content-type", "application/json"),
            400,
            "invalid_json",
        ),
        bad(Call::new(M::PATCH, format!("/api/entities/{id}")).json(too_big.clone()), 413, "payload_too_large"),
        // DELETE /api/entities/{id}
        bad(Call::delete("/api/entities/abc"), 400, "bad_request"),
        bad(Call::delete("/api/entities/-7"), 400, "bad_request"),
        // PUT / DELETE /api/entities/{from}/associations/{type}/{to}
        bad(Call::new(M::PUT, format!("/api/entities/x/associations/friend/{id}")), 400, "bad_request"),
        bad(Call::new(M::PUT, format!("/api/entities/{id}/associations/friend/y")), 400, "bad_request"),
        bad(Call::new(M::PUT, format!("/api/entities/{id}/associations/Friend/{id}")), 400, "bad_request"),
        bad(Call::new(M::PUT, format!("/api/entities/{id}/associations/fr%20iend/{id}")), 400, "bad_request"),
        bad(Call::new(M::PUT, assoc.clone()).json(serde_json::json!([1])), 400, "invalid_json"),
        bad(
            Call::new(M::PUT, assoc.clone()).raw("{oops").header("content-type", "application/json"),
            400,
            "invalid_json",
        ),
        bad(
            Call::new(M::PUT, assoc.clone()).raw("{}").header("content-type", "text/plain"),
            415,
            "unsupported_media_type",
        ),
        bad(Call::new(M::PUT, assoc.clone()).json(too_big.clone()), 413, "payload_too_large"),
        bad(Call::delete(format!("/api/entities/{id}/associations/bad-type/{id}")), 400, "bad_request"),
        bad(Call::delete(format!("/api/entities/{id}/associations/friend/-1")), 400, "bad_request"),
        // GET /api/entities/{id}/associations/{type}
        bad(Call::get("/api/entities/z/associations/friend"), 400, "bad_request"),
        bad(Call::get(format!("/api/entities/{id}/associations/FRIEND")), 400, "bad_request"),
        bad(Call::get(format!("/api/entities/{id}/associations/friend?limit=1001")), 400, "bad_request"),
        bad(Call::get(format!("/api/entities/{id}/associations/friend?limit=-1")), 400, "bad_request"),
        bad(Call::get(format!("/api/entities/{id}/associations/friend?offset=x")), 400, "bad_request"),
        bad(
            Call::get(format!(
                "/api/entities/{id}/associations/friend?offset={}",
                instaface_bus::graph::MAX_ASSOC_OFFSET + 1
            )),
            400,
            "bad_request",
        ),
        bad(Call::get(format!("/api/entities/{id}/associations/friend?offset=4294967295")), 400, "bad_request"),
        bad(Call::get(format!("/api/entities/{id}/associations/friend?offset=4294967296")), 400, "bad_request"),
        bad(Call::get(format!("/api/entities/{id}/associations/friend?consistency=weak")), 400, "bad_request"),
        // POST /api/query
        bad(Call::new(M::POST, "/api/query").json(serde_json::json!({})), 400, "invalid_json"),
        bad(Call::new(M::POST, "/api/query").json(serde_json::json!({ "entities": [] })), 400, "bad_request"),
        bad(Call::new(M::POST, "/api/query").json(serde_json::json!({ "entities": ["a"] })), 400, "invalid_json"),
        bad(
            Call::new(M::POST, "/api/query").json(serde_json::json!({ "entities": [id], "template": { "Bad": {} } })),
            400,
            "bad_request",
        ),
        bad(
            Call::new(M::POST, "/api/query").json(serde_json::json!({ "entities": [id], "template": { "friend": 3 } })),
            400,
            "invalid_json",
        ),
        bad(
            Call::new(M::POST, "/api/query").json(serde_json::json!({ "entities": [id], "template": { "": {} } })),
            400,
            "bad_request",
        ),
        bad(
            Call::new(M::POST, "/api/query")
                .json(serde_json::json!({ "entities": [id], "template": { "friend": { "Likes": {} } } })),
            400,
            "bad_request",
        ),
        bad(Call::new(M::POST, "/api/query").json(serde_json::json!({ "entities": [-1] })), 400, "invalid_json"),
        bad(
            Call::new(M::POST, "/api/query").json(serde_json::json!({ "entities": [id], "extra": 1 })),
            400,
            "invalid_json",
        ),
        bad(
            Call::new(M::POST, "/api/query").json(serde_json::json!({ "entities": [id], "template": deep(7) })),
            400,
            "bad_request",
        ),
        bad(
            Call::new(M::POST, "/api/query").json(serde_json::json!({ "entities": [id], "template": deep(300) })),
            400,
            "invalid_json",
        ),
        bad(
            Call::new(M::POST, "/api/query").json(serde_json::json!({ "entities": (1..=1001).collect::<Vec<u64>>() })),
            400,
            "bad_request",
        ),
        bad(Call::new(M::POST, "/api/query").raw("{\"entities\":[1]}"), 415, "unsupported_media_type"),
        // GET /api/timeline/{user_id}
        bad(Call::get("/api/timeline/abc"), 400, "bad_request"),
        bad(Call::get(format!("/api/timeline/{id}?limit=0")), 400, "bad_request"),
        bad(Call::get(format!("/api/timeline/{id}?limit=5000")), 400, "bad_request"),
        // GET /api/random/{type}
        bad(Call::get("/api/random/User"), 400, "bad_request"),
        bad(Call::get("/api/random/user?count=0"), 400, "bad_request"),
        bad(Call::get("/api/random/user?count=abc"), 400, "bad_request"),
        bad(Call::get("/api/random/user?count=100000"), 400, "bad_request"),
        // PUT /api/cluster/nodes/{id}/unplugged
        bad(Call::new(M::PUT, "/api/cluster/nodes/n1/unplugged").json(ok.clone()), 401, "unauthorized"),
        bad(
            Call::new(M::PUT, "/api/cluster/nodes/n1/unplugged")
                .json(ok.clone())
                .header("authorization", "Basic czNjcmV0"),
            401,
            "unauthorized",
        ),
        bad(Call::new(M::PUT, "/api/cluster/nodes/n1/unplugged").json(ok.clone()).bearer("wrong"), 403, "forbidden"),
        bad(Call::new(M::PUT, "/api/cluster/nodes/n9/unplugged").json(ok.clone()).bearer(TOKEN), 404, "not_found"),
        bad(
            Call::new(M::PUT, "/api/cluster/nodes/bad.id/unplugged").json(ok.clone()).bearer(TOKEN),
            400,
            "bad_request",
        ),
        bad(Call::new(M::PUT, "/api/cluster/nodes/%FF/unplugged").json(ok.clone()).bearer(TOKEN), 400, "bad_request"),
        bad(
            Call::new(M::PUT, "/api/cluster/nodes/n1/unplugged")
                .json(serde_json::json!({ "unplugged": true, "extra": 1 }))
                .bearer(TOKEN),
            400,
            "invalid_json",
        ),
        bad(
            Call::new(M::PUT, "/api/cluster/nodes/n1/unplugged")
                .json(serde_json::json!({ "unplugged": "yes" }))
                .bearer(TOKEN),
            400,
            "invalid_json",
        ),
        bad(
            Call::new(M::PUT, "/api/cluster/nodes/n1/unplugged").json(serde_json::json!({})).bearer(TOKEN),
            400,
            "invalid_json",
        ),
        bad(
            Call::new(M::PUT, "/api/cluster/nodes/n1/unplugged")
                .json(serde_json::json!({ "clients": true }))
                .bearer(TOKEN),
            400,
            "invalid_json",
        ),
        bad(
            Call::new(M::PUT, "/api/cluster/nodes/n1/unplugged")
                .json(serde_json::json!({ "unplugged": true, "clients": "yes" }))
                .bearer(TOKEN),
            400,
            "invalid_json",
        ),
        bad(
            Call::new(M::PUT, "/api/cluster/nodes/n1/unplugged")
                .json(serde_json::json!({ "unplugged": true, "clients": 1 }))
                .bearer(TOKEN),
            400,
            "invalid_json",
        ),
        bad(
            Call::new(M::PUT, "/api/cluster/nodes/n1/unplugged")
                .json(serde_json::json!({ "unplugged": true, "clients": null }))
                .bearer(TOKEN),
            400,
            "invalid_json",
        ),
        bad(
            Call::new(M::PUT, "/api/cluster/nodes/n9/unplugged")
                .json(serde_json::json!({ "unplugged": true, "clients": true }))
                .bearer(TOKEN),
            404,
            "not_found",
        ),
        bad(Call::new(M::PUT, "/api/cluster/nodes/n1/unplugged").bearer(TOKEN), 415, "unsupported_media_type"),
        // GET /api/events without an upgrade
        bad(Call::get("/api/events"), 400, "bad_request"),
        // No such route, no such method.
        bad(Call::get("/api/nope"), 404, "not_found"),
        bad(Call::get("/api/entities/1/nope"), 404, "not_found"),
        bad(Call::new(M::POST, "/api/cluster"), 405, "method_not_allowed"),
        bad(Call::get("/api/cluster/nodes/n1/unplugged"), 405, "method_not_allowed"),
        bad(Call::new(M::POST, "/healthz"), 405, "method_not_allowed"),
        bad(Call::delete("/api/entities"), 405, "method_not_allowed"),
    ]
}

/// An array nested `n` deep.
fn deep_value(n: usize) -> Value {
    let mut v = serde_json::json!(1);
    for _ in 0..n {
        v = serde_json::json!([v]);
    }
    serde_json::json!({ "deep": v })
}

/// Sends every bad input through `send` and checks each answer: the right 4xx, a JSON error
/// with the right code, and (for documented routes) a status the document lists.
pub async fn check_bad_inputs<F, Fut>(contract: &Contract, inputs: Vec<BadInput>, mut send: F)
where
    F: FnMut(Call) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let mut failures = Vec::new();
    for input in inputs {
        let reply = send(input.call.clone()).await;
        let ok_status = reply.status.as_u16() == input.status;
        let is_json = reply.header("content-type").is_some_and(|c| c.starts_with("application/json"));
        let code = if is_json {
            serde_json::from_slice::<Value>(&reply.body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(String::from))
        } else {
            None
        };
        if !ok_status || code.as_deref() != Some(input.code) {
            failures.push(format!(
                "{} {}: want {} {}, got {} {}",
                input.call.method,
                input.call.path.chars().take(100).collect::<String>(),
                input.status,
                input.code,
                reply.status,
                String::from_utf8_lossy(&reply.body).chars().take(200).collect::<String>()
            ));
            continue;
        }
        assert!(!reply.status.is_server_error());
        if ![404, 405].contains(&input.status) {
            contract.check(&reply);
        }
    }
    assert!(failures.is_empty(), "{} bad inputs answered wrongly:\n{}", failures.len(), failures.join("\n"));
}
