//! The NATS roles of `compose/nats-auth.sh` on a real nats-server (a port of its own,
//! configured by the script itself, as compose and the local launcher run it):
//!
//! - the bot may read and write and nothing else: every cluster subject is refused to it,
//!   publishing and subscribing, and so are the other roles' inboxes;
//! - the gateway cannot speak for the nodes (heartbeats, votes, acks, invalidations…);
//! - the observer listens to `P.>` and publishes nothing but discovery requests;
//! - what the roles need works: a bot's read reaches a node in the `readers` queue group
//!   and the answer comes back to the bot's inbox; a node answers a peer's ack once, into
//!   the asker's inbox only; and the same users hold on three routed servers;
//! - every binary under its own role: nodes elect and serve a write and reads to graph
//!   clients on the gateway's and the bot's users, the gateway binary serves REST (status
//!   requests included), the bot binary runs, the observer pings the nodes' micro service
//!   and taps the traffic, and the server logs no permission violation at all.
//!
//! A refusal is the server's `-ERR 'Permissions Violation for …'`, which async-nats hands
//! to the connection's event callback as `Event::ServerError`; a refused publish is also
//! checked not to arrive (a witness on `P.>` sees the same connection's next, allowed,
//! message and not the refused one).
//!
//! Needs `nats-server` (`/usr/sbin/nats-server`, installed by compose/services.sh); the
//! multi-process test also needs the binaries built, MariaDB and Redis.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use instaface_bus::config::BusArgs;
use instaface_bus::graph::{Attributes, Consistency};
use instaface_bus::graph_client::{ClientConfig, GraphClient};
use instaface_bus::Bus;
use instaface_testkit::{bin_dir, binary, free_port, Cluster, ClusterOpts};
use serde_json::Value;

const ROLES: [&str; 4] = ["node", "gateway", "bot", "observer"];

fn nats_auth_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/nats-auth.sh")
}

fn nats_server_binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nats-server");
    if sbin.exists() {
        return sbin;
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("nats-server")).find(|p| p.exists()))
        .expect("nats-server is not installed (compose/services.sh installs it)")
}

/// `sh compose/nats-auth.sh ARGS…` with `env` (and nothing of the test's own NATS_*).
fn nats_auth(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    let mut cmd = Command::new("sh");
    cmd.arg(nats_auth_script()).args(args);
    for role in ROLES {
        cmd.env_remove(password_var(role));
    }
    cmd.env_remove("INSTAFACE_PREFIX");
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().expect("sh compose/nats-auth.sh")
}

fn password_var(role: &str) -> String {
    format!("NATS_{}_PASSWORD", role.to_uppercase())
}

/// The roles' inbox prefixes, from `nats-auth.sh roles`.
fn inboxes() -> BTreeMap<String, String> {
    let out = nats_auth(&["roles"], &[]);
    assert!(out.status.success(), "nats-auth.sh roles: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let map: BTreeMap<String, String> = text
        .lines()
        .map(|l| {
            let (r, i) = l.split_once(' ').expect("ROLE INBOX");
            (r.to_string(), i.to_string())
        })
        .collect();
    assert_eq!(map.len(), ROLES.len(), "roles: {text}");
    map
}

/// The role users of one stack: a prefix, a password per role, their inbox prefixes.
#[derive(Clone)]
struct Users {
    prefix: String,
    passwords: BTreeMap<String, String>,
    inboxes: BTreeMap<String, String>,
}

impl Users {
    fn new(prefix: &str) -> Users {
        let passwords = ROLES
            .iter()
            .map(|r| (r.to_string(), format!("{r}-{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())))
            .collect();
        Users { prefix: prefix.to_string(), passwords, inboxes: inboxes() }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self.passwords.iter().map(|(r, p)| (password_var(r), p.clone())).collect();
        env.push(("INSTAFACE_PREFIX".into(), self.prefix.clone()));
        env
    }

    /// Writes the server configuration with `nats-auth.sh config FILE`.
    fn write_config(&self, path: &Path) {
        let out = nats_auth(&["config", path.to_str().expect("UTF-8 path")], &self.env());
        assert!(out.status.success(), "nats-auth.sh config: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn subject(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }
}

/// A nats-server running the generated configuration; dropping it kills it.
struct Server {
    port: u16,
    log: PathBuf,
    child: Child,
}

impl Server {
    /// One server on a free port, with `extra` arguments (cluster flags), logging to
    /// `dir/name.log`.
    fn start(users: &Users, dir: &Path, name: &str, port: u16, extra: &[String]) -> Server {
        let conf = dir.join(format!("{name}.conf"));
        users.write_config(&conf);
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-c"])
            .arg(&conf)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("log")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn nats-server");
        let server = Server { port, log, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server does not listen on {port}: {}", server.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self, users: &Users, role: &str) -> String {
        format!("nats://{role}:{}@127.0.0.1:{}", users.passwords[role], self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The permission violations the server logged (`… Publish Violation - User "bot" …`).
    fn violations(&self) -> Vec<String> {
        self.log_text().lines().filter(|l| l.contains("Violation")).map(str::to_string).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_dir(what: &str) -> PathBuf {
    let dir = bin_dir().join("../test-logs").join(format!("t{:08x}.{what}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

/// A plain NATS connection as one role, recording the server's errors.
struct Conn {
    role: String,
    /// The stack's subject prefix.
    prefix: String,
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Conn {
    async fn connect(users: &Users, server: &Server, role: &str) -> Conn {
        let url = format!("nats://127.0.0.1:{}", server.port);
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        let client = async_nats::ConnectOptions::with_user_and_password(role.into(), users.passwords[role].clone())
            .custom_inbox_prefix(users.inboxes[role].clone())
            .request_timeout(Some(Duration::from_secs(3)))
            .event_callback(move |event| {
                let sink = sink.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        sink.lock().unwrap().push(e.to_string());
                    }
                }
            })
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("{role} cannot connect: {e}"));
        Conn { role: role.into(), prefix: users.prefix.clone(), client, errors }
    }

    /// Waits up to 3 s for the server to refuse `what` (`Publish to "subject"`,
    /// `Subscription to "subject"`); true if it did.
    async fn refused(&self, what: &str) -> bool {
        let needle = format!("Permissions Violation for {what}");
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if self.errors.lock().unwrap().iter().any(|e| e.contains(&needle)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A round trip to the server: when it returns, the server has processed everything
    /// this connection sent before (subscriptions included: `flush` only empties the
    /// socket, so another connection's message could still overtake a fresh SUB). The
    /// node hears its own message on a subject of its own (`P.node.sync-….echo`); the
    /// observer asks a `$SRV.PING` nobody answers and gets the server's no-responders
    /// status. The gateway and the bot may subscribe to nothing they may publish to, so
    /// they flush and wait a moment instead.
    async fn sync(&self) {
        let token = format!("sync-{:016x}", rand::random::<u64>());
        match self.role.as_str() {
            "node" => {
                let subject = format!("{}.node.{token}.echo", self.prefix);
                let mut echo = self.client.subscribe(subject.clone()).await.expect("subscribe");
                self.client.publish(subject, "".into()).await.expect("publish");
                let heard = tokio::time::timeout(Duration::from_secs(3), echo.next()).await;
                assert!(matches!(heard, Ok(Some(_))), "the node's round trip to the server: {heard:?}");
            }
            "observer" => match self.client.request(format!("$SRV.PING.{token}"), "".into()).await {
                Err(e) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => {}
                other => panic!("the observer's round trip to the server: {other:?}"),
            },
            _ => {
                self.client.flush().await.expect("flush");
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
    }

    /// Asserts the server has refused nothing of this connection's so far (after a round
    /// trip, and a moment for the event callback).
    async fn assert_no_refusal(&self, doing: &str) {
        self.sync().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let errors = self.errors.lock().unwrap().clone();
        assert!(errors.is_empty(), "{} was refused {doing}: {errors:?}", self.role);
    }

    async fn publish(&self, subject: &str, payload: &'static str) {
        self.client.publish(subject.to_string(), payload.into()).await.expect("publish");
        self.client.flush().await.expect("flush");
    }

    /// Publishes to `subject` every 100 ms until `sub` (another connection's fresh
    /// subscription, which the server may not have registered yet) hears it, for up to
    /// 3 s; true if it did.
    async fn publish_until_heard(&self, subject: &str, sub: &mut async_nats::Subscriber) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            self.publish(subject, "hello").await;
            if let Ok(msg) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
                return msg.is_some();
            }
        }
        false
    }

    async fn assert_subscribe_refused(&self, subject: &str) {
        let _sub = self.client.subscribe(subject.to_string()).await.expect("subscribe (sent)");
        self.client.flush().await.expect("flush");
        assert!(
            self.refused(&format!("Subscription to \"{subject}\"")).await,
            "{} may subscribe to {subject}",
            self.role
        );
    }

    async fn assert_queue_subscribe_refused(&self, subject: &str, queue: &str) {
        let _sub = self.client.queue_subscribe(subject.to_string(), queue.to_string()).await.expect("subscribe (sent)");
        self.client.flush().await.expect("flush");
        assert!(
            self.refused(&format!("Subscription to \"{subject}\" using queue \"{queue}\"")).await,
            "{} may subscribe to {subject} in queue group {queue}",
            self.role
        );
    }
}

/// An observer's subscription to `P.>`: sees whatever is published under the prefix.
struct Witness {
    sub: async_nats::Subscriber,
}

impl Witness {
    async fn new(observer: &Conn, users: &Users) -> Witness {
        let sub = observer.client.subscribe(users.subject(">")).await.expect("observer subscribes");
        observer.assert_no_refusal("P.>").await;
        Witness { sub }
    }

    /// The subjects of the messages up to the first one on `marker` (which must come
    /// within 3 s).
    async fn until(&mut self, marker: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.sub.next())
                .await
                .unwrap_or_else(|_| panic!("the witness did not see {marker} within 3 s (saw {seen:?})"))
                .expect("subscription open");
            if msg.subject.as_str() == marker {
                return seen;
            }
            seen.push(msg.subject.to_string());
        }
    }
}

/// Publishes to `subject` as `conn`: the server must refuse it, and the witness must not
/// see it before `conn`'s next message, on `marker` (a subject `conn` may publish to).
async fn assert_publish_refused(conn: &Conn, subject: &str, witness: &mut Witness, marker: &str) {
    conn.publish(subject, "forged").await;
    assert!(conn.refused(&format!("Publish to \"{subject}\"")).await, "{} may publish to {subject}", conn.role);
    conn.publish(marker, "marker").await;
    let seen = witness.until(marker).await;
    assert!(!seen.iter().any(|s| s == subject), "{subject}, refused to {}, was delivered anyway", conn.role);
}

/// The subjects only the nodes may publish to (with `x` as a node id).
fn cluster_subjects(users: &Users) -> Vec<String> {
    [
        "heartbeat",
        "vote",
        "invalidate",
        "events",
        "node.x.ack",
        "node.x.vote_reply",
        "node.x.timeout_now",
        "node.x.fill",
        "node.x.debug.panic",
        "shard.1.node.x.intent",
    ]
    .iter()
    .map(|s| users.subject(s))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_reads_and_writes_and_does_nothing_else() {
    let dir = log_dir("roles-bot");
    let users = Users::new(&format!("t{:08x}.roles", rand::random::<u32>()));
    let server = Server::start(&users, &dir, "nats", free_port(), &[]);
    let bot = Conn::connect(&users, &server, "bot").await;
    let observer = Conn::connect(&users, &server, "observer").await;
    let node = Conn::connect(&users, &server, "node").await;
    let mut witness = Witness::new(&observer, &users).await;
    let marker = users.subject("graph.read");

    // The cluster's own subjects, the admin command, node status: refused, and not delivered.
    let mut forbidden = cluster_subjects(&users);
    forbidden.extend([users.subject("control.unplug"), users.subject("node.x.status"), users.subject("elsewhere")]);
    for subject in &forbidden {
        assert_publish_refused(&bot, subject, &mut witness, &marker).await;
    }
    for subject in ["$SRV.PING", "_INBOX_node.x.y", "_INBOX_gateway.x.y", "_INBOX.x.y"] {
        bot.publish(subject, "forged").await;
        assert!(bot.refused(&format!("Publish to \"{subject}\"")).await, "the bot may publish to {subject}");
    }

    // Listening in: other roles' inboxes, the default inbox, requests meant for nodes.
    for role in ["node", "gateway", "observer"] {
        bot.assert_subscribe_refused(&format!("{}.>", users.inboxes[role])).await;
    }
    for subject in ["_INBOX.>", ">", "$SRV.>"] {
        bot.assert_subscribe_refused(subject).await;
    }
    for suffix in [">", "vote", "invalidate", "control.unplug", "graph.read", "node.x.write", "node.*.>"] {
        bot.assert_subscribe_refused(&users.subject(suffix)).await;
    }
    bot.assert_queue_subscribe_refused(&users.subject("graph.read"), "readers").await;

    // What it needs: heartbeats and events (leader tracking) reach it; its read reaches a
    // node in the readers group and the answer comes back to its own inbox.
    bot.errors.lock().unwrap().clear();
    let mut heartbeats = bot.client.subscribe(users.subject("heartbeat")).await.expect("subscribe");
    let mut events = bot.client.subscribe(users.subject("events")).await.expect("subscribe");
    bot.assert_no_refusal("heartbeats and events").await;
    for (what, sub) in [("heartbeat", &mut heartbeats), ("events", &mut events)] {
        assert!(node.publish_until_heard(&users.subject(what), sub).await, "no {what} reached the bot");
    }
    let mut readers =
        node.client.queue_subscribe(users.subject("graph.read"), "readers".into()).await.expect("subscribe");
    node.assert_no_refusal("the readers group").await;
    let answering = tokio::spawn({
        let client = node.client.clone();
        async move {
            let req = readers.next().await.expect("a read");
            let reply = req.reply.clone().expect("a reply subject");
            client.publish(reply.clone(), "the answer".into()).await.expect("reply");
            client.flush().await.expect("flush");
            reply.to_string()
        }
    });
    for subject in [users.subject("graph.read"), users.subject("node.x.read"), users.subject("node.x.write")] {
        if subject.ends_with("graph.read") {
            let answer = bot.client.request(subject.clone(), "read".into()).await.expect("the read is answered");
            assert_eq!(&answer.payload[..], b"the answer");
        } else {
            // Nobody answers these here: the publish itself must be allowed.
            bot.publish(&subject, "request").await;
        }
    }
    let reply = answering.await.expect("answering task");
    assert!(
        reply.starts_with(&format!("{}.", users.inboxes["bot"])),
        "the bot's reply subject {reply} is not in its own inbox"
    );
    bot.assert_no_refusal("reads and writes").await;
    node.assert_no_refusal("answering").await;
    observer.assert_no_refusal("listening").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_cannot_speak_for_the_nodes() {
    let dir = log_dir("roles-gateway");
    let users = Users::new(&format!("t{:08x}.roles", rand::random::<u32>()));
    let server = Server::start(&users, &dir, "nats", free_port(), &[]);
    let gateway = Conn::connect(&users, &server, "gateway").await;
    let observer = Conn::connect(&users, &server, "observer").await;
    let node = Conn::connect(&users, &server, "node").await;
    let bot = Conn::connect(&users, &server, "bot").await;
    let mut witness = Witness::new(&observer, &users).await;
    let marker = users.subject("control.unplug");

    for subject in &cluster_subjects(&users) {
        assert_publish_refused(&gateway, subject, &mut witness, &marker).await;
    }
    for role in ["node", "bot", "observer"] {
        gateway.assert_subscribe_refused(&format!("{}.>", users.inboxes[role])).await;
    }
    for suffix in [">", "vote", "invalidate", "graph.read", "node.x.write", "node.x.status"] {
        gateway.assert_subscribe_refused(&users.subject(suffix)).await;
    }

    // What it needs: status requests answered into its inbox, unplug commands reaching
    // the nodes, heartbeats and events; and a bot snooping on its inbox sees nothing.
    gateway.errors.lock().unwrap().clear();
    let mut status = node.client.subscribe(users.subject("node.n1.status")).await.expect("subscribe");
    let mut unplug = node.client.subscribe(users.subject("control.unplug")).await.expect("subscribe");
    node.assert_no_refusal("status and unplug").await;
    let snoop = bot.client.subscribe(format!("{}.>", users.inboxes["gateway"])).await.expect("subscribe (sent)");
    assert!(bot.refused(&format!("Subscription to \"{}.>\"", users.inboxes["gateway"])).await);
    let answering = tokio::spawn({
        let client = node.client.clone();
        async move {
            let req = status.next().await.expect("a status request");
            client.publish(req.reply.clone().expect("reply subject"), "status".into()).await.expect("reply");
            client.flush().await.expect("flush");
        }
    });
    let answer = gateway.client.request(users.subject("node.n1.status"), "".into()).await.expect("status answered");
    assert_eq!(&answer.payload[..], b"status");
    answering.await.expect("answering task");
    gateway.publish(&users.subject("control.unplug"), "unplug").await;
    assert!(
        tokio::time::timeout(Duration::from_secs(3), unplug.next()).await.is_ok(),
        "the unplug command did not reach the node"
    );
    let mut heartbeats = gateway.client.subscribe(users.subject("heartbeat")).await.expect("subscribe");
    let _events = gateway.client.subscribe(users.subject("events")).await.expect("subscribe");
    gateway.assert_no_refusal("its own work").await;
    assert!(
        node.publish_until_heard(&users.subject("heartbeat"), &mut heartbeats).await,
        "no heartbeat reached the gateway"
    );
    let mut snoop = snoop;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), snoop.next()).await.is_err(),
        "the bot saw a reply meant for the gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_listens_and_publishes_nothing() {
    let dir = log_dir("roles-observer");
    let users = Users::new(&format!("t{:08x}.roles", rand::random::<u32>()));
    let server = Server::start(&users, &dir, "nats", free_port(), &[]);
    let observer = Conn::connect(&users, &server, "observer").await;
    let node = Conn::connect(&users, &server, "node").await;
    let bot = Conn::connect(&users, &server, "bot").await;

    let mut everything = observer.client.subscribe(users.subject(">")).await.expect("subscribe");
    observer.assert_no_refusal("P.>").await;
    node.publish(&users.subject("heartbeat"), "hb").await;
    bot.publish(&users.subject("node.n1.write"), "w").await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(3), everything.next())
            .await
            .expect("the observer hears the traffic")
            .expect("open");
        seen.push(msg.subject.to_string());
    }
    // Two connections: the server may take either message first.
    seen.sort();
    let mut expected = [users.subject("heartbeat"), users.subject("node.n1.write")];
    expected.sort();
    assert_eq!(seen, expected);

    let mut forbidden = cluster_subjects(&users);
    forbidden.extend(
        ["graph.read", "node.x.write", "node.x.read", "node.x.status", "control.unplug"]
            .iter()
            .map(|s| users.subject(s)),
    );
    forbidden.extend(["_INBOX_node.x.y", "_INBOX_observer.x.y", "$SRV.x"].iter().map(|s| s.to_string()));
    for subject in &forbidden {
        observer.publish(subject, "forged").await;
        assert!(observer.refused(&format!("Publish to \"{subject}\"")).await, "the observer may publish to {subject}");
    }
    for subject in ["_INBOX_node.>", "_INBOX_bot.>", "_INBOX.>", "$SRV.>", ">"] {
        observer.assert_subscribe_refused(subject).await;
    }
    // Nothing it tried reached anyone.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(50), everything.next()).await {
        panic!("a message the observer published was delivered: {}", msg.subject);
    }
    // Discovery requests are allowed (answered into its own inbox).
    observer.errors.lock().unwrap().clear();
    let mut ping = node.client.subscribe("$SRV.PING.instaface-node").await.expect("subscribe");
    node.assert_no_refusal("$SRV").await;
    let answering = tokio::spawn({
        let client = node.client.clone();
        async move {
            let req = ping.next().await.expect("a ping");
            client.publish(req.reply.clone().expect("reply subject"), "pong".into()).await.expect("reply");
            client.flush().await.expect("flush");
        }
    });
    let pong = observer.client.request("$SRV.PING.instaface-node", "".into()).await.expect("ping answered");
    assert_eq!(&pong.payload[..], b"pong");
    answering.await.expect("answering task");
    observer.assert_no_refusal("pinging the service").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_answer_into_the_askers_inbox_only_once() {
    let dir = log_dir("roles-node");
    let users = Users::new(&format!("t{:08x}.roles", rand::random::<u32>()));
    let server = Server::start(&users, &dir, "nats", free_port(), &[]);
    let leader = Conn::connect(&users, &server, "node").await;
    let follower = Conn::connect(&users, &server, "node").await;
    let bot = Conn::connect(&users, &server, "bot").await;

    // Everything a node subscribes to.
    let mut subs = Vec::new();
    for suffix in [
        "heartbeat",
        "vote",
        "invalidate",
        "events",
        "control.unplug",
        "node.n1.ack",
        "node.n1.vote_reply",
        "node.n1.status",
        "node.n1.debug.>",
    ] {
        subs.push(leader.client.subscribe(users.subject(suffix)).await.expect("subscribe"));
    }
    for verb in ["PING", "INFO", "STATS"] {
        for s in
            [format!("$SRV.{verb}"), format!("$SRV.{verb}.instaface-node"), format!("$SRV.{verb}.instaface-node.abc")]
        {
            subs.push(leader.client.subscribe(s).await.expect("subscribe"));
        }
    }
    let _readers =
        leader.client.queue_subscribe(users.subject("graph.read"), "readers".into()).await.expect("subscribe");
    leader.assert_no_refusal("its subscriptions").await;
    // Only in the readers group; and never another role's inbox.
    leader.assert_subscribe_refused(&users.subject("graph.read")).await;
    leader.assert_queue_subscribe_refused(&users.subject("graph.read"), "thieves").await;
    leader.assert_subscribe_refused(&format!("{}.>", users.inboxes["bot"])).await;
    for subject in
        [users.subject("graph.read"), users.subject("control.unplug"), format!("{}.x.y", users.inboxes["bot"])]
    {
        leader.publish(&subject, "no").await;
        assert!(leader.refused(&format!("Publish to \"{subject}\"")).await, "a node may publish to {subject}");
    }

    // An ack is answered once, into the follower's inbox; a second answer is refused.
    let mut acks = leader.client.subscribe(users.subject("node.n1.ack")).await.expect("subscribe");
    leader.sync().await;
    let answering = tokio::spawn({
        let client = leader.client.clone();
        async move {
            let ack = acks.next().await.expect("an ack");
            let reply = ack.reply.clone().expect("reply subject");
            client.publish(reply.clone(), "confirmed".into()).await.expect("reply");
            client.publish(reply.clone(), "again".into()).await.expect("reply");
            client.flush().await.expect("flush");
            reply.to_string()
        }
    });
    let confirmed =
        follower.client.request(users.subject("node.n1.ack"), "ack".into()).await.expect("the ack is answered");
    assert_eq!(&confirmed.payload[..], b"confirmed");
    let reply = answering.await.expect("answering task");
    assert!(reply.starts_with(&format!("{}.", users.inboxes["node"])), "{reply}");
    assert!(leader.refused(&format!("Publish to \"{reply}\"")).await, "a second answer to one request went out");
    follower.assert_no_refusal("asking").await;
    bot.assert_no_refusal("nothing").await;
}

/// compose/docker-compose.nats-cluster.yml: three routed servers with the same users
/// (routes authenticated as `route`). A bot on one server reads from a node on another;
/// every server refuses the bot what the single server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_routed_servers_hold_the_same_users() {
    let dir = log_dir("roles-cluster");
    let users = Users::new(&format!("t{:08x}.roles", rand::random::<u32>()));
    let route_pw = format!("route-{:016x}", rand::random::<u64>());
    let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let servers: Vec<Server> = (0..3)
        .map(|i| {
            let routes: Vec<String> = (0..3)
                .filter(|&j| j != i)
                .map(|j| format!("nats://route:{route_pw}@127.0.0.1:{}", route_ports[j]))
                .collect();
            let extra = vec![
                format!("--server_name=nats-{i}"),
                "--cluster_name=roles".into(),
                format!("--cluster=nats://route:{route_pw}@127.0.0.1:{}", route_ports[i]),
                format!("--routes={}", routes.join(",")),
            ];
            Server::start(&users, &dir, &format!("nats-{i}"), free_port(), &extra)
        })
        .collect();
    let node = Conn::connect(&users, &servers[0], "node").await;
    let bot = Conn::connect(&users, &servers[2], "bot").await;
    let mut readers =
        node.client.queue_subscribe(users.subject("graph.read"), "readers".into()).await.expect("subscribe");
    node.assert_no_refusal("the readers group").await;
    tokio::spawn({
        let client = node.client.clone();
        async move {
            while let Some(req) = readers.next().await {
                if let Some(reply) = req.reply {
                    let _ = client.publish(reply, "answer".into()).await;
                    let _ = client.flush().await;
                }
            }
        }
    });
    // Until the routes are up and the interest has spread.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout(
            Duration::from_secs(1),
            bot.client.request(users.subject("graph.read"), "read".into()),
        )
        .await
        {
            Ok(Ok(answer)) => {
                assert_eq!(&answer.payload[..], b"answer");
                break;
            }
            other => {
                assert!(Instant::now() < deadline, "a bot on server 2 never reached a node on server 0: {other:?}")
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bot.assert_no_refusal("reading across the cluster").await;
    for server in &servers {
        let bot = Conn::connect(&users, server, "bot").await;
        let subject = users.subject("heartbeat");
        bot.publish(&subject, "forged").await;
        assert!(
            bot.refused(&format!("Publish to \"{subject}\"")).await,
            "server {} lets the bot publish heartbeats",
            server.port
        );
    }
    // A client cannot pass for a route, and a role's password is no route password.
    for server in &servers {
        let wrong = async_nats::ConnectOptions::with_user_and_password("route".into(), route_pw.clone())
            .connect(format!("nats://127.0.0.1:{}", server.port))
            .await;
        assert!(wrong.is_err(), "the route user logs in as a client");
    }
}

/// The script itself: compose's `.env` makes a configuration nats-server accepts; bad
/// passwords and prefixes are refused; `secrets` makes a private file once and keeps it.
#[test]
fn the_script_checks_its_input_and_keeps_the_launchers_secrets() {
    let dir = log_dir("roles-script");
    // compose/.env as compose would pass it to the nats service.
    let dotenv = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/.env"))
        .expect("compose/.env");
    let env: Vec<(String, String)> = dotenv
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.trim_start().starts_with('#'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| k.starts_with("NATS_") || k == "INSTAFACE_PREFIX")
        .collect();
    let conf = dir.join("compose.conf");
    let out = nats_auth(&["config", conf.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check = Command::new(nats_server_binary()).arg("-t").arg("-c").arg(&conf).output().expect("nats-server -t");
    assert!(
        check.status.success(),
        "nats-server rejects the configuration: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(mode(&conf), 0o600, "the configuration holds passwords");
    let text = std::fs::read_to_string(&conf).unwrap();
    for role in ROLES {
        assert!(text.contains(&format!("user: \"{role}\"")), "no user {role}");
    }

    let users = Users::new("instaface");
    let mut bad = users.env();
    bad.retain(|(k, _)| k != "NATS_BOT_PASSWORD");
    assert!(!nats_auth(&["config"], &bad).status.success(), "a missing password is accepted");
    for pw in ["short", "has space in it!", "quote\"inside-it-xx", "dollar$inside-it-xx"] {
        let mut env = users.env();
        env.push(("NATS_BOT_PASSWORD".into(), pw.into()));
        assert!(!nats_auth(&["config"], &env).status.success(), "the password {pw:?} is accepted");
    }
    for prefix in ["a.>", "a..b", "a b", "*", ""] {
        let mut env = users.env();
        env.push(("INSTAFACE_PREFIX".into(), prefix.into()));
        let out = nats_auth(&["config"], &env);
        // An empty prefix means the default; every other one here is invalid.
        assert_eq!(
            out.status.success(),
            prefix.is_empty(),
            "prefix {prefix:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let secrets = dir.join("sub/secrets.env");
    assert!(nats_auth(&["secrets", secrets.to_str().unwrap()], &[]).status.success());
    assert_eq!(mode(&secrets), 0o600);
    let first = std::fs::read_to_string(&secrets).unwrap();
    for role in ROLES {
        let line = first
            .lines()
            .find(|l| l.starts_with(&format!("{}=", password_var(role))))
            .unwrap_or_else(|| panic!("no {role} password"));
        assert!(line.len() > password_var(role).len() + 24, "{line} is short");
    }
    assert!(nats_auth(&["secrets", secrets.to_str().unwrap()], &[]).status.success());
    assert_eq!(std::fs::read_to_string(&secrets).unwrap(), first, "the secrets changed on the second run");
    // A missing password is added, the others kept.
    let without_bot: String =
        first.lines().filter(|l| !l.starts_with("NATS_BOT_PASSWORD=")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&secrets, &without_bot).unwrap();
    assert!(nats_auth(&["secrets", secrets.to_str().unwrap()], &[]).status.success());
    let now = std::fs::read_to_string(&secrets).unwrap();
    assert!(now.starts_with(&without_bot) && now.contains("NATS_BOT_PASSWORD=bot-"), "{now}");
    assert_eq!(mode(&secrets), 0o600);
    let other = dir.join("other.env");
    assert!(nats_auth(&["secrets", other.to_str().unwrap()], &[]).status.success());
    assert_ne!(std::fs::read_to_string(&other).unwrap(), first, "two secrets files alike");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// `BusArgs` for a process of `role` (as the binaries read them from NATS_URL and
/// NATS_INBOX_PREFIX).
fn bus_args(users: &Users, server: &Server, role: &str) -> BusArgs {
    let mut args = BusArgs::local(&users.prefix);
    args.nats_url = server.url(users, role);
    args.nats_inbox_prefix = Some(users.inboxes[role].clone());
    args
}

fn user(name: &str) -> Attributes {
    let mut a = Attributes::new();
    a.insert("name".into(), name.into());
    a
}

async fn retry<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut op: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failure = match tokio::time::timeout(Duration::from_secs(10), op()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => format!("{e:?}"),
            Err(_) => "timed out".to_string(),
        };
        assert!(Instant::now() < deadline, "{what}: still failing after 30 s: {failure}");
        eprintln!("{what}: retrying ({failure})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kills a child process on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh cluster key, and the nodes' environment as deployed: the `node` user on the
/// server that will listen on `port`, its inbox prefix, the key.
fn keyed_node_env(users: &Users, port: u16) -> (String, Vec<(String, String)>) {
    let key = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
    let env = vec![
        ("NATS_URL".to_string(), format!("nats://node:{}@127.0.0.1:{port}", users.passwords["node"])),
        ("NATS_INBOX_PREFIX".to_string(), users.inboxes["node"].clone()),
        ("CLUSTER_KEY".to_string(), key.clone()),
    ];
    (key, env)
}

/// Every binary under its own role on one server, with a cluster key as deployed: three
/// nodes as `node` elect a leader and serve writes and reads to graph clients on the
/// gateway's and the bot's users; the gateway binary serves REST (its status polling
/// included) and unplugs a follower and plugs it back; the bot binary runs; the observer
/// pings the nodes' micro service and taps the traffic. Neither the server nor any process
/// logs a permission violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_works_under_its_own_role() {
    for bin in ["instaface-node", "instaface-gateway", "instaface-bot"] {
        binary(bin);
    }
    let dir = log_dir("roles-stack");
    // The users' passwords are chosen now, the server's configuration needs the cluster's
    // prefix, which Cluster picks: the nodes are started first, pointed at the port the
    // server will listen on (they retry the connect), and the server right after. The
    // Cluster's own client stays on the shared test NATS, where this cluster has no traffic.
    let mut users = Users::new("placeholder");
    let port = free_port();
    // As deployed: nodes and the gateway hold the cluster key, the bot does not.
    let (key, node_env) = keyed_node_env(&users, port);
    let cluster =
        Cluster::start("roles", ClusterOpts { nodes: 3, env: node_env, fast: false, ..ClusterOpts::default() }).await;
    users.prefix = cluster.prefix.clone();
    let server = Server::start(&users, &dir, "nats", port, &[]);
    eprintln!("logs in {} and {}", dir.display(), cluster.log_dir().display());

    // Graph clients on the gateway's and the bot's users.
    let mut gateway_args = bus_args(&users, &server, "gateway");
    gateway_args.cluster_key = Some(instaface_bus::auth::ClusterKey::parse(&key).expect("cluster key"));
    let gateway_bus = Bus::connect(&gateway_args, "test-gateway").await.expect("connect");
    let gateway = GraphClient::new(gateway_bus, ClientConfig::default()).await.expect("graph client");
    let bot_bus = Bus::connect(&bus_args(&users, &server, "bot"), "test-bot").await.expect("connect");
    let bot = GraphClient::new(bot_bus, ClientConfig::default()).await.expect("graph client");
    let (leader, term) =
        gateway.wait_for_leader(Duration::from_secs(60)).await.expect("a leader, heard by the gateway's user");
    eprintln!("leader {leader} (term {term})");
    bot.wait_for_leader(Duration::from_secs(10)).await.expect("a leader, heard by the bot's user");
    let (ada, _) = retry("a write as the gateway", || gateway.create_entity("user", user("Ada"))).await;
    let (grace, _) = retry("a write as the bot", || bot.create_entity("user", user("Grace"))).await;
    for client in [&gateway, &bot] {
        for consistency in [Consistency::Eventual, Consistency::Strong] {
            let read = retry("a read", || client.get_entity(ada.id, consistency)).await;
            assert_eq!(read.attributes["name"], "Ada");
            let read = retry("a read", || client.get_entity(grace.id, consistency)).await;
            assert_eq!(read.attributes["name"], "Grace");
        }
    }
    // Followers joined the readers group (a queue subscription the node role may make only
    // in that group).
    instaface_testkit::wait_until(Duration::from_secs(20), "a follower joining the readers group", || {
        cluster.ids.iter().any(|id| {
            std::fs::read_to_string(cluster.log_dir().join(format!("{id}.log")))
                .unwrap_or_default()
                .contains("joined the readers group")
        })
    })
    .await;

    // Concurrent reads go in batches (`P.graph.reads`), which both roles may send and only
    // the nodes' readers group may take (a refusal would be logged as a violation below).
    for client in [&gateway, &bot] {
        let reads = (0..100).map(|_| client.get_entity(ada.id, Consistency::Eventual));
        for read in futures::future::join_all(reads).await {
            assert_eq!(read.expect("a read in a burst").id, ada.id);
        }
    }

    // The observer: the nodes' micro service answers its discovery requests, into its inbox.
    let observer = Conn::connect(&users, &server, "observer").await;
    let inbox = observer.client.new_inbox();
    let mut answers = observer.client.subscribe(inbox.clone()).await.expect("subscribe");
    let mut answered = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.len() < 3 {
        observer.client.publish_with_reply("$SRV.PING.instaface-node", inbox.clone(), "".into()).await.expect("ping");
        observer.client.flush().await.expect("flush");
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), answers.next()).await {
            if msg.payload.is_empty() {
                continue; // "no responders" (a status, no payload): the service is not up yet
            }
            let v: Value = serde_json::from_slice(&msg.payload).expect("a JSON ping answer");
            answered.insert(v["id"].as_str().unwrap_or_default().to_string(), v);
        }
        assert!(
            Instant::now() < deadline,
            "the micro service answered the observer {} times: {answered:?}",
            answered.len()
        );
    }
    observer.assert_no_refusal("pinging the nodes").await;

    // instaface-node tap as the observer.
    let mut tap = Proc(
        Command::new(binary("instaface-node"))
            .args(["tap", "--only", "heartbeat"])
            .env("NATS_URL", server.url(&users, "observer"))
            .env("NATS_INBOX_PREFIX", &users.inboxes["observer"])
            .env("INSTAFACE_PREFIX", &users.prefix)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(dir.join("tap.log")).expect("log")))
            .spawn()
            .expect("spawn the tap"),
    );
    let stdout = tap.0.stdout.take().expect("stdout");
    let line = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
        }),
    )
    .await
    .expect("the tap printed a heartbeat within 10 s")
    .expect("tap reader")
    .expect("tap output");
    let heartbeat: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("tap printed {line:?}: {e}"));
    assert_eq!(heartbeat["subject"], users.subject("heartbeat"));
    drop(tap);

    // The gateway binary as `gateway`: status polling, a write and a read over REST.
    let addr = format!("127.0.0.1:{}", free_port());
    let _gateway_proc = Proc(
        Command::new(binary("instaface-gateway"))
            .env("NATS_URL", server.url(&users, "gateway"))
            .env("NATS_INBOX_PREFIX", &users.inboxes["gateway"])
            .env("INSTAFACE_PREFIX", &users.prefix)
            .env("LISTEN_ADDR", &addr)
            .env("CLUSTER_KEY", &key)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(dir.join("gateway.log")).expect("log")))
            .stderr(Stdio::from(std::fs::File::create(dir.join("gateway.err.log")).expect("log")))
            .spawn()
            .expect("spawn the gateway"),
    );
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let overview: Option<Value> = match http.get(format!("http://{addr}/api/cluster")).send().await {
            Ok(resp) if resp.status().is_success() => resp.json().await.ok(),
            _ => None,
        };
        let ready = overview.as_ref().is_some_and(|c| {
            c["leader"].is_string()
                && c["nodes"].as_array().is_some_and(|n| {
                    n.len() == 3 && n.iter().all(|n| n["reachable"] == true && n["status_age_ms"].is_u64())
                })
        });
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway did not report 3 answering nodes within 60 s: {overview:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let created: Value = http
        .post(format!("http://{addr}/api/entities/user"))
        .json(&serde_json::json!({"name": "Hedy"}))
        .send()
        .await
        .expect("POST")
        .error_for_status()
        .expect("created")
        .json()
        .await
        .expect("JSON");
    let id = created["id"].as_u64().unwrap_or_else(|| panic!("no id in {created}"));
    let read: Value = http
        .get(format!("http://{addr}/api/entities/{id}"))
        .send()
        .await
        .expect("GET")
        .error_for_status()
        .expect("read")
        .json()
        .await
        .expect("JSON");
    assert_eq!(read["attributes"]["name"], "Hedy", "{read}");
    // Unplugging a follower and plugging it back (P.control.unplug, signed) through the
    // gateway's admin route (loopback, no ADMIN_TOKEN).
    let overview = || async {
        let resp = http.get(format!("http://{addr}/api/cluster")).send().await.ok()?;
        resp.json::<Value>().await.ok()
    };
    let leader_now = overview().await.and_then(|c| c["leader"].as_str().map(String::from)).expect("a leader");
    let follower = cluster.ids.iter().find(|id| **id != leader_now).expect("a follower").clone();
    for unplugged in [true, false] {
        let resp = http
            .put(format!("http://{addr}/api/cluster/nodes/{follower}/unplugged"))
            .json(&serde_json::json!({ "unplugged": unplugged }))
            .send()
            .await
            .expect("PUT unplugged");
        assert!(resp.status().is_success(), "unplugging {follower} ({unplugged}): {}", resp.status());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = overview().await;
            let node = state
                .as_ref()
                .and_then(|c| c["nodes"].as_array()?.iter().find(|n| n["id"] == follower.as_str()).cloned());
            if node.as_ref().is_some_and(|n| n["unplugged"] == unplugged) {
                break;
            }
            assert!(Instant::now() < deadline, "{follower} not shown unplugged={unplugged} within 20 s: {node:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The bot binary as `bot`.
    let bot_out = tokio::task::spawn_blocking({
        let mut cmd = Command::new(binary("instaface-bot"));
        cmd.args(["--ops", "60", "--concurrency", "2", "--seed", "5", "--json", "--quiet"])
            .env("NATS_URL", server.url(&users, "bot"))
            .env("NATS_INBOX_PREFIX", &users.inboxes["bot"])
            .env("INSTAFACE_PREFIX", &users.prefix)
            .stdin(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("bot.log")).expect("log")));
        move || cmd.output()
    });
    let bot_out = tokio::time::timeout(Duration::from_secs(180), bot_out)
        .await
        .expect("the bot finished within 180 s")
        .expect("join")
        .expect("bot output");
    assert!(bot_out.status.success(), "the bot exited with {}", bot_out.status);
    let text = String::from_utf8_lossy(&bot_out.stdout);
    let summary: Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("bot summary {text:?}: {e}"));
    assert_eq!(summary["ops"], 60, "{summary}");
    assert_eq!(
        (summary["totals"]["failed"].as_u64(), summary["totals"]["outcome_unknown"].as_u64()),
        (Some(0), Some(0)),
        "{summary}"
    );

    // Nothing was refused to anyone along the way.
    let violations = server.violations();
    assert!(violations.is_empty(), "the server refused something to the stack:\n{}", violations.join("\n"));
    let mut logs: Vec<PathBuf> = cluster.ids.iter().map(|id| cluster.log_dir().join(format!("{id}.log"))).collect();
    logs.extend(["gateway.log", "gateway.err.log", "bot.log", "tap.log"].iter().map(|f| dir.join(f)));
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!text.contains("Permissions Violation"), "{} mentions a permission violation", log.display());
    }
}

/// Two shards under the roles, with a cluster key: each shard's group subjects
/// (`P.shard.<k>.…`) are allowed to the roles as their one-shard forms are. Both shards
/// elect a leader among nodes on the `node` user; graph clients on the gateway's and the
/// bot's users write to both shards and read them (alone, in bursts, at the leader); the
/// server refuses nothing and no node logs a violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_cluster_works_under_the_roles() {
    binary("instaface-node");
    let dir = log_dir("roles-shards");
    let mut users = Users::new("placeholder");
    let port = free_port();
    let (key, node_env) = keyed_node_env(&users, port);
    let opts = ClusterOpts {
        env: node_env,
        shard_ports: vec![3306, instaface_testkit::MYSQL2_PORT],
        ..ClusterOpts::default()
    };
    let cluster = Cluster::start("roles-shards", opts).await;
    users.prefix = cluster.prefix.clone();
    let server = Server::start(&users, &dir, "nats", port, &[]);
    eprintln!("logs in {} and {}", dir.display(), cluster.log_dir().display());

    let shards = instaface_bus::shards::Shards::new(2).expect("two shards");
    let config = ClientConfig { shards, ..ClientConfig::default() };
    let mut gateway_args = bus_args(&users, &server, "gateway");
    gateway_args.cluster_key = Some(instaface_bus::auth::ClusterKey::parse(&key).expect("cluster key"));
    let gateway_bus = Bus::connect(&gateway_args, "test-gateway").await.expect("connect");
    let gateway = GraphClient::new(gateway_bus, config.clone()).await.expect("graph client");
    let bot_bus = Bus::connect(&bus_args(&users, &server, "bot"), "test-bot").await.expect("connect");
    let bot = GraphClient::new(bot_bus, config).await.expect("graph client");
    gateway.wait_for_leaders(Duration::from_secs(60)).await.expect("both shards' leaders, heard by the gateway");
    bot.wait_for_leaders(Duration::from_secs(10)).await.expect("both shards' leaders, heard by the bot");

    let mut ids = Vec::new();
    for (i, client) in [&gateway, &bot, &gateway, &bot].into_iter().enumerate() {
        let (e, _) = retry("a write", || client.create_entity("user", user(&format!("u{i}")))).await;
        ids.push(e.id);
    }
    let shards_hit: std::collections::BTreeSet<_> = ids.iter().map(|&id| instaface_bus::shards::shard_of(id)).collect();
    assert_eq!(shards_hit.len(), 2, "the creates went to one shard: {ids:?}");
    for client in [&gateway, &bot] {
        for consistency in [Consistency::Eventual, Consistency::Strong] {
            let read = retry("a read of both shards", || client.get_entities(ids.clone(), consistency)).await;
            assert_eq!(read.len(), ids.len());
        }
        let reads = (0..100).map(|i| client.get_entity(ids[i % ids.len()], Consistency::Eventual));
        for read in futures::future::join_all(reads).await {
            read.expect("a read in a burst");
        }
    }

    // An association across the shards: the other shard's row comes through an intent,
    // node to node, under the node role and the cluster key.
    let by_shard = |k| *ids.iter().find(|&&id| instaface_bus::shards::shard_of(id) == k).expect("an id");
    let (a, b) = (by_shard(0), by_shard(1));
    retry("a cross-shard association", || gateway.add_assoc(a, "friend", b, Attributes::new())).await;
    for (from, to) in [(a, b), (b, a)] {
        instaface_testkit::poll_until(Duration::from_secs(20), "both rows of a cross-shard pair", || async {
            match bot.list_assocs(from, "friend", 10, 0, Consistency::Strong).await {
                Ok((1, items)) if items[0].to == to => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }

    let violations = server.violations();
    assert!(violations.is_empty(), "the server refused something:\n{}", violations.join("\n"));
    for id in &cluster.ids {
        let log = cluster.log_dir().join(format!("{id}.log"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!text.contains("Permissions Violation"), "{} mentions a permission violation", log.display());
    }
}
