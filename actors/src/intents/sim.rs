//! The intent-delivery simulation: a sending shard whose leader (its [`Courier`]) crashes
//! and comes back as a new one, a receiving shard that loses its leader for a while, a
//! network that loses, duplicates and delays both ways, and a model of both databases —
//! the sender's intent rows (with their delivered mark) and the receiver's applied-intent
//! ids, recorded with the change they stand for, so applying one twice changes nothing.
//!
//! Checked: no intent is marked delivered before it took effect at the receiver (at every
//! mark); after the heal every committed intent took effect exactly once and is marked.
//! Negative controls: each [`CourierBug`] must be caught.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::courier::{Answer, Courier, CourierBug, Input, Intent, IntentId, Output};
use crate::simnet::{ms, rand_dur, seeds, Recorder, Timeline, Weather};

const RUN: Duration = Duration::from_secs(12);
const HEAL_AT: Duration = Duration::from_secs(8);
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug)]
enum Ev {
    /// A forward write commits an intent in the sending shard.
    Commit,
    Tick,
    /// A delivery reaches the receiving shard (`from`: the courier that sent it).
    Deliver {
        from: u64,
        id: IntentId,
    },
    /// An answer reaches courier `to`.
    Answer {
        to: u64,
        id: IntentId,
        answer: Answer,
    },
    /// The sending database finished recording these marks (for courier `to`).
    Marked {
        to: u64,
        ids: Vec<IntentId>,
    },
    /// The sending database finished a reload for courier `to`.
    Reloaded {
        to: u64,
    },
    CrashSender,
    StartSender,
    ReceiverDown,
    ReceiverUp,
    Weather,
}

struct Sim {
    rng: StdRng,
    now: Duration,
    queue: Timeline<Ev>,
    weather: Weather,
    /// The sending database: intent id → delivered.
    sent_db: BTreeMap<IntentId, bool>,
    /// The receiving database: the intents applied, and how often each changed something.
    applied: BTreeSet<IntentId>,
    effects: BTreeMap<IntentId, u32>,
    courier: Option<(u64, Courier<()>)>,
    incarnation: u64,
    receiver_up: bool,
    bug: Option<CourierBug>,
    rec: Recorder,
}

impl Sim {
    fn new(seed: u64, bug: Option<CourierBug>, trace: bool) -> Sim {
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            now: Duration::ZERO,
            queue: Timeline::default(),
            weather: Weather::CALM,
            sent_db: BTreeMap::new(),
            applied: BTreeSet::new(),
            effects: BTreeMap::new(),
            courier: None,
            incarnation: 0,
            receiver_up: true,
            bug,
            rec: Recorder::new(trace),
        };
        sim.queue.push(Duration::ZERO, Ev::StartSender);
        sim.queue.push(ms(1), Ev::Commit);
        sim.queue.push(ms(1), Ev::Tick);
        sim.queue.push(ms(2), Ev::Weather);
        let crash = rand_dur(&mut sim.rng, ms(200), ms(2500));
        sim.queue.push(crash, Ev::CrashSender);
        let down = rand_dur(&mut sim.rng, ms(200), ms(3000));
        sim.queue.push(down, Ev::ReceiverDown);
        sim
    }

    fn healed(&self) -> bool {
        self.now >= HEAL_AT
    }

    fn send(&mut self, ev: impl Fn() -> Ev) {
        let weather = if self.healed() { Weather::CALM } else { self.weather };
        for delay in weather.deliveries(&mut self.rng) {
            self.queue.push(self.now + delay, ev());
        }
    }

    /// Steps the live courier `to` (if it is still the one running) and performs its outputs.
    fn step(&mut self, to: u64, input: Input<()>) {
        let Some((inc, courier)) = self.courier.as_mut() else { return };
        if *inc != to {
            return;
        }
        let outputs = courier.step(self.now, input);
        for output in outputs {
            self.perform(to, output);
        }
    }

    fn perform(&mut self, from: u64, output: Output<()>) {
        match output {
            Output::Send(intent) => {
                let id = intent.id;
                self.rec.log(self.now, || format!("courier {from} sends {id}"));
                self.send(|| Ev::Deliver { from, id });
            }
            Output::MarkDelivered(ids) => {
                for id in &ids {
                    if !self.applied.contains(id) {
                        self.rec.fail(format!("intent {id} marked delivered before it took effect"));
                    }
                }
                let done = self.now + rand_dur(&mut self.rng, ms(1), ms(30));
                self.queue.push(done, Ev::Marked { to: from, ids });
            }
            Output::Reload => {
                let done = self.now + rand_dur(&mut self.rng, ms(1), ms(50));
                self.queue.push(done, Ev::Reloaded { to: from });
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Commit => {
                let id = self.sent_db.len() as IntentId + 1;
                self.sent_db.insert(id, false);
                // A leader usually hands what it just committed to its courier; one that
                // crashed in between (or any, sometimes) leaves it to the next reload.
                if let Some((inc, _)) = self.courier {
                    if self.rng.random_bool(0.8) {
                        self.step(inc, Input::Loaded(vec![Intent { id, to_shard: 1, op: () }]));
                    }
                }
                if self.now < HEAL_AT {
                    let next = self.now + rand_dur(&mut self.rng, ms(1), ms(40));
                    self.queue.push(next, Ev::Commit);
                }
            }
            Ev::Tick => {
                if let Some((inc, _)) = self.courier {
                    self.step(inc, Input::Tick);
                }
                self.queue.push(self.now + TICK, Ev::Tick);
            }
            Ev::Deliver { from, id } => {
                let answer = if self.receiver_up {
                    if self.applied.insert(id) {
                        *self.effects.entry(id).or_default() += 1;
                    }
                    Answer::Applied
                } else if self.rng.random_bool(0.5) {
                    Answer::Unreachable
                } else {
                    return; // no leader to answer at all: the sender's retry covers it
                };
                self.send(|| Ev::Answer { to: from, id, answer: answer.clone() });
            }
            Ev::Answer { to, id, answer } => self.step(to, Input::Answered { id, answer }),
            Ev::Marked { to, ids } => {
                for id in &ids {
                    self.sent_db.insert(*id, true);
                }
                self.step(to, Input::Marked(ids));
            }
            Ev::Reloaded { to } => {
                let undelivered: Vec<Intent<()>> = (self.sent_db.iter())
                    .filter(|(_, delivered)| !**delivered)
                    .map(|(id, _)| Intent { id: *id, to_shard: 1, op: () })
                    .collect();
                self.step(to, Input::Loaded(undelivered));
            }
            Ev::CrashSender => {
                self.rec.log(self.now, || "sender's leader crashes".into());
                self.courier = None;
                let back = self.now + rand_dur(&mut self.rng, ms(0), ms(1000));
                self.queue.push(back, Ev::StartSender);
            }
            Ev::StartSender => {
                self.incarnation += 1;
                self.rec.log(self.now, || format!("courier {} starts", self.incarnation));
                self.courier = Some((self.incarnation, Courier::new(self.bug)));
                let inc = self.incarnation;
                self.step(inc, Input::Tick);
                if !self.healed() {
                    let crash = self.now + rand_dur(&mut self.rng, ms(100), ms(3000));
                    self.queue.push(crash.min(HEAL_AT), Ev::CrashSender);
                }
            }
            Ev::ReceiverDown => {
                if !self.healed() {
                    self.receiver_up = false;
                    let up = self.now + rand_dur(&mut self.rng, ms(50), ms(2000));
                    self.queue.push(up, Ev::ReceiverUp);
                }
            }
            Ev::ReceiverUp => {
                self.receiver_up = true;
                if !self.healed() {
                    let down = self.now + rand_dur(&mut self.rng, ms(200), ms(3000));
                    self.queue.push(down, Ev::ReceiverDown);
                }
            }
            Ev::Weather => {
                self.weather = Weather::random(&mut self.rng);
                if !self.healed() {
                    let next = self.now + rand_dur(&mut self.rng, ms(100), ms(1500));
                    self.queue.push(next, Ev::Weather);
                }
            }
        }
    }

    fn run(mut self, seed: u64) -> Result<usize, String> {
        while let Some((at, ev)) = self.queue.pop_until(RUN) {
            self.now = at;
            if self.healed() && self.courier.is_none() && matches!(ev, Ev::CrashSender) {
                continue;
            }
            self.handle(ev);
            if self.rec.failed() {
                break;
            }
        }
        if !self.rec.failed() {
            let lost: Vec<_> = self.sent_db.keys().filter(|id| !self.applied.contains(id)).take(5).collect();
            let twice: Vec<_> = self.effects.iter().filter(|(_, n)| **n != 1).take(5).collect();
            let unmarked = self.sent_db.values().filter(|d| !**d).count();
            if !lost.is_empty() {
                self.rec.fail(format!("intents never took effect, e.g. {lost:?}"));
            } else if !twice.is_empty() {
                self.rec.fail(format!("intents took effect more than once: {twice:?}"));
            } else if unmarked > 0 {
                self.rec.fail(format!("{unmarked} intents never marked delivered"));
            }
        }
        match self.rec.result() {
            Err(f) => Err(format!("seed {seed}: {f} (replay: INTENT_SIM_SEED={seed})")),
            Ok(()) => Ok(self.sent_db.len()),
        }
    }
}

fn run_seeds(bug: Option<CourierBug>, default: u64) -> (usize, Vec<String>) {
    let (seeds, trace) = seeds("INTENT_SIM", default, |i| 0x1_2345 + i * 7919);
    let mut intents = 0;
    let mut failures = Vec::new();
    for seed in seeds {
        match Sim::new(seed, bug, trace).run(seed) {
            Ok(n) => intents += n,
            Err(f) => failures.push(f),
        }
    }
    (intents, failures)
}

#[test]
fn every_intent_takes_effect_once_and_is_marked_only_after_across_crashes_and_a_lossy_network() {
    let (intents, failures) = run_seeds(None, 1000);
    assert!(failures.is_empty(), "{} failed seeds, e.g.:\n{}", failures.len(), failures[0]);
    assert!(intents > 100_000, "too few intents to judge: {intents}");
}

#[test]
fn the_simulation_catches_each_broken_rule() {
    for bug in [CourierBug::MarkOnSend, CourierBug::NeverReload] {
        let (_, failures) = run_seeds(Some(bug), 200);
        assert!(!failures.is_empty(), "{bug:?} planted and no seed failed");
        println!("{bug:?}: {} of 200 seeds failed, e.g. {}", failures.len(), failures[0].lines().next().unwrap_or(""));
    }
}
