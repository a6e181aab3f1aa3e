//! CI checks of the Docker stack (`compose/`), without a Docker engine:
//!
//! - `docker-compose.yml` and the NATS-cluster override parse (YAML merge keys applied), every
//!   service they refer to exists, every health-gated dependency has a health check;
//! - every workspace binary is run by some service and every `instaface-*` command is a
//!   workspace binary, built by the Dockerfile;
//! - the nodes have unique `NODE_ID`s and `MEMBERS` lists exactly the node services;
//! - no password is written in a compose file: each secret lives once in `compose/.env` and
//!   every `${VAR}` the files use is defined there;
//! - the override gives every Instaface process all three NATS servers;
//! - NATS roles: every Instaface process connects as its role's user (nodes `node`, the
//!   gateway `gateway`, the bot `bot`, the tap `observer`) with its role's password and
//!   `NATS_INBOX_PREFIX`, as `compose/nats-auth.sh roles` lists them; every NATS server
//!   runs `compose/nats-auth.sh serve` with every role's password and the same prefix, also
//!   in the override (testkit/tests/nats_roles.rs checks what those users may do);
//! - the MariaDB grants of `compose/mariadb/10-instaface-user.sh` are enough for a real
//!   cluster to migrate, write and read (needs MariaDB, NATS and Redis, as every
//!   multi-process test does);
//! - a real compose parser (`docker compose`, or the `docker-compose` that
//!   `compose/services.sh` installs) accepts both files without a warning, and what it
//!   renders agrees with the checks above: the same services, every `${VAR}` filled in from
//!   `compose/.env`, and the override merged the way [`merged`] assumes. With no parser the
//!   test fails under `CI=true` and is skipped, loudly, elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use instaface_testkit::{Cluster, ClusterOpts};
use serde_yaml::Value;

fn compose_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A compose file, parsed, with `<<` merge keys applied.
fn load(name: &str) -> Value {
    let path = compose_dir().join(name);
    let mut doc: Value = serde_yaml::from_str(&read(&path)).unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    // serde_yaml merges one level per pass: a merged-in mapping may itself hold `<<`.
    for _ in 0..8 {
        let before = doc.clone();
        doc.apply_merge().unwrap_or_else(|e| panic!("{name}: merge keys: {e}"));
        if doc == before {
            return doc;
        }
    }
    panic!("{name}: merge keys nested too deep")
}

/// A compose file's text without its comment lines (Compose interpolates no comment).
fn text_of(name: &str) -> String {
    read(&compose_dir().join(name)).lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n")
}

/// `compose/.env` as ordered (key, value) pairs.
fn dotenv() -> Vec<(String, String)> {
    read(&compose_dir().join(".env"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!(".env line without `=`: {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

fn is_secret(key: &str) -> bool {
    ["PASSWORD", "TOKEN", "SECRET"].iter().any(|w| key.contains(w))
}

fn services(doc: &Value) -> &serde_yaml::Mapping {
    doc.get("services").and_then(Value::as_mapping).expect("a `services` mapping")
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// A service's command as words (list or string form).
fn command(svc: &Value) -> Vec<String> {
    match svc.get("command") {
        Some(Value::Sequence(words)) => words.iter().map(str_of).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// A service's environment as a map (mapping or `KEY=value` list form).
fn environment(svc: &Value) -> BTreeMap<String, String> {
    match svc.get("environment") {
        Some(Value::Mapping(m)) => {
            m.iter().map(|(k, v)| (str_of(k), if v.is_null() { String::new() } else { str_of(v) })).collect()
        }
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let s = str_of(i);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The services a service depends on, with the condition (`service_started` for list form).
fn depends_on(svc: &Value) -> BTreeMap<String, String> {
    match svc.get("depends_on") {
        Some(Value::Sequence(names)) => names.iter().map(|n| (str_of(n), "service_started".into())).collect(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                let cond = v.get("condition").map(str_of).unwrap_or_else(|| "service_started".into());
                (str_of(k), cond)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The override merged over the base, the way Compose merges the keys these files use:
/// mappings (environment, depends_on) key by key, everything else replaced.
fn merged(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let next = match out.get(k) {
                    Some(old) if k.as_str() != Some("command") => merged(old, v),
                    _ => v.clone(),
                };
                out.insert(k.clone(), next);
            }
            Value::Mapping(out)
        }
        _ => over.clone(),
    }
}

/// The workspace's binaries, from `cargo metadata`.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata failed");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let mut bins = BTreeSet::new();
    for package in meta["packages"].as_array().expect("packages") {
        for target in package["targets"].as_array().expect("targets") {
            if target["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin")) {
                bins.insert(target["name"].as_str().expect("name").to_string());
            }
        }
    }
    bins
}

/// Every `${VAR}`, `${VAR:-default}` and `${VAR-default}` in `text`: (name, has a default).
fn interpolations(text: &str) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        // `$${` is an escaped dollar, not an interpolation.
        let escaped = start > 0 && rest.as_bytes()[start - 1] == b'$';
        let after = &rest[start + 2..];
        let end = after.find('}').expect("unclosed ${");
        let inner = &after[..end];
        if !escaped {
            let name_end = inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(inner.len());
            let default = inner[name_end..].starts_with(":-") || inner[name_end..].starts_with('-');
            found.push((inner[..name_end].to_string(), default));
        }
        rest = &after[end..];
    }
    found
}

const FILES: [&str; 2] = ["docker-compose.yml", "docker-compose.nats-cluster.yml"];

#[test]
fn every_service_and_binary_is_accounted_for() {
    let doc = load("docker-compose.yml");
    let svcs = services(&doc);
    let names: BTreeSet<String> = svcs.keys().map(str_of).collect();
    for want in ["nats", "mariadb", "redis", "gateway", "bot", "n1", "n2", "n3", "n4", "n5"] {
        assert!(names.contains(want), "docker-compose.yml has no service {want}");
    }

    for (name, svc) in svcs {
        let name = str_of(name);
        for (dep, condition) in depends_on(svc) {
            assert!(names.contains(&dep), "{name} depends on {dep}, which is no service");
            if condition == "service_healthy" {
                assert!(
                    svcs[dep.as_str()].get("healthcheck").is_some(),
                    "{name} waits for {dep} to be healthy, which has no healthcheck"
                );
            }
        }
        assert!(svc.get("image").is_some() || svc.get("build").is_some(), "{name} has neither image nor build");
    }

    // Binaries: every workspace binary runs somewhere, every instaface-* command exists.
    let bins = workspace_binaries();
    for want in ["instaface-node", "instaface-gateway", "instaface-bot"] {
        assert!(bins.contains(want), "the workspace has no binary {want} (cargo metadata lists {bins:?})");
    }
    let used: BTreeSet<String> = svcs.values().filter_map(|s| command(s).into_iter().next()).collect();
    for bin in &bins {
        assert!(used.contains(bin), "no service runs the workspace binary {bin}");
    }
    for cmd in used.iter().filter(|c| c.starts_with("instaface-")) {
        assert!(bins.contains(cmd), "a service runs {cmd}, which is no workspace binary");
    }

    // One image holds them all: some service builds it with compose/Dockerfile, every
    // instaface service uses that image, and the Dockerfile installs every binary.
    let builders: Vec<&Value> = svcs.values().filter(|s| s.get("build").is_some()).collect();
    assert_eq!(builders.len(), 1, "exactly one service builds the Instaface image");
    let build = builders[0].get("build").unwrap();
    assert_eq!(build.get("dockerfile").map(str_of).as_deref(), Some("compose/Dockerfile"));
    let image = builders[0].get("image").map(str_of).expect("the building service names its image");
    for (name, svc) in svcs {
        if command(svc).first().is_some_and(|c| c.starts_with("instaface-")) {
            assert_eq!(svc.get("image").map(str_of).as_ref(), Some(&image), "{} runs another image", str_of(name));
        }
    }
    let dockerfile = read(&compose_dir().join("Dockerfile"));
    for bin in &bins {
        assert!(dockerfile.contains(&format!("target/release/{bin}")), "compose/Dockerfile does not install {bin}");
    }
    let user =
        dockerfile.lines().rev().find_map(|l| l.trim().strip_prefix("USER ")).expect("the runtime image sets USER");
    assert!(!user.starts_with("root") && !user.starts_with('0'), "the runtime image runs as {user}");

    // The gateway is published on 8080 and serves the monitor there.
    let gateway = &svcs["gateway"];
    let ports: Vec<String> =
        gateway.get("ports").and_then(Value::as_sequence).expect("gateway ports").iter().map(str_of).collect();
    assert!(ports.iter().any(|p| p.ends_with(":8080")), "gateway ports {ports:?} do not publish 8080");
    assert_eq!(environment(gateway).get("LISTEN_ADDR").map(String::as_str), Some("0.0.0.0:8080"));
}

#[test]
fn nodes_have_unique_ids_and_list_every_node_as_member() {
    let doc = load("docker-compose.yml");
    let nodes: Vec<(String, BTreeMap<String, String>)> = services(&doc)
        .iter()
        .filter(|(_, s)| command(s) == ["instaface-node"])
        .map(|(n, s)| (str_of(n), environment(s)))
        .collect();
    assert_eq!(nodes.len(), 5, "five node services");
    let mut ids = BTreeSet::new();
    for (name, env) in &nodes {
        let id = env.get("NODE_ID").unwrap_or_else(|| panic!("{name} has no NODE_ID"));
        assert!(ids.insert(id.clone()), "NODE_ID {id} is used twice");
        assert_eq!(id, name, "node service {name} should carry NODE_ID {name} (the id is its host name too)");
        assert!(env.contains_key("METRICS_ADDR"), "{name} has no METRICS_ADDR (its health check reads the metrics)");
        // The gateway each node serves is published on a port of the host.
        let listen = env.get("GATEWAY_LISTEN").unwrap_or_else(|| panic!("{name} has no GATEWAY_LISTEN"));
        let inner = listen.rsplit(':').next().unwrap_or_default();
        let svc = &services(&doc)[name.as_str()];
        let ports: Vec<String> =
            svc.get("ports").and_then(Value::as_sequence).map(|p| p.iter().map(str_of).collect()).unwrap_or_default();
        assert!(
            ports.iter().any(|p| p.ends_with(&format!(":{inner}"))),
            "{name} does not publish its gateway's port {inner}: {ports:?}"
        );
        for key in ["NATS_URL", "NATS_INBOX_PREFIX", "MYSQL_URL", "REDIS_URL"] {
            assert!(env.contains_key(key), "{name} has no {key}");
        }
    }
    for (name, env) in &nodes {
        let members: BTreeSet<String> = env
            .get("MEMBERS")
            .unwrap_or_else(|| panic!("{name} has no MEMBERS"))
            .split(',')
            .map(|m| m.trim().to_string())
            .collect();
        assert_eq!(members, ids, "{name}'s MEMBERS must list exactly the node services");
    }
}

#[test]
fn passwords_live_once_in_dotenv() {
    let env = dotenv();
    let defined: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(defined.len(), env.len(), ".env defines a key twice");
    let secrets: Vec<(&str, &str)> =
        env.iter().filter(|(k, _)| is_secret(k)).map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for want in [
        "NATS_NODE_PASSWORD",
        "NATS_GATEWAY_PASSWORD",
        "NATS_BOT_PASSWORD",
        "NATS_OBSERVER_PASSWORD",
        "NATS_ROUTE_PASSWORD",
        "MARIADB_ROOT_PASSWORD",
        "MYSQL_PASSWORD",
        "REDIS_PASSWORD",
        "ADMIN_TOKEN",
    ] {
        assert!(defined.contains_key(want), ".env has no {want}");
    }
    let mut values = BTreeSet::new();
    for (k, v) in &secrets {
        assert!(v.len() >= 12, "{k} is too short to be a password");
        assert!(values.insert(*v), "{k} has the same value as another secret");
        assert!(
            v.chars().all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c)),
            "{k} must be URL-safe: it goes into connection URLs"
        );
    }

    let mut used = BTreeSet::new();
    for file in FILES {
        let text = text_of(file);
        for (k, v) in &secrets {
            assert!(!text.contains(v), "{file} contains the value of {k}: refer to it as ${{{k}}}");
        }
        for (name, has_default) in interpolations(&text) {
            assert!(
                has_default || defined.contains_key(name.as_str()),
                "{file} uses ${{{name}}}, which .env does not define"
            );
            used.insert(name);
        }
        // Any setting that looks like a secret is an interpolation, not a literal.
        let doc = load(file);
        for (svc_name, svc) in services(&doc) {
            for (key, value) in environment(svc) {
                if is_secret(&key) {
                    assert!(value.starts_with("${"), "{file}: {}.{key} must come from .env", str_of(svc_name));
                }
            }
        }
    }
    for (k, _) in &secrets {
        assert!(used.contains(*k), ".env defines {k}, which no compose file uses");
    }
    // The image must not bake the secrets in.
    let ignore = read(&compose_dir().join("Dockerfile.dockerignore"));
    assert!(ignore.lines().any(|l| l.trim() == "compose/.env"), "compose/.env must stay out of the build context");
}

#[test]
fn the_nats_cluster_override_gives_everyone_three_servers() {
    let base = load("docker-compose.yml");
    let over = load("docker-compose.nats-cluster.yml");
    let all = merged(&base, &over);
    let svcs = services(&all);
    let nats: Vec<String> = svcs.keys().map(str_of).filter(|n| n.starts_with("nats")).collect();
    assert_eq!(nats.len(), 3, "three NATS servers, got {nats:?}");
    for name in &nats {
        let svc = &svcs[name.as_str()];
        assert!(svc.get("image").is_some(), "{name} has no image");
        assert!(svc.get("healthcheck").is_some(), "{name} has no healthcheck");
        let cmd = command(svc).join(" ");
        for flag in ["--cluster=", "--routes=", "--cluster_name=", "--jetstream"] {
            assert!(cmd.contains(flag), "{name} runs without {flag}: {cmd}");
        }
        // The routes authenticate with a user of their own, which no client has.
        assert!(
            cmd.contains("--cluster=nats://route:${NATS_ROUTE_PASSWORD}@"),
            "{name}'s routes need the route user: {cmd}"
        );
        for other in nats.iter().filter(|o| *o != name) {
            assert!(
                cmd.contains(&format!("route:${{NATS_ROUTE_PASSWORD}}@{other}:6222")),
                "{name} does not route to {other} as the route user"
            );
        }
        // The same users on every server.
        assert_runs_nats_auth(name, svc);
    }
    for (name, svc) in svcs {
        let name = str_of(name);
        if !command(svc).first().is_some_and(|c| c.starts_with("instaface-")) {
            continue;
        }
        let role = role_of(svc).unwrap_or_else(|| panic!("{name}: no role"));
        let base_env = environment(&services(&base)[name.as_str()]);
        // Its own connection as its role; a node's gateway's as the gateway role.
        let mut urls = vec![("NATS_URL", role.clone())];
        if base_env.contains_key("GATEWAY_NATS_URL") {
            urls.push(("GATEWAY_NATS_URL", "gateway".to_string()));
        }
        for (key, role) in &urls {
            let url = environment(svc).remove(*key).unwrap_or_else(|| panic!("{name} has no {key}"));
            // Still the role's user and password on every server.
            for one in url.split(',') {
                assert_eq!(
                    url_credentials(one),
                    role_credentials(role),
                    "{name}'s {key} {one} in the override is not its role's"
                );
            }
            let hosts: BTreeSet<String> = url
                .split(',')
                .map(|u| {
                    u.rsplit_once('@')
                        .map_or(u, |(_, h)| h)
                        .trim_start_matches("nats://")
                        .split(':')
                        .next()
                        .unwrap()
                        .to_string()
                })
                .collect();
            assert_eq!(hosts, nats.iter().cloned().collect(), "{name}'s {key} {url} must list every NATS server");
        }
        for n in &nats {
            assert_eq!(
                depends_on(svc).get(n).map(String::as_str),
                Some("service_healthy"),
                "{name} does not wait for {n}"
            );
        }
        // Everything else the base file gave it is still there.
        for (key, value) in base_env.iter().filter(|(k, _)| !urls.iter().any(|(u, _)| u == k)) {
            assert_eq!(environment(svc).get(key), Some(value), "{name} lost {key} in the override");
        }
    }
}

/// The roles of `compose/nats-auth.sh roles`: (role, its inbox prefix).
fn nats_roles() -> Vec<(String, String)> {
    let out = Command::new("sh")
        .arg(compose_dir().join("nats-auth.sh"))
        .arg("roles")
        .output()
        .expect("sh compose/nats-auth.sh roles");
    assert!(out.status.success(), "nats-auth.sh roles: {}", String::from_utf8_lossy(&out.stderr));
    let roles: Vec<(String, String)> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| {
            let (role, inbox) = l.split_once(' ').unwrap_or_else(|| panic!("nats-auth.sh roles printed {l:?}"));
            (role.to_string(), inbox.to_string())
        })
        .collect();
    let names: Vec<&str> = roles.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(names, ["node", "gateway", "bot", "observer"], "the roles of nats-auth.sh");
    roles
}

/// The role a service's process has, from what it runs: `None` for a service that is no
/// Instaface process.
fn role_of(svc: &Value) -> Option<String> {
    let cmd = command(svc);
    let role = match cmd.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["instaface-node"] => "node",
        ["instaface-node", "tap", ..] => "observer",
        ["instaface-gateway", ..] => "gateway",
        ["instaface-bot", ..] => "bot",
        [first, ..] if first.starts_with("instaface-") => panic!("no role known for {cmd:?}"),
        _ => return None,
    };
    Some(role.to_string())
}

/// The user and password of a `nats://user:pass@host:port` URL, as written.
fn url_credentials(url: &str) -> (String, String) {
    let rest = url.trim().strip_prefix("nats://").unwrap_or_else(|| panic!("{url} is no nats:// URL"));
    let (userinfo, _) = rest.rsplit_once('@').unwrap_or_else(|| panic!("{url} has no credentials"));
    let (user, pass) = userinfo.split_once(':').unwrap_or_else(|| panic!("{url} has no password"));
    (user.to_string(), pass.to_string())
}

/// What a role's URL must carry: its name and its password from `.env`.
fn role_credentials(role: &str) -> (String, String) {
    (role.to_string(), format!("${{NATS_{}_PASSWORD}}", role.to_uppercase()))
}

/// A NATS server service runs `compose/nats-auth.sh serve` (mounted from this folder) with
/// every role's password and the stack's prefix in its environment.
fn assert_runs_nats_auth(name: &str, svc: &Value) {
    let entrypoint: Vec<String> = match svc.get("entrypoint") {
        Some(Value::Sequence(words)) => words.iter().map(str_of).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    };
    assert_eq!(
        entrypoint,
        ["sh", "/etc/instaface/nats-auth.sh", "serve"],
        "{name} does not start through nats-auth.sh serve"
    );
    let volumes: Vec<String> =
        svc.get("volumes").and_then(Value::as_sequence).map(|v| v.iter().map(str_of).collect()).unwrap_or_default();
    assert!(
        volumes.contains(&"./nats-auth.sh:/etc/instaface/nats-auth.sh:ro".to_string()),
        "{name} does not mount nats-auth.sh: {volumes:?}"
    );
    let env = environment(svc);
    for (role, _) in nats_roles() {
        let var = format!("NATS_{}_PASSWORD", role.to_uppercase());
        assert_eq!(env.get(&var), Some(&format!("${{{var}}}")), "{name} lacks the {role} password");
    }
    assert_eq!(
        env.get("INSTAFACE_PREFIX").map(String::as_str),
        Some("${INSTAFACE_PREFIX:-instaface}"),
        "{name}'s prefix"
    );
}

/// Every Instaface process connects as its own role, with its role's inbox prefix; the
/// NATS server knows every role.
#[test]
fn every_process_uses_its_own_nats_role() {
    let roles = nats_roles();
    let doc = load("docker-compose.yml");
    let svcs = services(&doc);
    let mut seen = BTreeSet::new();
    for (name, svc) in svcs {
        let name = str_of(name);
        let Some(role) = role_of(svc) else { continue };
        let env = environment(svc);
        let url = env.get("NATS_URL").unwrap_or_else(|| panic!("{name} has no NATS_URL"));
        assert!(!url.contains(','), "{name}: one server in the base file");
        assert_eq!(url_credentials(url), role_credentials(&role), "{name} ({role}) connects as another user: {url}");
        let inbox_of = |role: &str| &roles.iter().find(|(r, _)| *r == role).expect("a role of nats-auth.sh").1;
        assert_eq!(env.get("NATS_INBOX_PREFIX"), Some(inbox_of(&role)), "{name} ({role}) has another inbox prefix");
        // The gateway a node serves connects as the gateway role, not as the node.
        if let Some(url) = env.get("GATEWAY_NATS_URL") {
            assert_eq!(role, "node", "{name}: only nodes serve a gateway inside");
            assert_eq!(url_credentials(url), role_credentials("gateway"), "{name}'s gateway connects as another user");
            assert_eq!(
                env.get("GATEWAY_NATS_INBOX_PREFIX"),
                Some(inbox_of("gateway")),
                "{name}'s gateway has another inbox prefix"
            );
        }
        assert_eq!(
            env.get("INSTAFACE_PREFIX").map(String::as_str),
            Some("${INSTAFACE_PREFIX:-instaface}"),
            "{name}'s prefix"
        );
        // The cluster key: the nodes and the gateway sign with it; nobody else holds it.
        let keyed = role == "node" || role == "gateway";
        assert_eq!(
            env.get("CLUSTER_KEY").map(String::as_str),
            keyed.then_some("${CLUSTER_KEY}"),
            "{name} ({role}) and the cluster key"
        );
        seen.insert(role);
    }
    let all: BTreeSet<String> = roles.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(seen, all, "every role is used by some service");
    assert_runs_nats_auth("nats", &svcs["nats"]);
    // The tap is a tool, not part of the stack that `up` starts.
    let tap = &svcs["tap"];
    let profiles: Vec<String> =
        tap.get("profiles").and_then(Value::as_sequence).expect("tap has profiles").iter().map(str_of).collect();
    assert!(!profiles.is_empty(), "the tap must not start with `up`");
}

/// Where `compose/services.sh` installs docker-compose when no compose client is there.
fn venv_docker_compose() -> PathBuf {
    let venv =
        std::env::var_os("INSTAFACE_VENV").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/opt/instaface-venv"));
    venv.join("bin/docker-compose")
}

/// The first compose client that answers `version`, as a command line: `docker compose`,
/// `docker-compose` on the PATH, or the one `compose/services.sh` installs.
fn compose_parser() -> Option<Vec<String>> {
    let venv = venv_docker_compose().to_string_lossy().into_owned();
    let candidates =
        [vec!["docker".to_string(), "compose".to_string()], vec!["docker-compose".to_string()], vec![venv]];
    candidates.into_iter().find(|client| {
        Command::new(&client[0])
            .args(&client[1..])
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `<client> config` of `files`, as the client renders it: every file merged, every
/// `${VAR}` interpolated. Fails on an error, and on a warning (an unset variable, say).
fn render(client: &[String], files: &[&str]) -> Value {
    let dir = compose_dir();
    let mut cmd = Command::new(&client[0]);
    cmd.args(&client[1..]).arg("--project-directory").arg(&dir);
    for f in files {
        cmd.arg("-f").arg(dir.join(f));
        // Compose prefers the process environment to `.env`: the test's own must not leak in.
        for (name, _) in interpolations(&text_of(f)) {
            cmd.env_remove(name);
        }
    }
    let out = cmd.arg("config").output().unwrap_or_else(|e| panic!("{}: {e}", client.join(" ")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} config {files:?} rejects the files: {stderr}", client.join(" "));
    // Anything said on success is a warning (an unset variable, an ignored or obsolete key),
    // whose wording and prefix differ between clients.
    let warnings: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(warnings.is_empty(), "{} config {files:?} warns: {warnings:?}", client.join(" "));
    let text = String::from_utf8(out.stdout).expect("UTF-8 config");
    let left: Vec<String> = interpolations(&text).into_iter().map(|(name, _)| name).collect();
    assert!(left.is_empty(), "{} config {files:?} left ${{…}} uninterpolated: {left:?}", client.join(" "));
    let doc: Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} config {files:?} printed no YAML: {e}\n{text}", client.join(" ")));
    unescape_dollars(doc)
}

/// `$$` made `$` in every string: clients differ in whether `config` escapes a literal `$`.
fn unescape_dollars(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("$$", "$")),
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(unescape_dollars).collect()),
        Value::Mapping(m) => Value::Mapping(m.into_iter().map(|(k, v)| (k, unescape_dollars(v))).collect()),
        other => other,
    }
}

/// A real compose parser accepts both files, and what it renders agrees with what the
/// other tests check on the files as written. Without a parser: fails under `CI=true`,
/// says SKIPPED elsewhere.
#[test]
fn a_compose_parser_accepts_the_files_and_renders_what_the_checks_assume() {
    let Some(client) = compose_parser() else {
        instaface_testkit::skip_or_fail_in_ci(
            "a_compose_parser_accepts_the_files_and_renders_what_the_checks_assume",
            &format!(
                "no compose parser: neither `docker compose`, `docker-compose` nor {} answers `version` \
                 (`bash compose/services.sh` installs docker-compose there)",
                venv_docker_compose().display()
            ),
        );
        return;
    };
    eprintln!("compose parser: {}", client.join(" "));
    let env = dotenv();
    let names = |doc: &Value| services(doc).keys().map(str_of).collect::<BTreeSet<_>>();
    // What the parser rendered is `written` (the files as the other tests read them) with
    // `compose/.env` filled in: the same services, commands, environments, dependencies.
    let agree = |rendered: &Value, written: &Value, what: &str| {
        // Services with a profile (the tap) are rendered by some clients only.
        let unprofiled: BTreeSet<String> =
            services(written).iter().filter(|(_, s)| s.get("profiles").is_none()).map(|(n, _)| str_of(n)).collect();
        let got = names(rendered);
        assert!(
            got == names(written) || got == unprofiled,
            "{what}: the parser renders other services than the files list: {got:?}"
        );
        for (name, svc) in services(rendered) {
            let name = str_of(name);
            let mine = &services(written)[name.as_str()];
            assert!(svc.get("image").is_some(), "{what}: {name} has no image once rendered");
            let command_want: Vec<String> = command(mine).iter().map(|w| fill(w, &env)).collect();
            assert_eq!(command(svc), command_want, "{what}: {name}'s command");
            let env_want: BTreeMap<String, String> =
                environment(mine).into_iter().map(|(k, v)| (k, fill(&v, &env))).collect();
            assert_eq!(environment(svc), env_want, "{what}: {name}'s environment");
            assert_eq!(depends_on(svc), depends_on(mine), "{what}: {name}'s depends_on");
        }
    };

    let base = load(FILES[0]);
    agree(&render(&client, &FILES[..1]), &base, FILES[0]);
    // With the override, this also checks that the parser merges the way `merged` emulates.
    agree(&render(&client, &FILES), &merged(&base, &load(FILES[1])), "with the override");
}

/// `text` with every `${VAR}`, `${VAR:-default}` and `${VAR-default}` replaced from `env`
/// (the default when unset; `:-` also when empty) and `$$` made `$`, as Compose does.
fn fill(text: &str, env: &[(String, String)]) -> String {
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').expect("unclosed ${");
            let spec = &inner[..end];
            let name_end = spec.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(spec.len());
            let (name, op) = spec.split_at(name_end);
            let value = match (lookup(name), op) {
                (Some(v), o) if !(v.is_empty() && o.starts_with(":-")) => v.to_string(),
                (_, o) if o.starts_with(":-") => o[2..].to_string(),
                (_, o) if o.starts_with('-') => o[1..].to_string(),
                (v, _) => v.unwrap_or_default().to_string(),
            };
            out.push_str(&value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The nodes' MariaDB user has only the privileges the init script grants; a real cluster
/// running as such a user must migrate fresh databases, write and read — with two shards,
/// as compose's `shards` profile runs them (one database each, granted alike), so shard 1's
/// claim of its fresh database (it moves the ids' start) is covered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_granted_privileges_are_enough_for_a_node() {
    let script = read(&compose_dir().join("mariadb/10-instaface-user.sh"));
    let privileges = script
        .lines()
        .find_map(|l| l.strip_prefix("instaface_privileges="))
        .expect("instaface_privileges= in the init script")
        .trim_matches('"')
        .to_string();
    assert!(!privileges.to_uppercase().contains("ALL"), "the nodes' user gets ALL PRIVILEGES: {privileges}");

    let tag = format!("{:08x}", rand::random::<u32>());
    let database = format!("instaface_grant_{tag}");
    let user = format!("ifgrant_{tag}");
    let password = format!("pw-{tag}");
    let _cleanup = MysqlUser { user: user.clone(), database: database.clone() };
    let shard1 = format!("{database}_s1");
    root_sql(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; GRANT {privileges} ON `{}`.* TO '{user}'@'%'; \
         GRANT {privileges} ON `{}`.* TO '{user}'@'%';",
        database.replace('_', "\\_"),
        shard1.replace('_', "\\_")
    ));

    let url = |db: &str| format!("mysql://{user}:{password}@127.0.0.1:3306/{db}");
    let env = vec![
        ("MYSQL_URL".into(), url(&database)),
        ("SHARD_MYSQL_URLS".into(), format!("{},{}", url(&database), url(&shard1))),
    ];
    let opts = ClusterOpts { nodes: 3, env, fast: true, shard_ports: vec![3306, 3306] };
    let cluster = Cluster::start("grants", opts).await;
    cluster.client.wait_for_leaders(Duration::from_secs(30)).await.expect("both shards' leaders");
    let mut attributes = instaface_bus::graph::Attributes::new();
    attributes.insert("name".into(), "Grace".into());
    let (entity, _) = retry(|| cluster.client.create_entity("user", attributes.clone())).await;
    let read = retry(|| cluster.client.get_entity(entity.id, Default::default())).await;
    assert_eq!(read.attributes["name"], "Grace");
    let (friend, _) = retry(|| cluster.client.create_entity_near("user", Default::default(), Some(entity.id))).await;
    retry(|| cluster.client.add_assoc(entity.id, "friend", friend.id, Default::default())).await;
    let (count, _) = retry(|| cluster.client.list_assocs(friend.id, "friend", 10, 0, Default::default())).await;
    assert_eq!(count, 1, "the inverse association was written");
    // Both shards wrote: creates without `near` go to each shard in turn.
    let (other, _) = retry(|| cluster.client.create_entity("user", Default::default())).await;
    let (more, _) = retry(|| cluster.client.create_entity("user", Default::default())).await;
    let shards: std::collections::BTreeSet<u32> =
        [entity.id, other.id, more.id].iter().map(|&id| instaface_bus::shards::shard_of(id)).collect();
    assert_eq!(shards.len(), 2, "ids {} {} {}", entity.id, other.id, more.id);
}

/// Retries `op` while the cluster settles (up to 20 s).
async fn retry<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(mut op: impl FnMut() -> F) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("retrying: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("still failing after 20 s: {e:?}"),
        }
    }
}

fn root_sql(sql: &str) {
    let out = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-u", "root", "-e", sql])
        .output()
        .expect("the mariadb client");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Drops the test's MariaDB user and database.
struct MysqlUser {
    user: String,
    database: String,
}

impl Drop for MysqlUser {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(format!(
                "DROP USER IF EXISTS '{}'@'%'; DROP DATABASE IF EXISTS `{}`; DROP DATABASE IF EXISTS `{}_s1`;",
                self.user, self.database, self.database
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn fill_interpolates_like_compose() {
    let env = vec![("A".to_string(), "1".to_string()), ("E".to_string(), String::new())];
    assert_eq!(fill("x${A}y ${B:-2} ${E:-3} ${E-4} ${B-5} $$A $${A}", &env), "x1y 2 3  5 $A ${A}");
}

#[test]
fn interpolations_are_found() {
    let found = interpolations("a ${X} b ${Y:-1} c $${NOT} d ${Z-2}");
    assert_eq!(found, vec![("X".into(), false), ("Y".into(), true), ("Z".into(), true)]);
}
