//! The gateway without a cluster: a prefix where no node runs (NATS and Redis are real, the
//! HTTP side goes through `tower::ServiceExt::oneshot` except for the websocket). Covers
//! input validation and the error shape on every route, 503 without a leader, the OpenAPI
//! document, metrics, health, the monitor UI, the event feed and the unplug command; who may
//! unplug (token, loopback, `ADMIN_OPEN`); the bounds on offsets, websocket clients and metric
//! labels; and a cluster view and feed that know members only.

mod common;

use std::time::Duration;

use axum::http::Method;
use common::*;
use futures::{SinkExt, StreamExt};
use instaface_bus::messages::{CandidacyState, Event, EventKind, Unplug};
use serde_json::{json, Value};
use std::future::IntoFuture;
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
        ("POST", "/api/entities/{entity}"),
        ("GET", "/api/entities/{entity}"),
        ("GET", "/api/entities"),
        ("PATCH", "/api/entities/{entity}"),
        ("DELETE", "/api/entities/{entity}"),
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
        ("GET", "/api/docs/"),
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
            .replace("{entity}", if method == "POST" { "user" } else { "1" })
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
        if !["/api/openapi.json", "/api/docs/", "/", "/metrics"].contains(&template.as_str()) {
            contract.check(&reply);
        }
    }
}

#[tokio::test]
async fn health_metrics_openapi_and_ui_are_served() {
    let (state, app, _bus, _m) = offline_gateway("system", WAIT).await;
    let contract = Contract::load();

    let health = Call::get("/healthz").send(&app).await.expect(200);
    contract.check(&health);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["nats_connected"], true);

    let doc = Call::get("/api/openapi.json").send(&app).await.expect(200);
    assert_eq!(doc.header("content-type"), Some("application/json"));
    assert_eq!(
        doc.json(),
        instaface_gateway::openapi::document_json(state.config.body_limit),
        "the served document is the generated one, with this gateway's body limit"
    );

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
                && l.contains("route=\"/api/entities/{entity}\"")
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

/// The next unplug command on the bus within `wait`, if any.
async fn next_command(commands: &mut instaface_bus::client::Subscription<Unplug>, wait: Duration) -> Option<Unplug> {
    tokio::time::timeout(wait, commands.next()).await.ok().flatten().map(|m| m.payload.unwrap())
}

#[tokio::test]
async fn without_a_token_the_admin_route_answers_loopback_clients_only() {
    let config = instaface_gateway::config::GatewayConfig { admin_token: None, ..test_config() };
    let (state, app, bus, _m) = offline_gateway_with("admin-loopback", WAIT, config).await;
    let contract = Contract::load();
    let mut commands = bus.subscribe::<Unplug>(bus.subjects().control_unplug()).await.unwrap();
    bus.flush().await.unwrap();
    let unplug = |node: &str| {
        Call::new(Method::PUT, format!("/api/cluster/nodes/{node}/unplugged")).json(json!({ "unplugged": true }))
    };

    // No peer address (the router driven directly, or served without connect info), or one
    // that is not loopback: refused with 403, whatever the request carries.
    for call in [
        unplug("n1"),
        unplug("n1").peer_addr("10.0.0.5:40000"),
        unplug("n1").peer_addr("192.168.1.20:40000"),
        unplug("n1").peer_addr("[::ffff:10.0.0.5]:40000"),
        unplug("n1").peer_addr("[2001:db8::1]:40000"),
        unplug("n1").peer_addr("0.0.0.0:40000"),
        unplug("n1").peer_addr("10.0.0.5:40000").bearer("anything"),
        unplug("n1").peer_addr("10.0.0.5:40000").header("x-forwarded-for", "127.0.0.1"),
        unplug("n9").peer_addr("10.0.0.5:40000"),
    ] {
        let reply = call.send(&app).await.expect(403);
        assert_eq!(reply.error_code(), "forbidden", "{:?}", call.peer);
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains("loopback"));
        contract.check(&reply);
    }
    assert_eq!(next_command(&mut commands, Duration::from_millis(300)).await, None, "nothing was published");

    // Loopback, in each of its forms: accepted, no token needed.
    for (peer, node) in [("127.0.0.1:40000", "n1"), ("[::1]:40000", "n2"), ("[::ffff:127.0.0.1]:40000", "n3")] {
        let reply = unplug(node).peer_addr(peer).send(&app).await.expect(202);
        contract.check(&reply);
        let got = next_command(&mut commands, Duration::from_secs(5)).await.expect("the command");
        assert_eq!(got, Unplug { node: node.into(), unplugged: true, clients: false });
    }
    // Loopback clients still get the route's other answers.
    unplug("n9").peer_addr("127.0.0.1:40000").send(&app).await.expect(404);

    // Served the way `main` serves it, the peer address is the connection's: loopback here.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, instaface_gateway::service(state.clone())).into_future());
    let http = reqwest::Client::new();
    let reply = unplug("n2").send_http(&http, &format!("http://{addr}")).await.unwrap().expect(202);
    contract.check(&reply);
    assert_eq!(next_command(&mut commands, Duration::from_secs(5)).await.map(|c| c.node).as_deref(), Some("n2"));
    server.abort();

    // Served without connect info, nobody is loopback: the route fails closed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, instaface_gateway::app(state.clone())).into_future());
    let reply = unplug("n2").send_http(&http, &format!("http://{addr}")).await.unwrap().expect(403);
    assert_eq!(reply.error_code(), "forbidden");
    server.abort();
    assert_eq!(next_command(&mut commands, Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn admin_open_lets_anyone_unplug_without_a_token() {
    let config = instaface_gateway::config::GatewayConfig { admin_token: None, admin_open: true, ..test_config() };
    let (_state, app, bus, _m) = offline_gateway_with("admin-open", WAIT, config).await;
    let mut commands = bus.subscribe::<Unplug>(bus.subjects().control_unplug()).await.unwrap();
    bus.flush().await.unwrap();
    for call in [
        Call::new(Method::PUT, "/api/cluster/nodes/n1/unplugged"),
        Call::new(Method::PUT, "/api/cluster/nodes/n1/unplugged").peer_addr("10.0.0.5:40000"),
    ] {
        call.json(json!({ "unplugged": false })).send(&app).await.expect(202);
        let got = next_command(&mut commands, Duration::from_secs(5)).await.expect("the command");
        assert_eq!(got, Unplug { node: "n1".into(), unplugged: false, clients: false });
    }
    // Membership still decides what can be unplugged.
    Call::new(Method::PUT, "/api/cluster/nodes/n9/unplugged")
        .json(json!({ "unplugged": true }))
        .peer_addr("10.0.0.5:40000")
        .send(&app)
        .await
        .expect(404);
}

#[tokio::test]
async fn with_a_token_it_is_always_required_and_its_scheme_is_case_insensitive() {
    // ADMIN_OPEN and a loopback peer change nothing once a token is set.
    let config = instaface_gateway::config::GatewayConfig { admin_open: true, ..test_config() };
    let (_state, app, bus, _m) = offline_gateway_with("admin-token", WAIT, config).await;
    let contract = Contract::load();
    let mut commands = bus.subscribe::<Unplug>(bus.subjects().control_unplug()).await.unwrap();
    bus.flush().await.unwrap();
    let unplug = || Call::new(Method::PUT, "/api/cluster/nodes/n2/unplugged").json(json!({ "unplugged": true }));

    for call in [
        unplug().peer_addr("127.0.0.1:40000"),
        unplug().peer_addr("127.0.0.1:40000").header("authorization", "Basic czNjcmV0LXRva2Vu"),
        unplug().peer_addr("127.0.0.1:40000").header("authorization", "Bearer"),
        unplug().peer_addr("127.0.0.1:40000").header("authorization", TOKEN),
    ] {
        let reply = call.send(&app).await.expect(401);
        assert_eq!(reply.error_code(), "unauthorized");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        contract.check(&reply);
    }
    for token in ["wrong", "s3cret-toke", "s3cret-token-", "S3CRET-TOKEN", "s3cret-token s3cret-token"] {
        let reply = unplug()
            .peer_addr("127.0.0.1:40000")
            .header("authorization", &format!("Bearer {token}"))
            .send(&app)
            .await
            .expect(403);
        assert_eq!(reply.error_code(), "forbidden");
        contract.check(&reply);
    }
    assert_eq!(next_command(&mut commands, Duration::from_millis(300)).await, None, "nothing was published");

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let reply = unplug()
            .peer_addr("10.0.0.5:40000")
            .header("authorization", &format!("{scheme} {TOKEN}"))
            .send(&app)
            .await
            .expect(202);
        contract.check(&reply);
        assert_eq!(next_command(&mut commands, Duration::from_secs(5)).await.map(|c| c.node).as_deref(), Some("n2"));
    }
}

#[tokio::test]
async fn association_offsets_are_bounded() {
    let (_state, app, _bus, _m) = offline_gateway("offsets", WAIT).await;
    let contract = Contract::load();
    let max = instaface_bus::graph::MAX_ASSOC_OFFSET;
    // The largest offset reaches the bus (no node here: no leader).
    let reply = Call::get(format!("/api/entities/1/associations/friend?offset={max}")).send(&app).await.expect(503);
    assert_eq!(reply.error_code(), "no_leader");
    for offset in [u64::from(max) + 1, 1 << 20, u64::from(u32::MAX)] {
        let reply =
            Call::get(format!("/api/entities/1/associations/friend?offset={offset}")).send(&app).await.expect(400);
        assert_eq!(reply.error_code(), "bad_request");
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains(&max.to_string()));
        contract.check(&reply);
    }
    // The document says the same bound.
    let params = contract.doc["paths"]["/api/entities/{id}/associations/{type}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .clone();
    let offset = params.iter().find(|p| p["name"] == "offset").expect("an offset parameter");
    assert_eq!(offset["schema"]["maximum"].as_u64(), Some(u64::from(max)), "{offset}");
}

#[tokio::test]
async fn websocket_clients_are_limited() {
    let config = instaface_gateway::config::GatewayConfig { max_ws_clients: 2, ..test_config() };
    let (state, app, bus, _m) = offline_gateway_with("ws-limit", WAIT, config).await;
    let contract = Contract::load();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, instaface_gateway::service(state.clone())).into_future());
    let url = format!("ws://{addr}/api/events");

    let (mut a, _) = tokio_tungstenite::connect_async(&url).await.expect("websocket a");
    let (mut b, _) = tokio_tungstenite::connect_async(&url).await.expect("websocket b");
    // The third is refused before the upgrade: 503, the JSON error, Retry-After.
    let refused = match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response,
        other => panic!("expected an HTTP refusal, got {other:?}"),
    };
    let mut headers = axum::http::HeaderMap::new();
    for (k, v) in refused.headers() {
        headers.insert(
            axum::http::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
            axum::http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    let reply = Reply {
        method: Method::GET,
        path: "/api/events".into(),
        status: axum::http::StatusCode::from_u16(refused.status().as_u16()).unwrap(),
        headers,
        body: refused.body().clone().unwrap_or_default().into(),
    }
    .expect(503);
    assert_eq!(reply.error_code(), "unavailable");
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("MAX_WS_CLIENTS"));
    assert_eq!(reply.header("retry-after"), Some("1"));
    contract.check(&reply);
    let metrics = Call::get("/metrics").send(&app).await.expect(200);
    assert!(String::from_utf8_lossy(&metrics.body).contains("instaface_gateway_websocket_refused_total 1"));

    // Both admitted sockets work.
    bus.publish(bus.subjects().events(), &Event::new("n1", 2, EventKind::Follower { leader: None })).await.unwrap();
    for socket in [&mut a, &mut b] {
        let msg =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("an event").unwrap().unwrap();
        assert!(msg.into_text().unwrap().as_str().contains("\"follower\""));
    }

    // A client that leaves frees its slot.
    a.close(None).await.unwrap();
    drop(a);
    instaface_testkit::wait_until(Duration::from_secs(5), "a's slot is free", || {
        state.ws_slots.available_permits() == 1
    })
    .await;
    let (mut c, _) = tokio_tungstenite::connect_async(&url).await.expect("websocket c, in a's slot");

    // A client that sends more than a small message is disconnected, and its slot freed.
    c.send(WsMessage::Text("x".repeat(instaface_gateway::routes::events::MAX_CLIENT_MESSAGE + 1).into()))
        .await
        .unwrap();
    instaface_testkit::wait_until(Duration::from_secs(5), "c's slot is free", || {
        state.ws_slots.available_permits() == 1
    })
    .await;
    // b is still served.
    bus.publish(bus.subjects().events(), &Event::new("n2", 2, EventKind::Follower { leader: None })).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), b.next()).await.expect("an event").unwrap().unwrap();
    assert!(msg.into_text().unwrap().as_str().contains("\"n2\""));
    server.abort();
}

#[tokio::test]
async fn the_cluster_view_and_the_feed_know_members_only() {
    let (state, app, bus, membership) = offline_gateway("strangers", WAIT).await;
    let contract = Contract::load();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app.clone()).into_future());
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/events")).await.expect("websocket");
    instaface_testkit::wait_until(Duration::from_secs(5), "the socket subscribed", || {
        state.events.receiver_count() == 1
    })
    .await;

    // Events by strangers, or naming them, then one by a member.
    let strangers = [
        Event::new("n9", 40, EventKind::Leader { members: vec!["n9".into()] }),
        Event::new("bad.id", 40, EventKind::Unplugged { unplugged: true, clients: true }),
        Event::new("x".repeat(65), 40, EventKind::Cache { hits: 1, misses: 1, entries: 1, fills: 1, applied_seq: 1 }),
        Event::new("n1", 40, EventKind::Reachable { peer: "n9".into(), reachable: false }),
        Event::new("n1", 40, EventKind::Follower { leader: Some("n9".into()) }),
        Event::new("n1", 40, EventKind::Invalidation { seq: 4, acked_by: vec!["n2".into(), "evil".into()] }),
    ];
    for e in &strangers {
        bus.publish(bus.subjects().events(), e).await.unwrap();
    }
    // A forged heartbeat naming a stranger as leader, with a member list of strangers.
    let heartbeat = instaface_bus::messages::Heartbeat {
        term: 50,
        leader: "n9".into(),
        seq: 0,
        floor: 0,
        invalidations: vec![],
        hb: 1,
        members: vec!["n9".into(), "n10".into()],
    };
    bus.publish(bus.subjects().heartbeat(), &heartbeat).await.unwrap();
    let member = Event::new("n2", 3, EventKind::Follower { leader: Some("n1".into()) });
    bus.publish(bus.subjects().events(), &member).await.unwrap();
    bus.flush().await.unwrap();

    // The socket sees the member's event first: the others were dropped.
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("an event").unwrap().unwrap();
    let got: Value = serde_json::from_str(msg.into_text().unwrap().as_str()).unwrap();
    assert_eq!(got, serde_json::to_value(&member).unwrap());
    let metrics = String::from_utf8_lossy(&Call::get("/metrics").send(&app).await.expect(200).body).into_owned();
    assert!(metrics.contains(&format!("instaface_gateway_events_not_members_total {}", strangers.len())), "{metrics}");

    let o = Call::get("/api/cluster").send(&app).await.expect(200);
    contract.check(&o);
    let o = o.json();
    assert_eq!(o["members"], json!(["n1", "n2", "n3"]));
    let ids: Vec<&str> = o["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["n1", "n2", "n3"]);
    assert_eq!(o["leader"], Value::Null, "the forged heartbeat's leader is not a member");
    assert!(o["term"].as_u64().unwrap() < 40, "{o}");
    let n1 = &o["nodes"][0];
    assert_eq!(n1["role"], "unknown", "{n1}");
    assert_eq!(o["nodes"][1]["role"], "follower");
    // Nor can a stranger be unplugged.
    Call::new(Method::PUT, "/api/cluster/nodes/n9/unplugged")
        .json(json!({ "unplugged": true }))
        .bearer(TOKEN)
        .send(&app)
        .await
        .expect(404);

    // A member removed from Redis is forgotten at the next read; back, it is known again.
    membership.remove("n3").await.unwrap();
    let members = |state: &instaface_gateway::AppState| state.cluster.members();
    instaface_testkit::wait_until(Duration::from_secs(5), "n3 left the view", || members(&state) == ["n1", "n2"]).await;
    let o = Call::get("/api/cluster").send(&app).await.expect(200).json();
    assert_eq!(o["nodes"].as_array().unwrap().len(), 2);
    Call::new(Method::PUT, "/api/cluster/nodes/n3/unplugged")
        .json(json!({ "unplugged": true }))
        .bearer(TOKEN)
        .send(&app)
        .await
        .expect(404);
    membership.ensure(&["n3".into()], "test").await.unwrap();
    instaface_testkit::wait_until(Duration::from_secs(5), "n3 is back", || members(&state) == ["n1", "n2", "n3"]).await;
    server.abort();
}

#[tokio::test]
async fn one_shard_is_listed_and_near_must_name_a_shard() {
    let (_state, app, bus, _m) = offline_gateway("one-shard", WAIT).await;
    let contract = Contract::load();
    let overview = Call::get("/api/cluster").send(&app).await.expect(200);
    contract.check(&overview);
    assert_eq!(overview.json()["shards"], json!([{ "shard": 0, "leader": null, "term": 0 }]));

    // A member's heartbeat: shard 0's entry is the overview's leader and term.
    let heartbeat = instaface_bus::messages::Heartbeat {
        term: 3,
        leader: "n1".into(),
        seq: 0,
        floor: 0,
        invalidations: vec![],
        hb: 1,
        members: vec!["n1".into(), "n2".into(), "n3".into()],
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let o = loop {
        bus.publish(bus.subjects().heartbeat(), &heartbeat).await.unwrap();
        let o = Call::get("/api/cluster").send(&app).await.expect(200);
        contract.check(&o);
        let o = o.json();
        if o["leader"] == "n1" || std::time::Instant::now() > deadline {
            break o;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((&o["leader"], &o["term"]), (&json!("n1"), &json!(3)), "{o}");
    assert_eq!(o["shards"], json!([{ "shard": 0, "leader": "n1", "term": 3 }]));

    // `near` names its shard in its id's top bits: with one shard, 2^40 names none.
    let create = |near: &str| Call::new(Method::POST, format!("/api/entities/user?near={near}")).json(json!({}));
    for near in ["1099511627776", "18446744073709551615"] {
        let reply = create(near).send(&app).await.expect(400);
        assert_eq!(reply.error_code(), "bad_request");
        let message = reply.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("near") && message.contains("1 shard"), "{message}");
        contract.check(&reply);
    }
    for near in ["x", "-1", ""] {
        let reply = create(near).send(&app).await.expect(400);
        assert_eq!(reply.error_code(), "bad_request", "near={near:?}");
    }
    // An id of the one shard gets past validation (and waits for a leader that is not there).
    for near in ["1", "1099511627775"] {
        let reply = create(near).send(&app).await;
        assert_eq!(reply.error_code(), "no_leader", "near={near}");
        contract.check(&reply);
    }
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let (_state, app, _bus, _m) = offline_gateway("methods", WAIT).await;
    for i in 0..50 {
        let method = Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let reply = Call::new(method, "/api/cluster").send(&app).await;
        assert!(reply.status.is_client_error(), "{}", reply.status);
    }
    let text = String::from_utf8_lossy(&Call::get("/metrics").send(&app).await.expect(200).body).into_owned();
    assert!(!text.contains("MADEUP"), "a label per made-up method");
    let line = text
        .lines()
        .find(|l| l.starts_with("instaface_gateway_http_requests_total{") && l.contains("method=\"other\""))
        .unwrap_or_else(|| panic!("no `other` method in:\n{text}"));
    assert!(line.ends_with(" 50"), "{line}");
}
