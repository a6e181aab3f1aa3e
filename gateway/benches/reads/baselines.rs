//! The two baselines, each an axum server in a process of its own (this bench binary run
//! again with `INSTAFACE_READS_SERVE` set, on a multi-threaded tokio runtime with one worker
//! per CPU, as `instaface-gateway`'s `#[tokio::main]`), and [`ServerProcess`], which starts
//! one and stops it.
//!
//! - **trivial**: `GET /trivial` answers a fixed entity-sized JSON body: the floor for any
//!   HTTP service on this machine.
//! - **direct-MySQL**: the gateway's read routes, `GET /api/entities/{id}` and
//!   `GET /api/entities/{id}/associations/{type}?limit=&offset=`, with the same JSON (the
//!   gateway's own model types) and the same 404 for an entity that does not exist, served
//!   straight from the cluster's MySQL database with `mysql_async`: a pool
//!   (`BENCH_MYSQL_POOL` connections, default the concurrency) and prepared statements
//!   (`exec_*` prepares each statement once per connection and caches it). What a team
//!   without our cache would run: no cache, no bus, one or two indexed statements per read
//!   (a list's count, then its page when the page is not empty; an empty list also looks
//!   the entity up, to answer 404 as the gateway does). Autocommit reads, not one snapshot
//!   transaction per list as the node's store does, so this baseline does a little less
//!   work per list than a fully consistent one would.
//!
//! A served process exits when its stdin closes, so it never outlives the bench.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use instaface_gateway::bounds;
use instaface_gateway::model::{Association, AssociationList, Entity};
use mysql_async::prelude::Queryable;
use serde::Deserialize;

use crate::workload::TRIVIAL_PATH;

/// The variable that makes this binary a server instead of the bench.
pub const SERVE_VAR: &str = "INSTAFACE_READS_SERVE";

/// The trivial handler's body: fixed, and about the size of an entity of the graph.
const TRIVIAL_BODY: &str = r#"{"id":1,"type":"user","attributes":{"name":"user 1"},"created":1795319300499,"updated":1795319300499,"version":1}"#;

/// Serves what `INSTAFACE_READS_SERVE` names (`trivial` or `mysql`) on `LISTEN_ADDR`, if set;
/// returns `false` when it is not set (the process is the bench).
pub fn serve_if_asked() -> bool {
    let Ok(what) = std::env::var(SERVE_VAR) else {
        return false;
    };
    let addr: SocketAddr = std::env::var("LISTEN_ADDR").expect("LISTEN_ADDR").parse().expect("LISTEN_ADDR");
    // Exit when the bench goes away (it holds our stdin).
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let app = match what.as_str() {
            "trivial" => Router::new().route(TRIVIAL_PATH, get(trivial)),
            "mysql" => {
                let url = std::env::var("MYSQL_URL").expect("MYSQL_URL");
                let pool_size: usize =
                    std::env::var("BENCH_MYSQL_POOL").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
                let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&url).expect("MYSQL_URL"))
                    .pool_opts(mysql_async::PoolOpts::default().with_constraints(
                        mysql_async::PoolConstraints::new(pool_size.max(1), pool_size.max(1)).expect("pool size"),
                    ));
                let pool = mysql_async::Pool::new(opts);
                Router::new()
                    .route("/api/entities/{id}", get(entity))
                    .route("/api/entities/{id}/associations/{type}", get(assocs))
                    .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route".into()) })
                    .with_state(pool)
            }
            other => panic!("{SERVE_VAR}={other}: expected trivial or mysql"),
        };
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        eprintln!("{what} baseline listening on {addr}");
        axum::serve(listener, app).await.expect("serve");
    });
    true
}

async fn trivial() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], TRIVIAL_BODY).into_response()
}

/// The gateway's error shape: `{"error": {"code", "message"}}`.
fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": { "code": code, "message": message } }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::BAD_GATEWAY, "upstream_error", e.to_string())
}

/// An entity id in a path, as the gateway parses it ([`bounds::parse_u64`]).
#[allow(clippy::result_large_err)] // an axum Response is the error a handler answers with
fn parse_id(raw: &str) -> Result<u64, Response> {
    bounds::parse_u64(raw)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "bad_request", format!("{raw:?} is not an entity id")))
}

type EntityRow = (u64, String, String, u64, u64, u64);

fn attributes(raw: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(raw).unwrap_or_default()
}

async fn entity(State(pool): State<mysql_async::Pool>, UrlPath(id): UrlPath<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let mut conn = match pool.get_conn().await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let row: Option<EntityRow> = match conn
        .exec_first("SELECT id, etype, attributes, created, updated, version FROM entities WHERE id = ?", (id,))
        .await
    {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    match row {
        Some((id, etype, attrs, created, updated, version)) => {
            Json(Entity { id, etype, attributes: attributes(&attrs), created, updated, version }).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", format!("no entity {id}")),
    }
}

#[derive(Deserialize)]
struct Page {
    limit: Option<u32>,
    offset: Option<u32>,
}

async fn assocs(
    State(pool): State<mysql_async::Pool>,
    UrlPath((id, atype)): UrlPath<(String, String)>,
    Query(page): Query<Page>,
) -> Response {
    let from = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if !instaface_bus::graph::valid_type_name(&atype) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("association type {atype:?} is not a plain identifier"),
        );
    }
    // The gateway's bounds and defaults (`gateway/src/bounds.rs`).
    let (Ok(limit), Ok(offset)) = (bounds::ASSOC_LIMIT.check(page.limit), bounds::ASSOC_OFFSET.check(page.offset))
    else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "limit or offset out of bounds".into());
    };
    let mut conn = match pool.get_conn().await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let count: u64 = match conn
        .exec_first("SELECT COUNT(*) FROM associations WHERE from_id = ? AND atype = ?", (from, &atype))
        .await
    {
        Ok(c) => c.unwrap_or(0),
        Err(e) => return internal(e),
    };
    let mut items = Vec::new();
    if count > u64::from(offset) && limit > 0 {
        let rows: Vec<(u64, String, u64, String, u64)> = match conn
            .exec(
                "SELECT from_id, atype, to_id, attributes, created FROM associations \
                 WHERE from_id = ? AND atype = ? ORDER BY created DESC, to_id DESC LIMIT ? OFFSET ?",
                (from, &atype, limit, offset),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return internal(e),
        };
        items = rows
            .into_iter()
            .map(|(from, atype, to, attrs, created)| Association {
                from,
                atype,
                to,
                attributes: attributes(&attrs),
                created,
            })
            .collect();
    }
    if count == 0 {
        // As the gateway: an entity that does not exist has no lists to show.
        match conn.exec_first::<u8, _, _>("SELECT 1 FROM entities WHERE id = ?", (from,)).await {
            Ok(Some(_)) => {}
            Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", format!("no entity {from}")),
            Err(e) => return internal(e),
        }
    }
    Json(AssociationList { count, items }).into_response()
}

/// A server process (a baseline, or the gateway), killed and reaped on drop.
pub struct ServerProcess {
    pub name: &'static str,
    pub base: String,
    /// `None` for a server inside a process the bench does not own (a node's gateway).
    child: Option<Child>,
    pid: u32,
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A server that lives in process `pid`, which someone else started and stops.
    pub fn inside(name: &'static str, base: String, pid: u32) -> ServerProcess {
        ServerProcess { name, base, child: None, pid }
    }

    /// Starts `cmd` (stdout and stderr to `log`, stdin a pipe the process may watch),
    /// listening on `port`.
    pub fn spawn(name: &'static str, mut cmd: Command, port: u16, log: &Path) -> ServerProcess {
        let file = std::fs::File::create(log).expect("server log");
        cmd.stdin(Stdio::piped()).stdout(Stdio::from(file.try_clone().expect("log"))).stderr(Stdio::from(file));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        ServerProcess { name, base: format!("http://127.0.0.1:{port}"), pid: child.id(), child: Some(child) }
    }

    /// Starts this binary as the baseline `what` (`trivial` or `mysql`).
    pub fn baseline(name: &'static str, what: &str, mysql_url: &str, pool: usize, log: &Path) -> ServerProcess {
        let port = free_port();
        let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
        cmd.env(SERVE_VAR, what)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("MYSQL_URL", mysql_url)
            .env("BENCH_MYSQL_POOL", pool.to_string());
        ServerProcess::spawn(name, cmd, port, log)
    }

    /// Waits until `path` answers 200 (with a 2 s timeout per try), up to `timeout`.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, path: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("{} exited ({status})", self.name));
            }
            if let Ok(r) = http.get(format!("{}{path}", self.base)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not answer {path} with 200 within {timeout:?}", self.name));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub use instaface_testkit::free_port;
