//! The simulated cluster: election cores with their clocks and persisted votes, the
//! network between them (links, weather and the event timeline from `crate::simnet`), the
//! faults, and the event loop that steps the cores and performs their outputs.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use instaface_bus::messages::{Ack, AckConfirm, Role, TimeoutNow, VoteReply, VoteRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{config, DRIFT};
use crate::election::{ElectionCore, Input, Output, PersistedVote};
use crate::simnet::{ms, rand_dur, Clock, Links, Recorder, Timeline, Weather};

/// A message on the simulated wire.
#[derive(Clone, Debug)]
enum Msg {
    Heartbeat { term: u64, leader: String, hb: u64 },
    Vote(VoteRequest),
    Reply(VoteReply),
    Ack(Ack),
    Confirm(AckConfirm),
    TimeoutNow(TimeoutNow),
}

#[derive(Clone, Debug)]
enum Ev {
    Deliver { from: usize, to: usize, msg: Msg },
    Tick { node: usize, incarnation: u32 },
    Membership { node: usize, incarnation: u32 },
    AckNow { node: usize },
    Fault(Fault),
}

#[derive(Clone, Debug)]
pub(super) enum Fault {
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
    /// Cut whoever leads then off both ways for `lasts`.
    IsolateLeader {
        lasts: Duration,
    },
    Weather(Weather),
    Transfer,
}

pub(super) struct Node {
    pub(super) id: String,
    pub(super) core: Option<ElectionCore>,
    pub(super) clock: Clock,
    incarnation: u32,
    tick_at: Option<Duration>,
    applied_seq: u64,
    /// The term and vote as last persisted: what a restart comes back with.
    disk: PersistedVote,
}

/// Counters reported by the tests.
#[derive(Default, Debug, Clone, Copy)]
pub(super) struct Stats {
    pub(super) events: u64,
    pub(super) elections: u64,
    pub(super) crashes: u64,
}

/// The cluster, the network and the global clock.
pub(super) struct Sim {
    seed: u64,
    pub(super) rng: StdRng,
    pub(super) now: Duration,
    queue: Timeline<Ev>,
    pub(super) nodes: Vec<Node>,
    links: Links,
    weather: Weather,
    /// Faults stop once the network healed.
    healed: bool,
    /// Term -> the first node that led it.
    pub(super) leaders: HashMap<u64, usize>,
    pub(super) quarantine: bool,
    pub(super) stats: Stats,
    /// The trace when replaying a seed, and the first invariant broken.
    rec: Recorder,
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
    pub(super) fn new(seed: u64, n: usize, trace: bool) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let clock = Clock::random(&mut rng, Duration::ZERO, DRIFT);
            let id = format!("n{i}");
            let core =
                ElectionCore::new(config(&id), rng.random(), clock.local(Duration::ZERO), PersistedVote::default());
            nodes.push(Node {
                id,
                core: Some(core),
                clock,
                incarnation: 0,
                tick_at: None,
                applied_seq: 0,
                disk: PersistedVote::default(),
            });
        }
        let mut sim = Sim {
            seed,
            rng,
            now: Duration::ZERO,
            queue: Timeline::default(),
            nodes,
            links: Links::new(n),
            weather: Weather::CALM,
            healed: false,
            leaders: HashMap::new(),
            quarantine: true,
            stats: Stats::default(),
            rec: Recorder::new(trace),
        };
        for i in 0..n {
            sim.schedule_tick(i);
            let at = rand_dur(&mut sim.rng, Duration::ZERO, ms(1500));
            sim.push(at, Ev::Membership { node: i, incarnation: 0 });
            let at = rand_dur(&mut sim.rng, Duration::ZERO, ms(300));
            sim.push(at, Ev::AckNow { node: i });
        }
        sim
    }

    pub(super) fn n(&self) -> usize {
        self.nodes.len()
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        self.queue.push(at, ev);
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        self.rec.log(self.now, line);
    }

    /// Records the first failure; the run stops after the current event.
    pub(super) fn fail(&mut self, what: &str) {
        self.rec.fail(format!(
            "election sim seed {} ({} nodes) failed at t = {:?}: {what}\nreplay: ELECTION_SIM_SEED={} cargo test -p instaface-actors election_sim -- --nocapture",
            self.seed,
            self.n(),
            self.now,
            self.seed
        ));
    }

    /// The recorded failure, as an error.
    pub(super) fn result(&mut self) -> Result<(), String> {
        self.rec.result()
    }

    pub(super) fn local(&self, i: usize) -> Duration {
        self.nodes[i].clock.local(self.now)
    }

    fn index(&self, id: &str) -> Option<usize> {
        let i: usize = id.strip_prefix('n')?.parse().ok()?;
        (i < self.n()).then_some(i)
    }

    fn schedule_tick(&mut self, i: usize) {
        let node = &self.nodes[i];
        let Some(core) = &node.core else { return };
        let at = node.clock.real(core.next_deadline()).max(self.now);
        if node.tick_at.is_none_or(|p| at < p) {
            let incarnation = node.incarnation;
            self.nodes[i].tick_at = Some(at);
            self.push(at, Ev::Tick { node: i, incarnation });
        }
    }

    /// Steps node `i` (if up) with `input`, then performs the outputs and checks.
    pub(super) fn step(&mut self, i: usize, input: Input) {
        let local = self.local(i);
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let outs = core.step(local, input);
        for out in outs {
            self.perform(i, out);
        }
        self.schedule_tick(i);
        if let Some(violation) = self.check() {
            self.fail(&violation);
        }
    }

    fn perform(&mut self, i: usize, out: Output) {
        if self.rec.tracing() {
            let id = self.nodes[i].id.clone();
            let text = format!("{out:?}");
            self.log(|| format!("{id} -> {text}"));
        }
        match out {
            Output::Persist(p) => self.nodes[i].disk = p,
            Output::BroadcastHeartbeat { term, hb, .. } => {
                let leader = self.nodes[i].id.clone();
                let msg = Msg::Heartbeat { term, leader, hb };
                self.broadcast(i, msg);
            }
            Output::SendAck { to, ack } => self.send_to(i, &to, Msg::Ack(ack)),
            Output::AckReply { to, confirm } => self.send_to(i, &to, Msg::Confirm(confirm)),
            Output::BroadcastVoteRequest(req) => self.broadcast(i, Msg::Vote(req)),
            Output::SendVoteReply { to, reply } => self.send_to(i, &to, Msg::Reply(reply)),
            Output::SendTimeoutNow { to, msg } => self.send_to(i, &to, Msg::TimeoutNow(msg)),
            Output::RoleChanged { role: Role::Leader, term, .. } => {
                self.stats.elections += 1;
                self.record_leader(term, i);
            }
            Output::RoleChanged { .. } | Output::Candidacy { .. } | Output::Reachability { .. } => {}
        }
    }

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

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if self.links.blocked(from, to) {
            return;
        }
        for delay in self.weather.deliveries(&mut self.rng) {
            self.push(self.now + delay, Ev::Deliver { from, to, msg: msg.clone() });
        }
    }

    /// Runs events up to `end`; stops early (returning true) once `done` holds.
    /// Stops at the first failure (returning false).
    pub(super) fn run_until(&mut self, end: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
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

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { from, to, msg } => {
                if self.nodes[to].core.is_none() {
                    return;
                }
                if self.rec.tracing() {
                    let (f, t) = (self.nodes[from].id.clone(), self.nodes[to].id.clone());
                    let text = format!("{msg:?}");
                    self.log(|| format!("{f} => {t}: {text}"));
                }
                let input = match msg {
                    Msg::Heartbeat { term, leader, hb } => {
                        Input::Heartbeat { term, leader, hb, applied_seq: self.nodes[to].applied_seq }
                    }
                    Msg::Vote(r) => Input::VoteRequest(r),
                    Msg::Reply(r) => Input::VoteReply(r),
                    Msg::Ack(a) => Input::Ack { ack: a, may_confirm: true },
                    Msg::Confirm(c) => Input::AckConfirm(c),
                    Msg::TimeoutNow(t) => Input::TimeoutNow(t),
                };
                self.step(to, input);
            }
            Ev::Tick { node, incarnation } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation || n.tick_at != Some(self.now) {
                    return;
                }
                n.tick_at = None;
                self.step(node, Input::Tick);
            }
            Ev::Membership { node, incarnation } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                let all: BTreeSet<String> = self.nodes.iter().map(|n| n.id.clone()).collect();
                self.step(node, Input::Membership(all));
                // Redis is polled every two seconds.
                self.push(self.now + ms(2000), Ev::Membership { node, incarnation });
            }
            Ev::AckNow { node } => {
                let n = &mut self.nodes[node];
                n.applied_seq += 1;
                let applied_seq = n.applied_seq;
                self.step(node, Input::AckNow { applied_seq });
                let next = rand_dur(&mut self.rng, ms(100), ms(600));
                self.push(self.now + next, Ev::AckNow { node });
            }
            Ev::Fault(f) => {
                if !self.healed {
                    self.log(|| format!("fault {f:?}"));
                    self.fault(f);
                }
            }
        }
    }

    pub(super) fn fault(&mut self, f: Fault) {
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
                    self.push(self.now + down, Ev::Fault(Fault::Restart(l)));
                }
            }
            Fault::IsolateLeader { lasts } => {
                if let Some(l) = self.current_leader() {
                    self.fault(Fault::Split(1 << l));
                    self.push(self.now + lasts, Ev::Fault(Fault::Unsplit(1 << l)));
                }
            }
            Fault::Weather(w) => self.weather = w,
            Fault::Transfer => {
                if let Some(l) = self.current_leader() {
                    let to = self.transfer_target();
                    self.step(l, Input::TransferLeadership { to });
                }
            }
        }
    }

    pub(super) fn crash(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.core.take().is_some() {
            n.incarnation += 1;
            n.tick_at = None;
            self.stats.crashes += 1;
        }
    }

    pub(super) fn restart(&mut self, i: usize) {
        if self.nodes[i].core.is_some() {
            return;
        }
        let clock = Clock::random(&mut self.rng, self.now, DRIFT);
        let seed = self.rng.random();
        let n = &mut self.nodes[i];
        n.clock = clock;
        n.tick_at = None;
        let local = clock.local(self.now);
        let mut core = ElectionCore::new(config(&n.id), seed, local, n.disk.clone());
        if !self.quarantine {
            core.quarantine_until = local;
            core.reset_election_timer(local);
        }
        n.core = Some(core);
        let incarnation = n.incarnation;
        let at = self.now + rand_dur(&mut self.rng, Duration::ZERO, ms(500));
        self.push(at, Ev::Membership { node: i, incarnation });
        self.schedule_tick(i);
    }

    /// The leader of the highest term among the nodes up.
    pub(super) fn current_leader(&self) -> Option<usize> {
        (0..self.n())
            .filter_map(|i| self.nodes[i].core.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| c.role() == Role::Leader)
            .max_by_key(|(_, c)| c.term())
            .map(|(i, _)| i)
    }

    pub(super) fn up(&self) -> impl Iterator<Item = (usize, &ElectionCore)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.core.as_ref().map(|c| (i, c)))
    }

    /// Ends the faults: links restored, calm weather, every crashed node restarted.
    pub(super) fn heal(&mut self) {
        self.log(|| "heal".into());
        self.healed = true;
        self.weather = Weather::CALM;
        self.links.heal();
        for i in 0..self.n() {
            self.restart(i);
        }
    }

    /// Plans random faults over `[0, until)`.
    pub(super) fn plan_chaos(&mut self, until: Duration) {
        let n = self.n();
        self.weather = Weather::random(&mut self.rng);
        let mut t = Duration::ZERO;
        loop {
            t += rand_dur(&mut self.rng, ms(100), ms(1500));
            if t >= until {
                break;
            }
            let lasts = rand_dur(&mut self.rng, ms(200), ms(4000));
            let (a, b) = (self.rng.random_range(0..n), self.rng.random_range(0..n));
            match self.rng.random_range(0..12) {
                0 | 1 => {
                    let mask = self.rng.random_range(1..(1u32 << n) - 1);
                    self.push(t, Ev::Fault(Fault::Split(mask)));
                    self.push(t + lasts, Ev::Fault(Fault::Unsplit(mask)));
                }
                2 | 3 if a != b => {
                    let both = self.rng.random_bool(0.3);
                    self.push(t, Ev::Fault(Fault::Cut { from: a, to: b, both }));
                    self.push(t + lasts, Ev::Fault(Fault::Uncut { from: a, to: b, both }));
                }
                4 => {
                    let mask = 1u32 << a;
                    self.push(t, Ev::Fault(Fault::Split(mask)));
                    self.push(t + lasts, Ev::Fault(Fault::Unsplit(mask)));
                }
                5 | 6 => {
                    self.push(t, Ev::Fault(Fault::Crash(a)));
                    let down = rand_dur(&mut self.rng, Duration::ZERO, ms(3000));
                    self.push(t + down, Ev::Fault(Fault::Restart(a)));
                }
                7 => {
                    let w = Weather::random(&mut self.rng);
                    self.push(t, Ev::Fault(Fault::Weather(w)));
                }
                8 => self.push(t, Ev::Fault(Fault::Transfer)),
                9 => {
                    let down = rand_dur(&mut self.rng, Duration::ZERO, ms(3000));
                    self.push(t, Ev::Fault(Fault::CrashLeader { down }));
                }
                10 => self.push(t, Ev::Fault(Fault::IsolateLeader { lasts })),
                _ => {}
            }
        }
    }
}
