//! The gateway without a cluster: a prefix where no node runs (NATS and Redis are real, the
//! HTTP side goes through `tower::ServiceExt::oneshot` except for the websocket). Covers
//! input validation and the error shape on every route, 503 without a leader, the OpenAPI
//! document, metrics, health, the monitor UI, the event feed and the unplug command.

mod common;

use std::time::Duration;

use axum::http::Method;
use common::*;
use futures::StreamExt;
use instaface_bus::messages::{CandidacyState, Event, EventKind, Unplug};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WAIT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn bad_inputs_on_every_route_are_json_4xx() {
    let (state, app, _bus, _m) = offline_gateway("bad-inputs", WAIT).await;
    let contract = Contract::load();
    check_bad_inputs(&contract, bad_inputs(1, state.config.body_limit), |call| {
        let app = app.clone();
        async move { call.send(&app).await }
    })
    .await;
}

#[tokio::test]
async fn without_a_leader_calls_answer_503_with_retry_after() {
    let (_state, app, _bus, _m) = offline_gateway("no-leader", WAIT).await;
    let contract = Contract::load();
    let calls = [
        Call::new(Method::POST, "/api/entities/user").json(json!({ "name": "ada" })),
        Call::get("/api/entities/1"),
        Call::get("/api/entities/1?consistency=strong"),
        Call::get("/api/entities/1?min_seq=5"),
        Call::get("/api/entities?ids=1,2"),
        Call::new(Method::PATCH, "/api/entities/1").json(json!({ "name": null })),
        Call::delete("/api/entities/1"),
        Call::new(Method::PUT, "/api/entities/1/associations/friend/2"),
        Call::delete("/api/entities/1/associations/friend/2"),
        Call::get("/api/entities/1/associations/friend?limit=10&offset=5"),
        Call::new(Method::POST, "/api/query").json(json!({ "entities": [1], "template": { "friend": {} } })),
        Call::get("/api/timeline/1?limit=5"),
        Call::get("/api/random/user?count=3"),
    ];
    for call in calls {
        let started = std::time::Instant::now();
        let reply = call.send(&app).await.expect(503);
        assert_eq!(reply.error_code(), "no_leader", "{} {}", call.method, call.path);
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert!(started.elapsed() < Duration::from_secs(5), "the wait for a leader is bounded");
        contract.check(&reply);
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_with_resolvable_schemas() {
    let contract = Contract::load();
    let want: Vec<(String, String)> = [
        ("POST", "/api/entities/{type}"),
        ("GET", "/api/entities/{id}"),
        ("GET", "/api/entities"),
        ("PATCH", "/api/entities/{id}"),
        ("DELETE", "/api/entities/{id}"),
        ("PUT", "/api/entities/{from}/associations/{type}/{to}"),
        ("DELETE", "/api/entities/{from}/associations/{type}/{to}"),
        ("GET", "/api/entities/{id}/associations/{type}"),
        ("POST", "/api/query"),
        ("GET", "/api/timeline/{user_id}"),
        ("GET", "/api/random/{type}"),
        ("GET", "/api/cluster"),
        ("PUT", "/api/cluster/nodes/{id}/unplugged"),
        ("GET", "/api/events"),
        ("GET", "/api/openapi.json"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
        ("GET", "/"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(contract.operations(), want_sorted);

    // Operation ids are unique; every $ref resolves; the bodies have schemas.
    let mut ids = std::collections::BTreeSet::new();
    for (method, path) in &want {
        let op = &contract.doc["paths"][path][method.to_lowercase()];
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}: no responses");
    }
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&contract.doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(!contract.doc["components"]["schemas"][name].is_null(), "dangling $ref {r}");
    }
    let schemas = contract.doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Entity",
        "Association",
        "AssociationList",
        "QueryRequest",
        "QueryResponse",
        "ExpandedEntity",
        "Template",
        "QueryStats",
        "Timeline",
        "RandomIds",
        "ClusterOverview",
        "NodeOverview",
        "UnplugRequest",
        "ErrorResponse",
        "Health",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    assert!(contract.doc["components"]["securitySchemes"]["admin_token"].is_object());

    // A sample document validates against the schemas: the checker is not vacuous.
    let entity = json!({ "id": 1, "type": "user", "attributes": {}, "created": 1, "updated": 1, "version": 1 });
    let schema = json!({ "$ref": "#/components/schemas/Entity" });
    assert!(contract.validate(&entity, &schema, "$").is_ok());
    assert!(contract.validate(&json!({ "id": 1 }), &schema, "$").is_err());
    assert!(contract
        .validate(
            &json!({ "id": "1", "type": "user", "attributes": {}, "created": 1, "updated": 1, "version": 1 }),
            &schema,
            "$"
        )
        .is_err());
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let (_state, app, _bus, _m) = offline_gateway("served", WAIT).await;
    let contract = Contract::load();
    for (method, template) in contract.operations() {
        let path = template
            .replace("{type}", "user")
            .replace("{id}", if template.starts_with("/api/cluster") { "n1" } else { "1" })
            .replace("{from}", "1")
            .replace("{to}", "2")
            .replace("{user_id}", "1");
        let mut call = Call::new(Method::from_bytes(method.as_bytes()).unwrap(), path);
        if method == "PUT" && template.contains("unplugged") {
            call = call.json(json!({ "unplugged": false })).bearer(TOKEN);
        } else if ["POST", "PATCH"].contains(&method.as_str()) {
            call = call.json(if template == "/api/query" { json!({ "entities": [1] }) } else { json!({}) });
        }
        let reply = call.send(&app).await;
        let unrouted = reply.status == 405
            || (reply.status == 404
                && reply.json()["error"]["message"].as_str().is_some_and(|m| m.starts_with("no route")));
        assert!(!unrouted, "{method} {template}: {} {}", reply.status, String::from_utf8_lossy(&reply.body));
        if template != "/api/openapi.json" && template != "/" && template != "/metrics" {
            contract.check(&reply);
        }
    }
}

#[tokio::test]
async fn health_metrics_openapi_and_ui_are_served() {
    let (_state, app, _bus, _m) = offline_gateway("system", WAIT).await;
    let contract = Contract::load();

    let health = Call::get("/healthz").send(&app).await.expect(200);
    contract.check(&health);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["nats_connected"], true);

    let doc = Call::get("/api/openapi.json").send(&app).await.expect(200);
    assert_eq!(doc.header("content-type"), Some("application/json"));
    assert_eq!(doc.json(), contract.doc, "the served document is the generated one");

    // Requests are counted under their route template, not their path.
    Call::get("/api/entities/abc").send(&app).await.expect(400);
    Call::get("/api/entities/1?min_seq=x").send(&app).await.expect(400);
    let metrics = Call::get("/metrics").send(&app).await.expect(200);
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("instaface_gateway_http_requests_total{")
                && l.contains("route=\"/api/entities/{id}\"")
                && l.contains("status=\"400\"")
        })
        .unwrap_or_else(|| panic!("no request counter for the route template in:\n{text}"));
    assert!(line.ends_with(" 2"), "{line}");
    assert!(text.contains("instaface_gateway_http_request_duration_seconds_bucket{"));
    assert!(!text.contains("/api/entities/abc"));

    // The monitor UI: the page and every embedded file, with content types.
    let page = Call::get("/").send(&app).await.expect(200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&page.body).to_lowercase().contains("<html"));
    for path in instaface_gateway::ui::paths() {
        let reply = Call::get(format!("/{path}")).send(&app).await.expect(200);
        assert_eq!(reply.header("content-type"), Some(instaface_gateway::ui::content_type(path)), "{path}");
        assert!(!reply.body.is_empty(), "{path}");
    }
    if instaface_gateway::ui::paths().any(|p| p == "app.js") {
        let js = Call::get("/app.js").send(&app).await.expect(200);
        assert!(js.header("content-type").unwrap().starts_with("text/javascript"));
    }
    let missing = Call::get("/no-such-file.js").send(&app).await.expect(404);
    assert_eq!(missing.error_code(), "not_found");
}

#[tokio::test]
async fn unplug_publishes_the_command_for_members_only() {
    let (_state, app, bus, _m) = offline_gateway("unplug", WAIT).await;
    let contract = Contract::load();
    let mut commands = bus.subscribe::<Unplug>(bus.subjects().control_unplug()).await.unwrap();
    bus.flush().await.unwrap();

    let reply = Call::new(Method::PUT, "/api/cluster/nodes/n2/unplugged")
        .json(json!({ "unplugged": true }))
        .bearer(TOKEN)
        .send(&app)
        .await
        .expect(202);
    contract.check(&reply);
    // `clients` is optional: without it, the node is cut off from its peers only.
    assert_eq!(reply.json(), json!({ "node": "n2", "unplugged": true, "clients": false }));
    let msg = tokio::time::timeout(Duration::from_secs(5), commands.next()).await.expect("the command").unwrap();
    assert_eq!(msg.payload.unwrap(), Unplug { node: "n2".into(), unplugged: true, clients: false });

    // Total isolation: from clients too.
    let reply = Call::new(Method::PUT, "/api/cluster/nodes/n3/unplugged")
        .json(json!({ "unplugged": true, "clients": true }))
        .bearer(TOKEN)
        .send(&app)
        .await
        .expect(202);
    contract.check(&reply);
    assert_eq!(reply.json(), json!({ "node": "n3", "unplugged": true, "clients": true }));
    let msg = tokio::time::timeout(Duration::from_secs(5), commands.next()).await.expect("the command").unwrap();
    assert_eq!(msg.payload.unwrap(), Unplug { node: "n3".into(), unplugged: true, clients: true });

    // Explicitly peers only.
    let reply = Call::new(Method::PUT, "/api/cluster/nodes/n3/unplugged")
        .json(json!({ "unplugged": true, "clients": false }))
        .bearer(TOKEN)
        .send(&app)
        .await
        .expect(202);
    assert_eq!(reply.json(), json!({ "node": "n3", "unplugged": true, "clients": false }));
    let msg = tokio::time::timeout(Duration::from_secs(5), commands.next()).await.expect("the command").unwrap();
    assert_eq!(msg.payload.unwrap(), Unplug { node: "n3".into(), unplugged: true, clients: false });

    // Plugging back in restores both directions: `clients` is published (and echoed) as false.
    let reply = Call::new(Method::PUT, "/api/cluster/nodes/n3/unplugged")
        .json(json!({ "unplugged": false, "clients": true }))
        .bearer(TOKEN)
        .send(&app)
        .await
        .expect(202);
    contract.check(&reply);
    assert_eq!(reply.json(), json!({ "node": "n3", "unplugged": false, "clients": false }));
    let msg = tokio::time::timeout(Duration::from_secs(5), commands.next()).await.expect("the command").unwrap();
    assert_eq!(msg.payload.unwrap(), Unplug { node: "n3".into(), unplugged: false, clients: false });

    // Refused: no token, a wrong token, not a member. None of them publishes anything.
    Call::new(Method::PUT, "/api/cluster/nodes/n2/unplugged")
        .json(json!({ "unplugged": false }))
        .send(&app)
        .await
        .expect(401);
    Call::new(Method::PUT, "/api/cluster/nodes/n2/unplugged")
        .json(json!({ "unplugged": false }))
        .bearer("nope")
        .send(&app)
        .await
        .expect(403);
    Call::new(Method::PUT, "/api/cluster/nodes/n7/unplugged")
        .json(json!({ "unplugged": false }))
        .bearer(TOKEN)
        .send(&app)
        .await
        .expect(404);
    // Plugging back in goes through.
    Call::new(Method::PUT, "/api/cluster/nodes/n2/unplugged")
        .json(json!({ "unplugged": false }))
        .bearer(TOKEN)
        .send(&app)
        .await
        .expect(202);
    let msg = tokio::time::timeout(Duration::from_secs(5), commands.next()).await.expect("the command").unwrap();
    assert_eq!(msg.payload.unwrap(), Unplug { node: "n2".into(), unplugged: false, clients: false });

    // Refused bodies publish nothing either: the next command on the subject is this one.
    for body in [
        json!({ "unplugged": true, "clients": "yes" }),
        json!({ "unplugged": true, "clients": 1 }),
        json!({ "unplugged": true, "clients": null }),
        json!({ "clients": true }),
    ] {
        let reply = Call::new(Method::PUT, "/api/cluster/nodes/n2/unplugged")
            .json(body.clone())
            .bearer(TOKEN)
            .send(&app)
            .await
            .expect(400);
        assert_eq!(reply.error_code(), "invalid_json", "{body}");
        contract.check(&reply);
    }
    Call::new(Method::PUT, "/api/cluster/nodes/n1/unplugged")
        .json(json!({ "unplugged": true }))
        .bearer(TOKEN)
        .send(&app)
        .await
        .expect(202);
    let msg = tokio::time::timeout(Duration::from_secs(5), commands.next()).await.expect("the command").unwrap();
    assert_eq!(msg.payload.unwrap(), Unplug { node: "n1".into(), unplugged: true, clients: false });
}

#[test]
fn the_unplug_body_documents_both_modes() {
    let contract = Contract::load();
    let schema = &contract.doc["components"]["schemas"]["UnplugRequest"];
    assert_eq!(schema["required"], json!(["unplugged"]), "`clients` is optional: {schema}");
    assert_eq!(schema["properties"]["unplugged"]["type"], "boolean");
    assert_eq!(schema["properties"]["clients"]["type"], "boolean");
    assert_eq!(schema["properties"]["clients"]["default"], false);
    for field in ["unplugged", "clients"] {
        let text = schema["properties"][field]["description"].as_str().unwrap_or_default();
        assert!(text.contains("client") && text.contains("peers"), "{field} says what it does: {text:?}");
    }
    let accepted = &contract.doc["components"]["schemas"]["UnplugAccepted"];
    let mut required: Vec<&str> = accepted["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    required.sort();
    assert_eq!(required, ["clients", "node", "unplugged"]);
    let node = &contract.doc["components"]["schemas"]["NodeOverview"]["properties"];
    for field in ["clients_unplugged", "serving", "lease_ms", "status_age_ms"] {
        assert!(node[field].is_object(), "NodeOverview.{field} missing");
    }

    // Bodies the schema accepts, and ones it refuses (as the route does).
    let request = json!({ "$ref": "#/components/schemas/UnplugRequest" });
    assert!(contract.validate(&json!({ "unplugged": true }), &request, "$").is_ok());
    assert!(contract.validate(&json!({ "unplugged": true, "clients": true }), &request, "$").is_ok());
    assert!(contract.validate(&json!({ "unplugged": true, "clients": "yes" }), &request, "$").is_err());
    assert!(contract.validate(&json!({ "clients": true }), &request, "$").is_err());
}

#[tokio::test]
async fn events_reach_every_websocket_and_the_cluster_view() {
    let (state, app, bus, _m) = offline_gateway("events", WAIT).await;
    let contract = Contract::load();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let url = format!("ws://{addr}/api/events");
    let (mut a, _) = tokio_tungstenite::connect_async(&url).await.expect("websocket a");
    let (mut b, _) = tokio_tungstenite::connect_async(&url).await.expect("websocket b");
    instaface_testkit::wait_until(Duration::from_secs(5), "both sockets subscribed", || {
        state.events.receiver_count() == 2
    })
    .await;

    let events = [
        Event::new("n1", 3, EventKind::Candidacy { state: CandidacyState::Started, pre_vote: false }),
        Event::new("n1", 3, EventKind::Leader { members: vec!["n1".into(), "n2".into(), "n3".into()] }),
        Event::new("n2", 3, EventKind::Follower { leader: Some("n1".into()) }),
        Event::new("n3", 3, EventKind::Unplugged { unplugged: true, clients: false }),
        Event::new("n2", 3, EventKind::Unplugged { unplugged: true, clients: true }),
        Event::new("n2", 3, EventKind::Cache { hits: 5, misses: 2, entries: 4, fills: 2, applied_seq: 9 }),
    ];
    for e in &events {
        bus.publish(bus.subjects().events(), e).await.unwrap();
    }
    // Something that is not an event is dropped, not relayed, and breaks nothing.
    bus.raw().publish(bus.subjects().events(), "garbage".into()).await.unwrap();
    bus.flush().await.unwrap();

    for socket in [&mut a, &mut b] {
        for want in &events {
            let msg =
                tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("an event").unwrap().unwrap();
            let WsMessage::Text(text) = msg else { panic!("expected text, got {msg:?}") };
            let got: Value = serde_json::from_str(text.as_str()).unwrap();
            assert_eq!(got, serde_json::to_value(want).unwrap(), "same fields as on the bus");
            assert_eq!(got["type"], want.type_name());
            assert!(got["ts"].is_u64() && got["term"] == 3 && got["node"].is_string());
        }
    }

    let overview = Call::get("/api/cluster").send(&instaface_gateway::app(state.clone())).await.expect(200);
    contract.check(&overview);
    let o = overview.json();
    assert_eq!(o["members"], json!(["n1", "n2", "n3"]));
    let node = |id: &str| o["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).cloned().unwrap();
    assert_eq!(node("n1")["role"], "leader");
    assert_eq!(node("n2")["role"], "follower");
    assert_eq!(node("n2")["cache"]["hits"], 5);
    assert_eq!(node("n2")["applied_seq"], 9);
    assert_eq!(node("n3")["unplugged"], true);
    assert_eq!(node("n3")["clients_unplugged"], false);
    assert_eq!(node("n3")["reachable"], false);
    assert_eq!(node("n2")["unplugged"], true);
    assert_eq!(node("n2")["clients_unplugged"], true);
    // Nothing answered a status poll on this prefix: nobody is known to serve.
    for id in ["n1", "n2", "n3"] {
        assert_eq!(node(id)["serving"], false, "{id}");
        assert_eq!(node(id)["lease_ms"], 0, "{id}");
        assert_eq!(node(id)["status_age_ms"], Value::Null, "{id}");
    }

    // A client that leaves is forgotten; the other keeps receiving.
    a.close(None).await.unwrap();
    drop(a);
    instaface_testkit::wait_until(Duration::from_secs(5), "the closed socket's task ends", || {
        state.events.receiver_count() == 1
    })
    .await;
    bus.publish(
        bus.subjects().events(),
        &Event::new("n1", 4, EventKind::Write { seq: 10, op: "create_entity".into(), keys: vec!["e:1".into()] }),
    )
    .await
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), b.next()).await.expect("an event").unwrap().unwrap();
    assert!(msg.into_text().unwrap().as_str().contains("\"write\""));
    server.abort();
}
