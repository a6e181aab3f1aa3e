//! The simulated cluster: nodes (a [`NodeCore`], a [`CacheCore`] and a store), clients,
//! the MySQL model and a faulty network, on one global simulated clock. Everything a
//! node's actors do is done here the way they do it — commands performed in order, cache
//! commands before anything leaves the node, the store one write at a time, fills from
//! the leader's cache and the leader's from MySQL — so the cores are checked as the
//! runtime uses them.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use instaface_bus::graph::{CacheKey, CacheValue, Entity};
use instaface_bus::messages::{Ack, AckConfirm, Heartbeat, Invalidate, Role, TimeoutNow, VoteReply, VoteRequest};
use instaface_bus::NodeId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::db::{key, BatchResult, Db, WriteKind};
use super::history::History;
use crate::cache::{Answer, CacheCore, FetchId, FetchOrder};
use crate::election::{ElectionConfig, PersistedVote};
use crate::invalidation::{InvalidationMode, LogConfig, PlantedBug, WriteId};
use crate::protocol::{BatchedWrite, Command, Event, NodeCore, WriteAnswer};
use crate::simnet::{ms, rand_dur, Clock, Links, Recorder, Timeline, Weather};

pub const HEARTBEAT: Duration = Duration::from_millis(100);
pub const ELECTION_MIN: Duration = Duration::from_millis(750);
pub const ELECTION_MAX: Duration = Duration::from_millis(1000);
pub const DRIFT: f64 = 0.05;
/// Small, so windows overflow and outboxes outgrow them.
pub const WINDOW_MAX: usize = 6;
/// How long a client waits for an answer before it gives up on an operation.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a follower's fill may take before its fetch fails (the runtime's is 3 s).
const FILL_TIMEOUT: Duration = Duration::from_millis(1000);

pub fn election_config(id: &str) -> ElectionConfig {
    ElectionConfig {
        id: id.to_string(),
        heartbeat: HEARTBEAT,
        election_min: ELECTION_MIN,
        election_max: ELECTION_MAX,
        lease: ElectionConfig::default_lease(ELECTION_MIN, DRIFT),
        drift: DRIFT,
    }
}

/// A defect planted in the simulated runtime rather than in the cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeBug {
    /// The store loads the oldest outbox rows at takeover instead of the newest.
    LoadOldest,
    /// A restarted node numbers its cache's fetches from 0 again, so a fill started by the
    /// previous incarnation can complete a fetch of the new one.
    FetchIdsRestart,
    /// The runtime hands a step's invalidations to the cache to apply later (as a message
    /// to another task would be), so the step's ack can leave before the cache drops the
    /// keys. The node's protocol actor applies them under the cache's lock first.
    InvalidateAfterSend,
}

/// How long [`RuntimeBug::InvalidateAfterSend`]'s invalidations take to reach the cache:
/// a message behind a busy mailbox. (At 5 ms the "cut follower" scenario's clients landed
/// no read in the window in 60 seeds: this simulation cannot see a reorder that short.)
const LATE_INVALIDATION: Duration = Duration::from_millis(50);

/// What a run plants and how it is set up.
#[derive(Clone, Copy, Debug)]
pub struct Opts {
    pub nodes: usize,
    pub clients: usize,
    /// Clients that act only when the scenario says (`Sim::probe_write`).
    pub probes: usize,
    pub entities: usize,
    pub mode: InvalidationMode,
    pub core_bug: Option<PlantedBug>,
    pub runtime_bug: Option<RuntimeBug>,
    /// Whether one write in fifty stalls in MySQL for 0.1–0.8 s.
    pub slow_writes: bool,
}

impl Opts {
    pub fn new(nodes: usize) -> Opts {
        Opts {
            nodes,
            clients: 3,
            probes: 0,
            entities: 3,
            mode: InvalidationMode::Lease,
            core_bug: None,
            runtime_bug: None,
            slow_writes: true,
        }
    }
}

/// Who sends or receives a message: nodes first, then clients.
type Endpoint = usize;

#[derive(Clone, Debug)]
enum Msg {
    Heartbeat(Heartbeat),
    Invalidate(Invalidate),
    Vote(VoteRequest),
    VoteReply(VoteReply),
    Ack(Ack),
    Confirm(AckConfirm),
    TimeoutNow(TimeoutNow),
    /// A follower's cache fill, to the leader.
    Fill {
        fetch: FetchId,
        keys: Vec<CacheKey>,
    },
    FillReply {
        fetch: FetchId,
        result: Result<Vec<CacheValue>, String>,
    },
    Read {
        op: u64,
        entity: usize,
    },
    ReadReply {
        op: u64,
        result: Result<u64, String>,
    },
    Write {
        op: u64,
        kind: WriteKind,
    },
    WriteReply {
        op: u64,
        result: Result<u64, String>,
    },
}

impl Msg {
    /// Cluster-internal traffic, which partitions cut (clients reach every node).
    fn is_peer(&self) -> bool {
        !matches!(self, Msg::Read { .. } | Msg::ReadReply { .. } | Msg::Write { .. } | Msg::WriteReply { .. })
    }
}

/// What a node's own runtime hands itself: the store's results, MySQL reads, timeouts.
#[derive(Clone, Debug)]
enum Local {
    Core(Event),
    StoreOpen {
        term: u64,
    },
    StoreExec,
    DbFetch {
        fetch: FetchId,
        keys: Vec<CacheKey>,
    },
    FillTimeout {
        fetch: FetchId,
    },
    /// A step's invalidation reaching the cache late ([`RuntimeBug::InvalidateAfterSend`]).
    Invalidate(Vec<CacheKey>),
}

#[derive(Clone, Debug)]
enum Ev {
    Deliver { from: Endpoint, to: Endpoint, msg: Msg },
    Tick { node: usize, incarnation: u32 },
    Membership { node: usize, incarnation: u32 },
    Local { node: usize, incarnation: u32, what: Local },
    ClientNext { client: usize },
    ClientTimeout { client: usize, op: u64 },
    Fault(Fault),
}

#[derive(Clone, Debug)]
pub enum Fault {
    /// Block `from -> to` (and back when `both`).
    Cut {
        from: usize,
        to: usize,
        both: bool,
    },
    Uncut {
        from: usize,
        to: usize,
        both: bool,
    },
    /// Cut every link between the nodes in the mask and the others.
    Split(u32),
    Unsplit(u32),
    Crash(usize),
    Restart(usize),
    /// Crash whoever leads then, restart it `down` later.
    CrashLeader {
        down: Duration,
    },
    /// Cut whoever leads then off its peers for `lasts`.
    IsolateLeader {
        lasts: Duration,
    },
    /// Cut one follower of whoever leads then off its peers for `lasts`.
    IsolateFollower {
        lasts: Duration,
    },
    /// The node's process stops (SIGSTOP, a long pause) for `lasts`.
    Stall {
        node: usize,
        lasts: Duration,
    },
    StallLeader {
        lasts: Duration,
    },
    Weather(Weather),
    Transfer,
    PruneFails(bool),
}

/// Who waits for a cache lookup's answer.
#[derive(Clone, Debug)]
enum Waiter {
    Client { client: usize, op: u64, entity: usize },
    Fill { to: usize, fetch: FetchId },
}

struct Store {
    term: u64,
    ready: bool,
    queue: VecDeque<(WriteId, WriteKind)>,
    busy: bool,
}

/// A client's write waiting at the leader.
struct WriteCtx {
    client: usize,
    op: u64,
    /// The version it wrote (or found), once it ran.
    version: u64,
}

struct Running {
    core: NodeCore,
    cache: CacheCore<Waiter, String>,
    /// The cache's own view of its serving right (the runtime applies it to the node's
    /// cache, under the cache's lock, right after the step's cache commands).
    serving_until: Option<Duration>,
    store: Option<Store>,
    writes: HashMap<WriteId, WriteCtx>,
    next_write: u64,
}

struct SimNode {
    id: String,
    run: Option<Running>,
    clock: Clock,
    incarnation: u32,
    disk: PersistedVote,
    stalled_until: Duration,
    tick_at: Option<Duration>,
    /// The latest time a local event is scheduled for (they stay in order).
    last_local: Duration,
}

struct Client {
    /// The operation in flight: its id, when it was sent, and what.
    busy: Option<(u64, Duration, ClientOp)>,
    next_op: u64,
}

#[derive(Clone, Copy, Debug)]
enum ClientOp {
    Read { node: usize, entity: usize },
    Write { kind: WriteKind },
}

/// Counters for the report.
#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub events: u64,
    pub elections: u64,
    pub crashes: u64,
    pub writes_acked: u64,
    pub writes_failed: u64,
    pub reads_ok: u64,
    pub reads_refused: u64,
    pub max_outbox: usize,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.events += o.events;
        self.elections += o.elections;
        self.crashes += o.crashes;
        self.writes_acked += o.writes_acked;
        self.writes_failed += o.writes_failed;
        self.reads_ok += o.reads_ok;
        self.reads_refused += o.reads_refused;
        self.max_outbox = self.max_outbox.max(o.max_outbox);
    }
}

/// The cluster, its clients, the database, the network and the clock.
pub struct Sim {
    pub seed: u64,
    pub rng: StdRng,
    pub now: Duration,
    queue: Timeline<Ev>,
    opts: Opts,
    nodes: Vec<SimNode>,
    clients: Vec<Client>,
    /// Whether clients start new operations.
    pub clients_on: bool,
    db: Db,
    history: History,
    links: Links,
    weather: Weather,
    healed: bool,
    /// Term -> the node that led it.
    leaders: HashMap<u64, usize>,
    stats: Stats,
    /// The trace when replaying a seed, and the first invariant broken.
    rec: Recorder,
    /// Reads refused by a node that was the leader, or a follower of it, while that
    /// leader and a majority were connected (see `should_serve`), except at the nodes in
    /// `unwatched`.
    pub watch_availability: bool,
    pub unwatched: Vec<usize>,
    pub unavailable_reads: Vec<String>,
    /// Every acknowledged write: when the client sent it and when it got the answer.
    pub write_acks: Vec<(Duration, Duration)>,
}

impl Sim {
    /// Whom a hand-over names: no one (the core's choice) or a node — any node, the
    /// leader itself or one that did not ack included, which the core must pass over —
    /// picked by the clock, so the schedules' random stream is unchanged.
    fn transfer_target(&self) -> Option<String> {
        let n = self.nodes.len();
        let pick = (self.now.as_micros() as usize / 7) % (n + 1);
        (pick < n).then(|| self.nodes[pick].id.clone())
    }
    pub fn new(seed: u64, opts: Opts, trace: bool) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = opts.nodes;
        let nodes = (0..n)
            .map(|i| SimNode {
                id: format!("n{i}"),
                run: None,
                clock: Clock::random(&mut rng, Duration::ZERO, DRIFT),
                incarnation: 0,
                disk: PersistedVote::default(),
                stalled_until: Duration::ZERO,
                tick_at: None,
                last_local: Duration::ZERO,
            })
            .collect();
        let mut sim = Sim {
            seed,
            rng,
            now: Duration::ZERO,
            queue: Timeline::default(),
            opts,
            nodes,
            clients: (0..opts.clients + opts.probes).map(|_| Client { busy: None, next_op: 0 }).collect(),
            clients_on: true,
            // The real store runs a batch's writes in the order that suits it (by kind).
            db: Db::shuffled(opts.entities, seed),
            history: History::new(opts.entities),
            links: Links::new(n),
            weather: Weather::CALM,
            healed: false,
            leaders: HashMap::new(),
            stats: Stats::default(),
            rec: Recorder::new(trace),
            watch_availability: false,
            unwatched: Vec::new(),
            unavailable_reads: Vec::new(),
            write_acks: Vec::new(),
        };
        for i in 0..n {
            sim.boot(i);
        }
        for c in 0..opts.clients {
            let at = rand_dur(&mut sim.rng, ms(0), ms(50));
            sim.queue.push(at, Ev::ClientNext { client: c });
        }
        sim
    }

    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.writes_acked = self.history.writes_acked;
        s.writes_failed = self.history.writes_failed;
        s.reads_ok = self.history.reads_ok;
        s.reads_refused = self.history.reads_refused;
        s
    }

    // ----- failures and tracing -----

    fn log(&mut self, line: impl FnOnce() -> String) {
        self.rec.log(self.now, line);
    }

    /// Records the first failure; the run stops after the current event.
    pub fn fail(&mut self, what: &str) {
        self.rec.fail(format!(
            "protocol sim seed {} ({} nodes) failed at t = {:?}: {what}\nreplay: PROTOCOL_SIM_SEED={} cargo test -p instaface-actors protocol::sim -- --nocapture",
            self.seed,
            self.n(),
            self.now,
            self.seed
        ));
    }

    pub fn failed(&self) -> bool {
        self.rec.failed()
    }

    pub fn result(&mut self) -> Result<(), String> {
        self.rec.result()
    }

    // ----- nodes -----

    fn local(&self, i: usize) -> Duration {
        self.nodes[i].clock.local(self.now)
    }

    fn index(&self, id: &str) -> Option<usize> {
        let i: usize = id.strip_prefix('n')?.parse().ok()?;
        (i < self.n()).then_some(i)
    }

    /// Starts node `i` (a first start, or the restart of its whole actor tree) with the
    /// term and vote it persisted.
    fn boot(&mut self, i: usize) {
        let seed = self.rng.random();
        let clock =
            if self.now.is_zero() { self.nodes[i].clock } else { Clock::random(&mut self.rng, self.now, DRIFT) };
        let log = LogConfig { mode: self.opts.mode, window_max: WINDOW_MAX, planted: self.opts.core_bug };
        let node = &mut self.nodes[i];
        node.clock = clock;
        let local = clock.local(self.now);
        let core = NodeCore::new(election_config(&node.id), log, seed, local, node.disk.clone());
        let base = if self.opts.runtime_bug == Some(RuntimeBug::FetchIdsRestart) {
            0
        } else {
            u64::from(node.incarnation) << 32
        };
        node.run = Some(Running {
            core,
            cache: CacheCore::with_fetch_base(1000, base),
            serving_until: None,
            store: None,
            writes: HashMap::new(),
            next_write: 0,
        });
        node.tick_at = None;
        let incarnation = node.incarnation;
        // Redis is read at start and every two seconds.
        let at = self.now + rand_dur(&mut self.rng, ms(0), ms(300));
        self.queue.push(at, Ev::Membership { node: i, incarnation });
        self.schedule_tick(i);
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.run.take().is_some() {
            node.incarnation += 1;
            node.tick_at = None;
            self.stats.crashes += 1;
        }
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].run.is_none() {
            self.boot(i);
        }
    }

    fn schedule_tick(&mut self, i: usize) {
        let node = &self.nodes[i];
        let Some(run) = &node.run else { return };
        let at = node.clock.real(run.core.next_deadline()).max(self.now).max(node.stalled_until);
        if node.tick_at.is_none_or(|p| at < p) {
            let incarnation = node.incarnation;
            self.nodes[i].tick_at = Some(at);
            self.queue.push(at, Ev::Tick { node: i, incarnation });
        }
    }

    /// Schedules something node `i`'s store does, after `delay`, in order with
    /// everything else it does (one actor, one mailbox).
    fn local_later(&mut self, i: usize, delay: Duration, what: Local) {
        let node = &mut self.nodes[i];
        let at = (self.now + delay).max(node.last_local);
        node.last_local = at;
        let incarnation = node.incarnation;
        self.queue.push(at, Ev::Local { node: i, incarnation, what });
    }

    /// Schedules a timer or a task of node `i`'s (a fill's timeout, a MySQL read), in no
    /// particular order with the rest.
    fn local_timer(&mut self, i: usize, delay: Duration, what: Local) {
        let at = self.now + delay;
        let incarnation = self.nodes[i].incarnation;
        self.queue.push(at, Ev::Local { node: i, incarnation, what });
    }

    /// Steps node `i`'s core with `event` and performs the commands; the cache then
    /// learns its serving right (the runtime applies it after the step's cache commands,
    /// before anything of the step leaves the node).
    fn step(&mut self, i: usize, event: Event) {
        // A stopped process does nothing; its events wait (see `postpone`).
        assert!(self.now >= self.nodes[i].stalled_until, "stepping a stalled node {i} at {:?}: {event:?}", self.now);
        let local = self.local(i);
        if self.nodes[i].run.is_none() {
            return;
        }
        if self.rec.tracing() {
            let text = format!("{event:?}");
            let id = self.nodes[i].id.clone();
            self.log(|| format!("{id} <- {}", clip(&text)));
        }
        let cmds = match self.nodes[i].run.as_mut() {
            Some(run) => run.core.step(local, event),
            None => return,
        };
        self.perform(i, cmds);
        if let Some(run) = self.nodes[i].run.as_mut() {
            run.serving_until = run.core.serving_until(local);
        }
        self.schedule_tick(i);
    }

    fn perform(&mut self, i: usize, cmds: Vec<Command>) {
        for cmd in cmds {
            if self.rec.tracing() {
                let id = self.nodes[i].id.clone();
                let text = format!("{cmd:?}");
                self.log(|| format!("{id} -> {}", clip(&text)));
            }
            match cmd {
                Command::Persist(p) => self.nodes[i].disk = p,
                Command::RoleChanged { role, term, .. } => self.role_changed(i, role, term),
                Command::CacheInvalidate(keys) => {
                    let keys: Vec<CacheKey> = keys.iter().filter_map(|k| k.parse().ok()).collect();
                    if self.opts.runtime_bug == Some(RuntimeBug::InvalidateAfterSend) {
                        self.local_timer(i, LATE_INVALIDATION, Local::Invalidate(keys));
                    } else if let Some(run) = self.nodes[i].run.as_mut() {
                        run.cache.invalidate(&keys);
                    }
                }
                Command::CacheClear => {
                    if let Some(run) = self.nodes[i].run.as_mut() {
                        run.cache.clear();
                    }
                }
                Command::BroadcastHeartbeat(h) => self.broadcast(i, Msg::Heartbeat(h)),
                Command::BroadcastInvalidate(v) => self.broadcast(i, Msg::Invalidate(v)),
                Command::SendAck { to, ack } => self.send_to(i, &to, Msg::Ack(ack)),
                Command::AckReply { to, confirm } => self.send_to(i, &to, Msg::Confirm(confirm)),
                Command::BroadcastVoteRequest(r) => self.broadcast(i, Msg::Vote(r)),
                Command::SendVoteReply { to, reply } => self.send_to(i, &to, Msg::VoteReply(reply)),
                Command::SendTimeoutNow { to, msg } => self.send_to(i, &to, Msg::TimeoutNow(msg)),
                Command::Answer { write, answer, .. } => self.answer_write(i, write, answer),
                Command::PruneOutbox { through } => self.db.prune(through),
                Command::Candidacy { .. } | Command::Reachability { .. } => {}
            }
        }
        self.stats.max_outbox = self.stats.max_outbox.max(self.db.outbox_len());
    }

    fn role_changed(&mut self, i: usize, role: Role, term: u64) {
        if role == Role::Leader {
            self.stats.elections += 1;
            if let Some(&first) = self.leaders.get(&term) {
                if first != i {
                    let what = format!("two leaders of term {term}: {} and {}", self.nodes[first].id, self.nodes[i].id);
                    self.fail(&what);
                }
            }
            self.leaders.insert(term, i);
        }
        let Some(run) = self.nodes[i].run.as_mut() else {
            return;
        };
        if role == Role::Leader {
            run.store = Some(Store { term, ready: false, queue: VecDeque::new(), busy: false });
            let delay = rand_dur(&mut self.rng, ms(2), ms(40));
            self.local_later(i, delay, Local::StoreOpen { term });
        } else if let Some(store) = run.store.take() {
            // Writes queued but never run certainly did not happen.
            let failed: Vec<_> = store.queue.iter().filter_map(|(w, _)| run.writes.remove(w)).collect();
            for w in failed {
                self.reply_client(i, w.client, Msg::WriteReply { op: w.op, result: Err("not the leader".into()) });
            }
        }
    }

    // ----- the network -----

    fn broadcast(&mut self, from: usize, msg: Msg) {
        for to in 0..self.n() {
            if to != from {
                self.send(from, to, msg.clone());
            }
        }
    }

    fn send_to(&mut self, from: usize, to: &str, msg: Msg) {
        if let Some(to) = self.index(to) {
            self.send(from, to, msg);
        }
    }

    fn send(&mut self, from: Endpoint, to: Endpoint, msg: Msg) {
        let n = self.n();
        if msg.is_peer() && from < n && to < n && self.links.blocked(from, to) {
            return;
        }
        for delay in self.weather.deliveries(&mut self.rng) {
            self.queue.push(self.now + delay, Ev::Deliver { from, to, msg: msg.clone() });
        }
    }

    fn reply_client(&mut self, from: usize, client: usize, msg: Msg) {
        let to = self.n() + client;
        self.send(from, to, msg);
    }

    // ----- running -----

    /// Runs events up to `end`; stops early (returning true) once `done` holds, or at the
    /// first failure (returning false).
    pub fn run_until(&mut self, end: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        while let Some((at, ev)) = self.queue.pop_until(end) {
            self.now = at;
            self.stats.events += 1;
            self.handle(ev);
            if self.rec.failed() {
                return false;
            }
            if done(self) {
                return true;
            }
        }
        self.now = self.now.max(end);
        done(self)
    }

    /// Delays an event for a stalled node until the stall ends (in order).
    fn postpone(&mut self, node: usize, ev: &Ev) -> bool {
        let until = self.nodes[node].stalled_until;
        if self.now < until {
            self.queue.push(until, ev.clone());
            return true;
        }
        false
    }

    fn handle(&mut self, ev: Ev) {
        let n = self.n();
        match &ev {
            Ev::Deliver { to, .. } if *to < n && self.postpone(*to, &ev) => return,
            Ev::Tick { node, .. } | Ev::Membership { node, .. } | Ev::Local { node, .. }
                if self.postpone(*node, &ev) =>
            {
                return
            }
            _ => {}
        }
        match ev {
            Ev::Deliver { from, to, msg } if to < n => self.deliver(from, to, msg),
            Ev::Deliver { to, msg, .. } => self.client_reply(to - n, msg),
            Ev::Tick { node, incarnation } => {
                let nd = &mut self.nodes[node];
                if nd.incarnation != incarnation || nd.tick_at.is_none() {
                    return;
                }
                nd.tick_at = None;
                self.step(node, Event::Tick);
            }
            Ev::Membership { node, incarnation } => {
                if self.nodes[node].incarnation != incarnation || self.nodes[node].run.is_none() {
                    return;
                }
                let all: BTreeSet<NodeId> = self.nodes.iter().map(|n| n.id.clone()).collect();
                self.step(node, Event::Membership(all));
                self.queue.push(self.now + ms(2000), Ev::Membership { node, incarnation });
            }
            Ev::Local { node, incarnation, what } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].run.is_some() {
                    self.local_event(node, what);
                }
            }
            Ev::ClientNext { client } => self.client_next(client),
            Ev::ClientTimeout { client, op } => {
                let c = &mut self.clients[client];
                if c.busy.as_ref().is_some_and(|(o, _, _)| *o == op) {
                    if let Some((_, _, ClientOp::Write { .. })) = c.busy.take() {
                        self.history.writes_failed += 1;
                    } else {
                        self.history.reads_refused += 1;
                    }
                    self.client_later(client);
                }
            }
            Ev::Fault(f) => {
                if !self.healed {
                    self.log(|| format!("fault {f:?}"));
                    self.fault(f);
                }
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) {
        if self.nodes[to].run.is_none() {
            // A client's request to a process that is gone: NATS answers "no responders".
            match msg {
                Msg::Read { op, .. } => {
                    let result = Err("no responders".to_string());
                    self.send(to, from, Msg::ReadReply { op, result });
                }
                Msg::Write { op, .. } => {
                    let result = Err("no responders".to_string());
                    self.send(to, from, Msg::WriteReply { op, result });
                }
                _ => {}
            }
            return;
        }
        match msg {
            Msg::Heartbeat(h) => self.step(to, Event::Heartbeat(h)),
            Msg::Invalidate(v) => self.step(to, Event::Invalidate(v)),
            Msg::Vote(r) => self.step(to, Event::VoteRequest(r)),
            Msg::VoteReply(r) => self.step(to, Event::VoteReply(r)),
            Msg::Ack(a) => self.step(to, Event::Ack(a)),
            Msg::Confirm(c) => self.step(to, Event::AckConfirm(c)),
            Msg::TimeoutNow(t) => self.step(to, Event::TimeoutNow(t)),
            Msg::Fill { fetch, keys } => self.serve_fill(to, from, fetch, keys),
            Msg::FillReply { fetch, result } => self.fetch_done(to, fetch, result),
            Msg::Read { op, entity } => self.serve_read(to, from - self.n(), op, entity),
            Msg::Write { op, kind } => self.accept_write(to, from - self.n(), op, kind),
            Msg::ReadReply { .. } | Msg::WriteReply { .. } => {}
        }
    }

    // ----- reads, fills and the cache -----

    fn serving(&self, i: usize) -> bool {
        let local = self.local(i);
        self.nodes[i].run.as_ref().and_then(|r| r.serving_until).is_some_and(|u| local < u)
    }

    fn serve_read(&mut self, i: usize, client: usize, op: u64, entity: usize) {
        if !self.serving(i) {
            self.reply_client(i, client, Msg::ReadReply { op, result: Err("no read lease".into()) });
            return;
        }
        if self.rec.tracing() {
            let id = self.nodes[i].id.clone();
            let cached =
                self.nodes[i].run.as_ref().and_then(|r| r.cache.peek(&CacheKey::Entity(entity as u64)).cloned());
            let text = format!("{cached:?}");
            self.log(|| format!("{id} read e:{entity} (client {client} op {op}); cached {}", clip(&text)));
        }
        let waiter = Waiter::Client { client, op, entity };
        self.lookup(i, vec![CacheKey::Entity(entity as u64)], waiter);
    }

    fn serve_fill(&mut self, i: usize, from: usize, fetch: FetchId, keys: Vec<CacheKey>) {
        if !self.serving(i) || self.nodes[i].run.as_ref().map(|r| r.core.role()) != Some(Role::Leader) {
            let result = Err("the leader holds no lease".to_string());
            self.send(i, from, Msg::FillReply { fetch, result });
            return;
        }
        self.lookup(i, keys, Waiter::Fill { to: from, fetch });
    }

    fn lookup(&mut self, i: usize, keys: Vec<CacheKey>, waiter: Waiter) {
        let Some(run) = self.nodes[i].run.as_mut() else {
            return;
        };
        let found = run.cache.lookup(&keys, waiter);
        if let Some(answer) = found.answer {
            self.deliver_answer(i, answer);
        }
        if let Some(order) = found.fetch {
            self.start_fetch(i, order);
        }
    }

    /// A fetch for missed keys: from MySQL at the leader, from the leader's cache at a
    /// follower.
    fn start_fetch(&mut self, i: usize, order: FetchOrder) {
        let Some(run) = self.nodes[i].run.as_ref() else {
            return;
        };
        let leading = run.core.role() == Role::Leader;
        let leader = run.core.leader().and_then(|l| self.index(l));
        let FetchOrder { id, keys } = order;
        if leading {
            let delay = rand_dur(&mut self.rng, ms(1), ms(15));
            self.local_timer(i, delay, Local::DbFetch { fetch: id, keys });
        } else if let Some(l) = leader.filter(|&l| l != i) {
            self.send(i, l, Msg::Fill { fetch: id, keys });
            self.local_timer(i, FILL_TIMEOUT, Local::FillTimeout { fetch: id });
        } else {
            self.fetch_done(i, id, Err("no leader to fill from".into()));
        }
    }

    fn fetch_done(&mut self, i: usize, fetch: FetchId, result: Result<Vec<CacheValue>, String>) {
        if self.rec.tracing() {
            let id = self.nodes[i].id.clone();
            let text = format!("{fetch} -> {}", summarize(&result));
            self.log(|| format!("{id} fetch done {text}"));
        }
        let Some(run) = self.nodes[i].run.as_mut() else {
            return;
        };
        let answers = run.cache.complete_fetch_in_order(fetch, result);
        for a in answers {
            self.deliver_answer(i, a);
        }
    }

    fn deliver_answer(&mut self, i: usize, answer: Answer<Waiter, String>) {
        let (waiter, values) = answer.into_values();
        match waiter {
            Waiter::Client { client, op, entity } => {
                let result = values.map_err(|e| e.to_string()).and_then(|v| match v.into_iter().next() {
                    Some((_, CacheValue::Entity { entity: Some(e) })) => Ok(e.version),
                    _ => Err(format!("no value for entity {entity}")),
                });
                self.reply_client(i, client, Msg::ReadReply { op, result });
            }
            Waiter::Fill { to, fetch } => {
                let result = values.map(|v| v.into_iter().map(|(_, value)| value).collect()).map_err(|e| e.to_string());
                self.send(i, to, Msg::FillReply { fetch, result });
            }
        }
    }

    // ----- the store -----

    fn accept_write(&mut self, i: usize, client: usize, op: u64, kind: WriteKind) {
        let Some(run) = self.nodes[i].run.as_mut() else {
            return;
        };
        let leading = run.core.role() == Role::Leader;
        let Some(store) = run.store.as_mut().filter(|s| s.ready && leading) else {
            let result = Err("not the leader".to_string());
            self.reply_client(i, client, Msg::WriteReply { op, result });
            return;
        };
        let write = WriteId(run.next_write);
        run.next_write += 1;
        run.writes.insert(write, WriteCtx { client, op, version: 0 });
        store.queue.push_back((write, kind));
        if !store.busy {
            store.busy = true;
            let delay = self.write_delay();
            self.local_later(i, delay, Local::StoreExec);
        }
    }

    fn write_delay(&mut self) -> Duration {
        if self.opts.slow_writes && self.rng.random_bool(0.02) {
            rand_dur(&mut self.rng, ms(100), ms(800))
        } else {
            rand_dur(&mut self.rng, ms(1), ms(8))
        }
    }

    fn local_event(&mut self, i: usize, what: Local) {
        match what {
            Local::Core(event) => self.step(i, event),
            Local::StoreOpen { term } => self.store_open(i, term),
            Local::StoreExec => self.store_exec(i),
            Local::DbFetch { fetch, keys } => {
                let leading = self.nodes[i].run.as_ref().and_then(|r| r.store.as_ref()).is_some_and(|s| s.ready);
                let result: Result<Vec<CacheValue>, String> = if leading {
                    Ok(keys
                        .iter()
                        .map(|k| match k {
                            CacheKey::Entity(e) => entity_value(*e, self.db.version(*e as usize)),
                            CacheKey::Assocs { .. } => CacheValue::Entity { entity: None },
                        })
                        .collect())
                } else {
                    Err("not the leader".to_string())
                };
                if self.rec.tracing() {
                    let id = self.nodes[i].id.clone();
                    let text = format!("{fetch} {keys:?} -> {}", summarize(&result));
                    self.log(|| format!("{id} MySQL fill {text}"));
                }
                self.fetch_done(i, fetch, result);
            }
            Local::FillTimeout { fetch } => self.fetch_done(i, fetch, Err("the fill timed out".into())),
            Local::Invalidate(keys) => {
                if let Some(run) = self.nodes[i].run.as_mut() {
                    run.cache.invalidate(&keys);
                }
            }
        }
    }

    fn store_open(&mut self, i: usize, term: u64) {
        let id = self.nodes[i].id.clone();
        let Some(run) = self.nodes[i].run.as_mut() else {
            return;
        };
        if run.store.as_ref().is_none_or(|s| s.term != term) {
            return;
        }
        match self.db.raise_fence(term, &id) {
            Err(stored) => {
                run.store = None;
                self.local_later(i, Duration::ZERO, Local::Core(Event::Fenced { term: stored }));
            }
            Ok(()) => {
                let oldest = self.opts.runtime_bug == Some(RuntimeBug::LoadOldest);
                let (latest, entries) = self.db.load_outbox(WINDOW_MAX, oldest);
                if let Some(store) = run.store.as_mut() {
                    store.ready = true;
                }
                let event = Event::OutboxLoaded { term, latest, entries };
                self.local_later(i, Duration::ZERO, Local::Core(event));
            }
        }
    }

    /// Runs every queued write as one batch — one transaction, like the store actor's
    /// group commit: the fence is checked once, and either all of it commits (each write
    /// changing something or not) or none of it does.
    fn store_exec(&mut self, i: usize) {
        let id = self.nodes[i].id.clone();
        let Some(run) = self.nodes[i].run.as_mut() else {
            return;
        };
        let Some(store) = run.store.as_mut() else {
            return;
        };
        store.busy = false;
        if store.queue.is_empty() {
            return;
        }
        let term = store.term;
        let queued: Vec<(WriteId, WriteKind)> = store.queue.drain(..).collect();
        let kinds: Vec<WriteKind> = queued.iter().map(|(_, kind)| *kind).collect();
        let result = self.db.write_batch(term, &id, &kinds, &mut self.rng);
        if self.rec.tracing() {
            let text = format!("{queued:?} -> {result:?}");
            self.rec.log(self.now, || format!("{id} MySQL batch {text}"));
        }
        match result {
            Ok(results) => {
                let mut writes = Vec::with_capacity(queued.len());
                for ((write, kind), result) in queued.into_iter().zip(results) {
                    let (seq, version, keys) = match result {
                        BatchResult::Committed { seq, version } => (seq, version, vec![key(kind.entity())]),
                        BatchResult::Unchanged { seq, version } => (seq, version, Vec::new()),
                    };
                    if let Some(w) = run.writes.get_mut(&write) {
                        w.version = version;
                    }
                    writes.push(BatchedWrite { seq, keys, write });
                }
                let delay = rand_dur(&mut self.rng, ms(0), ms(2));
                self.local_later(i, delay, Local::Core(Event::Committed { term, writes }));
            }
            Err(stored) => {
                if let Some(store) = run.store.as_mut() {
                    store.ready = false;
                }
                let refused: Vec<WriteCtx> = queued.iter().filter_map(|(write, _)| run.writes.remove(write)).collect();
                for w in refused {
                    let reply = Msg::WriteReply { op: w.op, result: Err("fenced".into()) };
                    self.reply_client(i, w.client, reply);
                }
                self.local_later(i, Duration::ZERO, Local::Core(Event::Fenced { term: stored }));
            }
        }
    }

    fn answer_write(&mut self, i: usize, write: WriteId, answer: WriteAnswer) {
        let Some(w) = self.nodes[i].run.as_mut().and_then(|r| r.writes.remove(&write)) else {
            return;
        };
        let result = match answer {
            WriteAnswer::Covered { .. } => Ok(w.version),
            WriteAnswer::Unconfirmed => Err("outcome unknown".into()),
        };
        self.reply_client(i, w.client, Msg::WriteReply { op: w.op, result });
    }

    // ----- clients -----

    /// The node a client sends writes to: the leader of the highest term (clients learn
    /// it from heartbeats), or any node.
    fn leader_guess(&mut self) -> usize {
        self.current_leader().unwrap_or_else(|| self.rng.random_range(0..self.n()))
    }

    pub fn current_leader(&self) -> Option<usize> {
        (0..self.n())
            .filter_map(|i| self.nodes[i].run.as_ref().map(|r| (i, r)))
            .filter(|(_, r)| r.core.role() == Role::Leader)
            .max_by_key(|(_, r)| r.core.term())
            .map(|(i, _)| i)
    }

    fn client_later(&mut self, client: usize) {
        if client >= self.opts.clients {
            return; // a probe
        }
        let at = self.now + rand_dur(&mut self.rng, ms(0), ms(20));
        self.queue.push(at, Ev::ClientNext { client });
    }

    fn client_next(&mut self, client: usize) {
        if !self.clients_on || self.clients[client].busy.is_some() {
            if !self.clients_on {
                // Poll again later, so clients resume when switched back on.
                self.queue.push(self.now + ms(50), Ev::ClientNext { client });
            }
            return;
        }
        let entity = self.rng.random_range(0..self.opts.entities);
        let op = if self.rng.random_bool(0.45) {
            let kind = if self.rng.random_bool(0.75) { WriteKind::Bump(entity) } else { WriteKind::Check(entity) };
            ClientOp::Write { kind }
        } else {
            let node = self.rng.random_range(0..self.n());
            ClientOp::Read { node, entity }
        };
        self.issue(client, op);
    }

    /// A probe (a client that only acts when told) writes, unless it waits for an answer.
    pub fn probe_write(&mut self, probe: usize) {
        let client = self.opts.clients + probe;
        if self.clients[client].busy.is_none() {
            self.issue(client, ClientOp::Write { kind: WriteKind::Bump(0) });
        }
    }

    /// Sends one operation from `client`: writes to the leader it believes in, reads to
    /// the node chosen.
    fn issue(&mut self, client: usize, what: ClientOp) {
        let op = self.clients[client].next_op;
        self.clients[client].next_op += 1;
        let (target, msg) = match what {
            ClientOp::Write { kind } => (self.leader_guess(), Msg::Write { op, kind }),
            ClientOp::Read { node, entity } => (node, Msg::Read { op, entity }),
        };
        self.clients[client].busy = Some((op, self.now, what));
        let from = self.n() + client;
        self.send(from, target, msg);
        self.queue.push(self.now + CLIENT_TIMEOUT, Ev::ClientTimeout { client, op });
    }

    fn client_reply(&mut self, client: usize, msg: Msg) {
        let busy = match (&msg, &self.clients[client].busy) {
            (Msg::ReadReply { op, .. } | Msg::WriteReply { op, .. }, Some(b)) if b.0 == *op => *b,
            _ => return,
        };
        self.clients[client].busy = None;
        let (_, sent, what) = busy;
        match (msg, what) {
            (Msg::WriteReply { result, .. }, ClientOp::Write { kind }) => match result {
                Ok(version) => {
                    let e = kind.entity();
                    if !self.db.was_committed(e, version) {
                        let what = format!("write of entity {e} acknowledged as v{version}, which was never committed");
                        self.fail(&what);
                    }
                    self.history.acked(e, version, self.now);
                    self.write_acks.push((sent, self.now));
                }
                Err(_) => self.history.writes_failed += 1,
            },
            (Msg::ReadReply { result, .. }, ClientOp::Read { node, entity }) => match result {
                Ok(version) => {
                    let id = self.nodes[node].id.clone();
                    if let Err(stale) = self.history.read(entity, version, sent, &id) {
                        let what = stale.to_string();
                        self.fail(&what);
                    }
                }
                Err(e) => {
                    self.history.reads_refused += 1;
                    if self.watch_availability && !self.unwatched.contains(&node) && self.should_serve(node) {
                        let what = format!(
                            "{:?}: read at {} refused ({e}) while its leader and a majority were connected",
                            self.now, self.nodes[node].id
                        );
                        self.unavailable_reads.push(what);
                    }
                }
            },
            _ => {}
        }
        self.client_later(client);
    }

    /// Whether node `i` is the settled leader, or a follower of it, on the majority side:
    /// up, not stalled, connected both ways to the leader, whose links to a majority are
    /// up — where a read must not be refused.
    fn should_serve(&self, i: usize) -> bool {
        let Some(l) = self.current_leader() else {
            return false;
        };
        let connected = |a: usize, b: usize| !self.links.blocked(a, b) && !self.links.blocked(b, a);
        let majority = (0..self.n()).filter(|&j| j == l || (self.nodes[j].run.is_some() && connected(l, j))).count()
            > self.n() / 2;
        majority
            && self.nodes[i].run.is_some()
            && (i == l || connected(l, i))
            && self.now >= self.nodes[i].stalled_until
            && self.now >= self.nodes[l].stalled_until
    }

    // ----- faults -----

    pub fn fault(&mut self, f: Fault) {
        match f {
            Fault::Cut { from, to, both } => self.links.set(from, to, both, true),
            Fault::Uncut { from, to, both } => self.links.set(from, to, both, false),
            Fault::Split(mask) => self.links.split(mask, true),
            Fault::Unsplit(mask) => self.links.split(mask, false),
            Fault::Crash(i) => self.crash(i),
            Fault::Restart(i) => self.restart(i),
            Fault::CrashLeader { down } => {
                if let Some(l) = self.current_leader() {
                    self.crash(l);
                    self.queue.push(self.now + down, Ev::Fault(Fault::Restart(l)));
                }
            }
            Fault::IsolateLeader { lasts } => {
                if let Some(l) = self.current_leader() {
                    self.fault(Fault::Split(1 << l));
                    self.queue.push(self.now + lasts, Ev::Fault(Fault::Unsplit(1 << l)));
                }
            }
            Fault::IsolateFollower { lasts } => {
                if let Some(l) = self.current_leader() {
                    let n = self.n();
                    let f = (l + 1 + self.rng.random_range(0..n - 1)) % n;
                    self.fault(Fault::Split(1 << f));
                    self.queue.push(self.now + lasts, Ev::Fault(Fault::Unsplit(1 << f)));
                }
            }
            Fault::Stall { node, lasts } => {
                let until = self.now + lasts;
                let nd = &mut self.nodes[node];
                nd.stalled_until = nd.stalled_until.max(until);
                let id = nd.id.clone();
                self.log(|| format!("{id} stalled until {until:?}"));
            }
            Fault::StallLeader { lasts } => {
                if let Some(l) = self.current_leader() {
                    self.fault(Fault::Stall { node: l, lasts });
                }
            }
            Fault::Weather(w) => self.weather = w,
            Fault::Transfer => {
                if let Some(l) = self.current_leader() {
                    let until = self.nodes[l].stalled_until;
                    if self.now < until {
                        // A stopped process handles its SIGTERM when it resumes.
                        self.queue.push(until, Ev::Fault(Fault::Transfer));
                    } else {
                        let to = self.transfer_target();
                        self.step(l, Event::TransferLeadership { to });
                    }
                }
            }
            Fault::PruneFails(on) => self.db.prune_fails = on,
        }
    }

    /// Plans random faults over `[0, until)`.
    pub fn plan_chaos(&mut self, until: Duration) {
        let n = self.n();
        self.weather = Weather::random(&mut self.rng);
        let lease = election_config("n0").lease_bound_span();
        let mut t = Duration::ZERO;
        loop {
            t += rand_dur(&mut self.rng, ms(100), ms(1200));
            if t >= until {
                break;
            }
            let lasts = rand_dur(&mut self.rng, ms(200), ms(3000));
            // Around the lease bound and the election timeout: longer than the former,
            // shorter than the latter, and a little either side.
            let around = rand_dur(&mut self.rng, lease - ms(60), ELECTION_MIN + ms(60));
            let (a, b) = (self.rng.random_range(0..n), self.rng.random_range(0..n));
            let ev = |f| Ev::Fault(f);
            match self.rng.random_range(0..18) {
                0 | 1 => {
                    let mask = self.rng.random_range(1..(1u32 << n) - 1);
                    self.queue.push(t, ev(Fault::Split(mask)));
                    self.queue.push(t + lasts, ev(Fault::Unsplit(mask)));
                }
                2 if a != b => {
                    let both = self.rng.random_bool(0.3);
                    self.queue.push(t, ev(Fault::Cut { from: a, to: b, both }));
                    self.queue.push(t + lasts, ev(Fault::Uncut { from: a, to: b, both }));
                }
                3..=5 => self.queue.push(t, ev(Fault::IsolateFollower { lasts: around })),
                6 => self.queue.push(t, ev(Fault::IsolateLeader { lasts: around })),
                7 => {
                    self.queue.push(t, ev(Fault::Crash(a)));
                    let down = rand_dur(&mut self.rng, Duration::ZERO, ms(2500));
                    self.queue.push(t + down, ev(Fault::Restart(a)));
                }
                8 => {
                    // The whole actor tree restarts at once: a crash and a restart.
                    self.queue.push(t, ev(Fault::Crash(a)));
                    self.queue.push(t, ev(Fault::Restart(a)));
                }
                9 => {
                    let down = rand_dur(&mut self.rng, Duration::ZERO, ms(2500));
                    self.queue.push(t, ev(Fault::CrashLeader { down }));
                }
                10 => {
                    let lasts = rand_dur(&mut self.rng, ms(50), ms(1500));
                    self.queue.push(t, ev(Fault::Stall { node: a, lasts }));
                }
                11 => {
                    let lasts = rand_dur(&mut self.rng, ms(50), ms(1500));
                    self.queue.push(t, ev(Fault::StallLeader { lasts }));
                }
                12 => {
                    let w = Weather::random(&mut self.rng);
                    self.queue.push(t, ev(Fault::Weather(w)));
                }
                13 => self.queue.push(t, ev(Fault::Transfer)),
                14 => {
                    self.queue.push(t, ev(Fault::PruneFails(true)));
                    self.queue.push(t + lasts, ev(Fault::PruneFails(false)));
                }
                _ => {}
            }
        }
    }

    /// Ends the faults: links restored, calm weather, every node up (stalls end on their
    /// own).
    pub fn heal(&mut self) {
        self.log(|| "heal".into());
        self.healed = true;
        self.weather = Weather::CALM;
        self.db.prune_fails = false;
        self.links.heal();
        // A stalled process resumes when its stall ends, not at the heal: cutting a stall
        // short would let its newer events overtake the ones it already postponed, which
        // one mailbox never does.
        for i in 0..self.n() {
            self.restart(i);
        }
    }

    /// Every node up, one leader under its lease and ready, every other node following
    /// it and serving.
    pub fn converged(&self) -> bool {
        let Some(l) = self.current_leader() else {
            return false;
        };
        (0..self.n()).all(|i| {
            let Some(run) = self.nodes[i].run.as_ref() else {
                return false;
            };
            let follows = i == l || run.core.leader() == Some(&self.nodes[l].id);
            follows && self.serving(i)
        })
    }

    /// Nothing left to do: no store has a write queued or running, no leader has a write
    /// waiting, and every node has applied the latest seq in MySQL.
    fn quiet(&self) -> bool {
        let latest = self.db.latest();
        self.nodes.iter().all(|n| {
            n.run.as_ref().is_some_and(|r| {
                r.store.as_ref().is_none_or(|s| s.queue.is_empty() && !s.busy)
                    && r.core.leader_log().is_none_or(|l| l.pending_len() == 0)
                    && r.core.applied_seq() >= latest
            })
        })
    }

    /// Once converged and quiet: every node serves every entity at its version in MySQL.
    /// Waits for the writes still queued in a store (a client may have given up on them)
    /// to run and be applied everywhere, then issues the reads itself (as a client would)
    /// and runs until they are answered.
    pub fn check_converged_reads(&mut self, within: Duration) {
        if !self.run_until(self.now + within, Sim::quiet) {
            if !self.failed() {
                self.fail(&format!("the cluster did not go quiet within {within:?} of the heal"));
            }
            return;
        }
        let n = self.n();
        let entities = self.opts.entities;
        let mut pending: Vec<(usize, usize)> = (0..n).flat_map(|i| (0..entities).map(move |e| (i, e))).collect();
        let deadline = self.now + within;
        while let Some(&(i, e)) = pending.last() {
            // A dedicated client endpoint: one past the last client.
            let version = self.read_now(i, e, deadline);
            match version {
                Some(v) if v == self.db.version(e) => {
                    pending.pop();
                }
                Some(v) => {
                    let what = format!(
                        "after the heal {} serves entity {e} at v{v}, MySQL has v{}",
                        self.nodes[i].id,
                        self.db.version(e)
                    );
                    self.fail(&what);
                    return;
                }
                None if self.now >= deadline => {
                    let what =
                        format!("after the heal {} did not serve entity {e} within {within:?}", self.nodes[i].id);
                    self.fail(&what);
                    return;
                }
                None => {
                    self.run_until(self.now + ms(20), |_| false);
                }
            }
        }
    }

    /// Reads entity `e` at node `i` straight from its state, the way a read request would
    /// be served (a miss is filled through the network; this waits for it).
    fn read_now(&mut self, i: usize, e: usize, deadline: Duration) -> Option<u64> {
        if !self.serving(i) {
            return None;
        }
        let key = CacheKey::Entity(e as u64);
        loop {
            let cached = self.nodes[i].run.as_ref().and_then(|r| r.cache.peek(&key).cloned());
            if let Some(CacheValue::Entity { entity: Some(ent) }) = cached {
                return Some(ent.version);
            }
            // Not cached: a client read fills it.
            let client = 0;
            let op = u64::MAX - (i * 1000 + e) as u64;
            self.lookup(i, vec![key.clone()], Waiter::Client { client, op, entity: e });
            self.run_until(self.now + ms(50), |_| false);
            if self.now >= deadline || self.failed() {
                return None;
            }
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn push_fault(&mut self, at: Duration, f: Fault) {
        self.queue.push(at, Ev::Fault(f));
    }
}

fn entity_value(id: u64, version: u64) -> CacheValue {
    CacheValue::Entity {
        entity: Some(Entity {
            id,
            etype: "user".into(),
            attributes: Default::default(),
            created: 0,
            updated: 0,
            version,
        }),
    }
}

/// The versions a fill brought, for traces.
fn summarize(result: &Result<Vec<CacheValue>, String>) -> String {
    match result {
        Ok(values) => values
            .iter()
            .map(|v| match v {
                CacheValue::Entity { entity: Some(e) } => format!("v{}", e.version),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join(","),
        Err(e) => format!("error: {e}"),
    }
}

fn clip(s: &str) -> String {
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}
