//! The intent-delivery simulation: a sending shard whose leader (its [`Courier`]) crashes
//! and comes back as a new one, a receiving shard that loses its leader for a while, a
//! network that loses, duplicates, delays and so reorders both ways, and a model of both
//! databases — the sender's intent rows (each a put or a removal of one of a few rows, with
//! its delivered mark) and the receiver's applied-intent ids and rows with their versions,
//! changed only as [`decide`] rules.
//!
//! One row's entity at the receiver is gone: its puts are refused, and the sender must
//! undo its own row of the pair (a write, with its own intent) before marking them.
//!
//! A leader wakes its courier after most commits; a reload reads the sending database when
//! it is asked for and answers up to 120 ms later (longer than a mark takes), so its list
//! can be older than marks confirmed meanwhile, and before the heal a read sometimes fails
//! (an empty list).
//!
//! Checked: no intent is marked delivered before it took effect at the receiver or was
//! undone (at every mark); no courier sends or undoes an intent again after its own mark of
//! it committed (a refused one would be undone twice); after the heal every committed intent took effect exactly once
//! (or was refused) and is marked, every row at the receiver is as the last intent
//! committed for it left it, and no row of the gone entity is left on either side.
//! Negative controls: each [`CourierBug`] and each [`ReceiverBug`] must be caught.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::courier::{Answer, Courier, CourierBug, Input, Intent, IntentId, Output};
use super::receiver::{decide, Decision, Kind, ReceiverBug, Seen};
use crate::simnet::{collect_seeds, ms, rand_dur, Recorder, Timeline, Weather};

/// Long enough after the heal for a delivery lost just before it to be sent again
/// ([`Courier::RETRY_AFTER`]) and answered.
const RUN: Duration = Duration::from_secs(16);
const HEAL_AT: Duration = Duration::from_secs(8);
const TICK: Duration = Duration::from_millis(50);
/// Rows the intents change: few, so that intents for one row are often in flight together.
const ROWS: u8 = 4;
/// The row whose entity at the receiver is gone: its puts are refused, and the sender must
/// remove its own row of the pair before it marks them.
const GONE_ROW: u8 = ROWS - 1;

/// An intent's change: put (`true`) or remove row `.0`.
type Op = (u8, bool);

/// A rule broken on purpose: the sender's or the receiver's.
#[derive(Clone, Copy, Debug)]
enum Bug {
    Courier(CourierBug),
    Receiver(ReceiverBug),
}
#[derive(Debug)]
enum Ev {
    /// A forward write commits an intent in the sending shard.
    Commit,
    Tick,
    /// A delivery reaches the receiving shard (`from`: the courier that sent it).
    Deliver {
        from: u64,
        id: IntentId,
        op: Op,
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
    /// A reload for courier `to` answers, with what it read when it was asked for.
    Reloaded {
        to: u64,
        gen: u64,
        intents: Vec<Intent<Op>>,
    },
    /// The write removing the sender's own row for refused intent `id` ends (for courier
    /// `to`; it committed only if that courier still runs).
    Undone {
        to: u64,
        id: IntentId,
        row: u8,
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
    /// The sending database: intent id → its change, delivered.
    sent_db: BTreeMap<IntentId, (Op, bool)>,
    /// The receiving database: the intents applied, how often each changed something, and
    /// each row's version and presence.
    applied: BTreeSet<IntentId>,
    effects: BTreeMap<IntentId, u32>,
    rows: BTreeMap<u8, (IntentId, bool)>,
    /// The sender's own row of each pair (put by its writes, removed by them and by undos),
    /// the intents refused, and those whose undo committed.
    own: BTreeMap<u8, bool>,
    refused: BTreeSet<IntentId>,
    undone: BTreeSet<IntentId>,
    /// Which courier's mark of each intent committed.
    marked_by: BTreeMap<IntentId, u64>,
    courier: Option<(u64, Courier<Op>)>,
    incarnation: u64,
    receiver_up: bool,
    bug: Option<Bug>,
    rec: Recorder,
}

impl Sim {
    fn new(seed: u64, bug: Option<Bug>, trace: bool) -> Sim {
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            now: Duration::ZERO,
            queue: Timeline::default(),
            weather: Weather::CALM,
            sent_db: BTreeMap::new(),
            applied: BTreeSet::new(),
            effects: BTreeMap::new(),
            rows: BTreeMap::new(),
            own: BTreeMap::new(),
            refused: BTreeSet::new(),
            undone: BTreeSet::new(),
            marked_by: BTreeMap::new(),
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
    fn step(&mut self, to: u64, input: Input<Op>) {
        let Some((inc, courier)) = self.courier.as_mut() else { return };
        if *inc != to {
            return;
        }
        let outputs = courier.step(self.now, input);
        for output in outputs {
            self.perform(to, output);
        }
    }

    fn perform(&mut self, from: u64, output: Output<Op>) {
        if let Output::Send(Intent { id, .. }) | Output::Undo(Intent { id, .. }) = &output {
            if self.marked_by.get(id) == Some(&from) {
                self.rec
                    .fail(format!("courier {from} delivers or undoes {id} again after its own mark of it committed"));
            }
        }
        match output {
            Output::Send(intent) => {
                let (id, op) = (intent.id, intent.op);
                self.rec.log(self.now, || format!("courier {from} sends {id} {op:?}"));
                self.send(|| Ev::Deliver { from, id, op });
            }
            Output::MarkDelivered(ids, _) => {
                for id in &ids {
                    if !self.applied.contains(id) && !self.undone.contains(id) {
                        self.rec.fail(format!("intent {id} marked delivered before it took effect or was undone"));
                    }
                }
                let done = self.now + rand_dur(&mut self.rng, ms(1), ms(30));
                self.queue.push(done, Ev::Marked { to: from, ids });
            }
            Output::Reload { gen } => {
                // A read that fails answers nothing (before the heal, sometimes).
                let failed = !self.healed() && self.rng.random_bool(0.05);
                let intents: Vec<Intent<Op>> = (self.sent_db.iter())
                    .filter(|_| !failed)
                    .filter(|(_, (_, delivered))| !*delivered)
                    .map(|(id, (op, _))| Intent { id: *id, to_shard: 1, op: *op })
                    .collect();
                let done = self.now + rand_dur(&mut self.rng, ms(1), ms(120));
                self.queue.push(done, Ev::Reloaded { to: from, gen, intents });
            }
            Output::Undo(intent) => {
                let done = self.now + rand_dur(&mut self.rng, ms(1), ms(30));
                self.queue.push(done, Ev::Undone { to: from, id: intent.id, row: intent.op.0 });
            }
        }
    }

    /// The sender commits a write of `op`: its own row, and an intent for the receiver's.
    fn commit(&mut self, op: Op) {
        let id = self.sent_db.len() as IntentId + 1;
        self.sent_db.insert(id, (op, false));
        self.own.insert(op.0, op.1);
        // A leader usually wakes its courier after a commit; one that crashed in between
        // (or any, sometimes) leaves it to the next periodic reload.
        if let Some((inc, _)) = self.courier {
            if self.rng.random_bool(0.8) {
                self.step(inc, Input::Wake);
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Commit => {
                let op = (self.rng.random_range(0..ROWS), self.rng.random_bool(0.6));
                self.commit(op);
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
            Ev::Deliver { from, id, op: (row, put) } => {
                let answer = if self.receiver_up {
                    let bug = match self.bug {
                        Some(Bug::Receiver(b)) => Some(b),
                        _ => None,
                    };
                    let seen = Seen {
                        applied_before: self.applied.contains(&id),
                        version: self.rows.get(&row).map(|(v, _)| *v),
                        far_end_dropped: false,
                        near_end_exists: row != GONE_ROW,
                    };
                    let kind = if put { Kind::Put } else { Kind::Remove };
                    match decide(kind, id, seen, bug) {
                        Decision::Apply => {
                            *self.effects.entry(id).or_default() += 1;
                            self.rows.insert(row, (id, put));
                            self.applied.insert(id);
                            Answer::Applied
                        }
                        Decision::Skip => {
                            self.applied.insert(id);
                            Answer::Applied
                        }
                        // Rolled back at the receiver: nothing recorded.
                        Decision::Refuse => {
                            self.refused.insert(id);
                            Answer::Refused("gone".into())
                        }
                    }
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
                    if let Some(sent) = self.sent_db.get_mut(id) {
                        sent.1 = true;
                    }
                    self.marked_by.insert(*id, to);
                }
                self.step(to, Input::Marked(ids));
            }
            Ev::Reloaded { to, gen, intents } => self.step(to, Input::Reloaded { gen, intents }),
            Ev::Undone { to, id, row } => {
                if !matches!(self.courier, Some((inc, _)) if inc == to) {
                    return; // its leader crashed: the removal never ran
                }
                if self.rng.random_bool(0.1) {
                    self.step(to, Input::Undone { id, done: false });
                    return;
                }
                // The removal is a write like any: the own row goes, with an intent.
                self.commit((row, false));
                self.undone.insert(id);
                self.step(to, Input::Undone { id, done: true });
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
                let bug = match self.bug {
                    Some(Bug::Courier(b)) => Some(b),
                    _ => None,
                };
                self.courier = Some((self.incarnation, Courier::new(bug)));
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
            let lost: Vec<_> = (self.sent_db.keys())
                .filter(|id| !self.applied.contains(id) && !self.refused.contains(id))
                .take(5)
                .collect();
            let kept = self.own.get(&GONE_ROW) == Some(&true);
            let twice: Vec<_> = self.effects.iter().filter(|(_, n)| **n != 1).take(5).collect();
            let unmarked = self.sent_db.values().filter(|(_, d)| !*d).count();
            // The last committed change of each row, and what the receiver holds.
            let mut last: BTreeMap<u8, (IntentId, bool)> = BTreeMap::new();
            for (id, ((row, put), _)) in &self.sent_db {
                if *row != GONE_ROW {
                    last.insert(*row, (*id, *put));
                }
            }
            let wrong: Vec<_> = last
                .iter()
                .filter(|(row, (_, put))| self.rows.get(*row).map(|(_, p)| *p) != Some(*put))
                .map(|(row, last)| (row, last, self.rows.get(row)))
                .take(3)
                .collect();
            if !lost.is_empty() {
                self.rec.fail(format!("intents never took effect, e.g. {lost:?}"));
            } else if !twice.is_empty() {
                self.rec.fail(format!("intents took effect more than once: {twice:?}"));
            } else if unmarked > 0 {
                self.rec.fail(format!("{unmarked} intents never marked delivered"));
            } else if !wrong.is_empty() {
                self.rec.fail(format!("rows not as their last intent left them (row, last, held): {wrong:?}"));
            } else if kept || self.rows.get(&GONE_ROW).is_some_and(|(_, present)| *present) {
                self.rec.fail(format!(
                    "a row of a gone entity is left: sender {kept}, receiver {:?}",
                    self.rows.get(&GONE_ROW)
                ));
            }
        }
        match self.rec.result() {
            Err(f) => Err(format!("seed {seed}: {f} (replay: INTENT_SIM_SEED={seed})")),
            Ok(()) => Ok(self.sent_db.len()),
        }
    }
}

fn run_seeds(bug: Option<Bug>, default: u64) -> (usize, Vec<String>) {
    collect_seeds("INTENT_SIM", default, |i| 0x1_2345 + i * 7919, |seed, trace| Sim::new(seed, bug, trace).run(seed))
}

#[test]
fn every_intent_takes_effect_once_in_order_and_is_marked_only_after_across_crashes_and_a_lossy_network() {
    let (intents, failures) = run_seeds(None, 1000);
    assert!(failures.is_empty(), "{} failed seeds, e.g.:\n{}", failures.len(), failures[0]);
    assert!(intents > 100_000, "too few intents to judge: {intents}");
}

#[test]
fn the_simulation_catches_each_broken_rule() {
    let bugs = [
        Bug::Courier(CourierBug::MarkOnSend),
        Bug::Courier(CourierBug::NeverReload),
        Bug::Courier(CourierBug::MarkBeforeUndo),
        Bug::Courier(CourierBug::TrustStaleReload),
        Bug::Receiver(ReceiverBug::IgnoreVersions),
    ];
    for bug in bugs {
        let (_, failures) = run_seeds(Some(bug), 200);
        assert!(!failures.is_empty(), "{bug:?} planted and no seed failed");
        println!("{bug:?}: {} of 200 seeds failed, e.g. {}", failures.len(), failures[0].lines().next().unwrap_or(""));
    }
}
