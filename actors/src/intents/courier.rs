//! The sender's side of intent delivery as a pure state machine: inputs in (intents
//! read from the database, answers, marks and undos confirmed, wake-ups, ticks), outputs
//! out (send this intent, mark these delivered, undo this one, reload the undelivered
//! ones). The database is the only way intents reach it: a leader that commits some wakes
//! it, and it reloads. No I/O and no clock of its
//! own; one courier per leadership — a new leader starts a new one, which reloads.
//!
//! The rules:
//! - an intent is marked delivered only once the other shard answered that it took
//!   effect, or refused it for good and the sender's own row that depended on it was
//!   removed ([`Output::Undo`]) — never on sending;
//! - every undelivered intent the courier knows is sent until answered: again after
//!   [`Courier::RETRY_AFTER`] without an answer (longer than the runtime waits for one, so
//!   a slow answer is not raced by a resend), or [`Courier::BACKOFF`] after an
//!   "unreachable" one (no leader yet: ask again soon), at most
//!   [`Courier::MAX_IN_FLIGHT`] at a time, oldest first;
//! - it reloads the undelivered intents from the database when it starts, every
//!   [`Courier::RELOAD_EVERY`] and when woken ([`Input::Wake`]), one reload at a time (one
//!   unanswered for [`Courier::RELOAD_ANSWER_WITHIN`] is given up), so an intent committed
//!   while no courier was woken for it (a leader that crashed after its commit) is delivered;
//! - a reload's list is as old as its read: an intent whose mark committed while the
//!   reload was out may still be on it, and is not taken back (it would be sent again, and
//!   a refused one undone a second time — removing a row added again since the first).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use instaface_bus::shards::ShardId;

/// An intent's id: its row's auto-increment id in the sending shard's database.
pub type IntentId = u64;

/// One inverse change for another shard; `op` is what the receiving leader applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent<T> {
    pub id: IntentId,
    pub to_shard: ShardId,
    pub op: T,
}

/// What the other shard's leader answered to one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It took effect, now or at an earlier delivery.
    Applied,
    /// Refused for good (its entity is gone, say): delivered, with nothing to apply.
    Refused(String),
    /// No answer that says anything: no leader, not the leader, a timeout. Send again.
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<T> {
    /// The undelivered intents read for [`Output::Reload`] `gen` (none if the read failed).
    Reloaded {
        gen: u64,
        intents: Vec<Intent<T>>,
    },
    /// Intents may have been committed without being handed over: reload soon.
    Wake,
    /// The answer to a delivery of `id`.
    Answered {
        id: IntentId,
        answer: Answer,
    },
    /// The database recorded these as delivered.
    Marked(Vec<IntentId>),
    /// The sender's own row that a refused intent `id` depended on was removed (`done`),
    /// or removing it failed (the intent is delivered again, refused again, undone again).
    Undone {
        id: IntentId,
        done: bool,
    },
    Tick,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<T> {
    /// Deliver this intent to its shard's leader.
    Send(Intent<T>),
    /// Record these intents as delivered, and how (answer with [`Input::Marked`]).
    MarkDelivered(Vec<IntentId>, Delivered),
    /// Read the undelivered intents (answer with [`Input::Reloaded`], even if the read
    /// fails: no other reload is asked for until then, or until
    /// [`Courier::RELOAD_ANSWER_WITHIN`] has passed).
    Reload { gen: u64 },
    /// The other shard refused this intent (its entity is gone): remove the sender's own
    /// row that depended on it, then answer with [`Input::Undone`]. It is marked delivered
    /// only after that, so a crash in between delivers (and undoes) it again.
    Undo(Intent<T>),
}

/// How a delivered intent ended at the other shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// It took effect (now, earlier, or through a later intent).
    Applied,
    /// Refused (its entity gone), and the sender's own row that depended on it removed.
    Refused,
}

/// A rule broken on purpose, for the simulation's negative controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CourierBug {
    /// Mark an intent delivered as soon as it is sent.
    MarkOnSend,
    /// Mark a refused intent delivered before its undo is done.
    MarkBeforeUndo,
    /// Never reload from the database: only intents handed over are delivered.
    NeverReload,
    /// Take a reload's list as it comes, even the intents marked while it was out.
    TrustStaleReload,
}

#[derive(Clone, Debug)]
struct Entry<T> {
    intent: Intent<T>,
    /// When it was last sent (`None`: due).
    sent_at: Option<Duration>,
    /// Not before then (after an "unreachable" answer).
    not_before: Duration,
}

/// The sender's delivery state for one leadership.
#[derive(Clone, Debug)]
pub struct Courier<T> {
    /// Undelivered intents it knows, by id (oldest first).
    pending: BTreeMap<IntentId, Entry<T>>,
    /// Answered, being marked: not sent again even if a reload still lists them.
    marking: BTreeSet<IntentId>,
    /// Refused, their undo running: neither sent nor marked meanwhile.
    undoing: BTreeMap<IntentId, Intent<T>>,
    last_reload: Option<Duration>,
    /// The reloads asked for so far; the one out, if any, and when it was asked for.
    reloads: u64,
    reloading: Option<(u64, Duration)>,
    /// Intents whose marks were confirmed while the reload out was: its list may be older.
    settled: BTreeSet<IntentId>,
    bug: Option<CourierBug>,
}

impl<T: Clone> Default for Courier<T> {
    fn default() -> Self {
        Courier::new(None)
    }
}

impl<T: Clone> Courier<T> {
    /// Deliveries out at once.
    pub const MAX_IN_FLIGHT: usize = 64;
    /// A delivery with no answer for this long is sent again.
    pub const RETRY_AFTER: Duration = Duration::from_secs(3);
    /// An intent answered "unreachable" is sent again after this long.
    pub const BACKOFF: Duration = Duration::from_millis(250);
    /// How often the undelivered intents are read again from the database.
    pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
    /// Marks remembered during one reload at most; past it, that reload's list is thrown
    /// away (and another asked for), which only delays deliveries.
    pub const MAX_SETTLED: usize = 4096;
    /// A reload unanswered for this long is given up (its task died): another is asked for.
    /// Longer than the runtime lets a read take.
    pub const RELOAD_ANSWER_WITHIN: Duration = Duration::from_secs(15);

    pub fn new(bug: Option<CourierBug>) -> Courier<T> {
        Courier {
            pending: BTreeMap::new(),
            marking: BTreeSet::new(),
            undoing: BTreeMap::new(),
            last_reload: None,
            reloads: 0,
            reloading: None,
            settled: BTreeSet::new(),
            bug,
        }
    }

    /// Undelivered intents known (for metrics and tests).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn step(&mut self, now: Duration, input: Input<T>) -> Vec<Output<T>> {
        let mut out = Vec::new();
        match input {
            Input::Reloaded { gen, intents } => {
                if self.reloading.is_some_and(|(out, _)| out == gen) {
                    self.reloading = None;
                    let settled = std::mem::take(&mut self.settled);
                    self.take(now, intents.into_iter().filter(|i| !settled.contains(&i.id)).collect());
                }
            }
            Input::Wake => self.last_reload = None,
            Input::Answered { id, answer } => match answer {
                Answer::Applied => {
                    if self.pending.remove(&id).is_some() && self.marking.insert(id) {
                        out.push(Output::MarkDelivered(vec![id], Delivered::Applied));
                    }
                }
                Answer::Refused(_) => {
                    if let Some(e) = self.pending.remove(&id) {
                        if self.bug == Some(CourierBug::MarkBeforeUndo) {
                            self.marking.insert(id);
                            out.push(Output::MarkDelivered(vec![id], Delivered::Refused));
                        } else {
                            self.undoing.insert(id, e.intent.clone());
                        }
                        out.push(Output::Undo(e.intent));
                    }
                }
                Answer::Unreachable => {
                    if let Some(e) = self.pending.get_mut(&id) {
                        e.sent_at = None;
                        e.not_before = now + Self::BACKOFF;
                    }
                }
            },
            Input::Marked(ids) => {
                for id in ids {
                    if self.marking.remove(&id)
                        && self.reloading.is_some()
                        && self.bug != Some(CourierBug::TrustStaleReload)
                    {
                        self.settled.insert(id);
                    }
                }
                if self.settled.len() > Self::MAX_SETTLED {
                    // Too many to remember: the list out is not taken at all.
                    self.give_up_reload();
                }
            }
            Input::Undone { id, done } => {
                if let Some(intent) = self.undoing.remove(&id) {
                    if done {
                        self.marking.insert(id);
                        out.push(Output::MarkDelivered(vec![id], Delivered::Refused));
                    } else {
                        let entry = Entry { intent, sent_at: None, not_before: now + Self::BACKOFF };
                        self.pending.insert(id, entry);
                    }
                }
            }
            Input::Tick => {}
        }
        if self.reloading.is_some_and(|(_, at)| now.saturating_sub(at) >= Self::RELOAD_ANSWER_WITHIN) {
            self.give_up_reload();
        }
        self.send_due(now, &mut out);
        let reload_due = self.last_reload.is_none_or(|at| now.saturating_sub(at) >= Self::RELOAD_EVERY);
        if reload_due && self.reloading.is_none() && self.bug != Some(CourierBug::NeverReload) {
            self.last_reload = Some(now);
            self.reloads += 1;
            self.reloading = Some((self.reloads, now));
            out.push(Output::Reload { gen: self.reloads });
        }
        out
    }

    /// Forgets the reload out (its answer will be ignored) and makes the next one due.
    fn give_up_reload(&mut self) {
        self.settled.clear();
        self.reloading = None;
        self.last_reload = None;
    }

    /// Adds intents to deliver, unless already known or being marked or undone.
    fn take(&mut self, now: Duration, intents: Vec<Intent<T>>) {
        for intent in intents {
            if !self.marking.contains(&intent.id) && !self.undoing.contains_key(&intent.id) {
                let entry = Entry { intent, sent_at: None, not_before: now };
                self.pending.entry(entry.intent.id).or_insert(entry);
            }
        }
    }

    /// Sends what is due: never sent, answered "unreachable" a while ago, or unanswered
    /// for [`Self::RETRY_AFTER`] — oldest first, keeping at most [`Self::MAX_IN_FLIGHT`] out.
    fn send_due(&mut self, now: Duration, out: &mut Vec<Output<T>>) {
        let out_now = |e: &Entry<T>| e.sent_at.is_some_and(|at| now.saturating_sub(at) < Self::RETRY_AFTER);
        let mut in_flight = self.pending.values().filter(|e| out_now(e)).count();
        let mut marked = Vec::new();
        for e in self.pending.values_mut() {
            if in_flight >= Self::MAX_IN_FLIGHT {
                break;
            }
            if out_now(e) || now < e.not_before {
                continue;
            }
            e.sent_at = Some(now);
            in_flight += 1;
            out.push(Output::Send(e.intent.clone()));
            if self.bug == Some(CourierBug::MarkOnSend) {
                marked.push(e.intent.id);
            }
        }
        for id in marked {
            self.pending.remove(&id);
            self.marking.insert(id);
            out.push(Output::MarkDelivered(vec![id], Delivered::Applied));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(id: IntentId) -> Intent<&'static str> {
        Intent { id, to_shard: 1, op: "inverse" }
    }

    fn sends(out: &[Output<&'static str>]) -> Vec<IntentId> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(i) => Some(i.id),
                _ => None,
            })
            .collect()
    }

    const T0: Duration = Duration::from_secs(1);

    #[test]
    fn a_courier_reloads_at_once_sends_what_it_loads_and_marks_only_on_an_answer() {
        let mut c = Courier::new(None);
        assert_eq!(c.step(T0, Input::Tick), vec![Output::Reload { gen: 1 }]);
        let out = c.step(T0, Input::Reloaded { gen: 1, intents: vec![intent(1), intent(2)] });
        assert_eq!(sends(&out), vec![1, 2]);
        assert!(!out.iter().any(|o| matches!(o, Output::MarkDelivered(..))));
        // Answered: marked once, not sent again, even if a reload lists it meanwhile.
        let out = c.step(T0, Input::Answered { id: 1, answer: Answer::Applied });
        assert_eq!(out, vec![Output::MarkDelivered(vec![1], Delivered::Applied)]);
        let t1 = T0 + Courier::<&str>::RELOAD_EVERY;
        assert_eq!(c.step(t1, Input::Tick), vec![Output::Reload { gen: 2 }]);
        assert!(sends(&c.step(t1, Input::Reloaded { gen: 2, intents: vec![intent(1)] })).is_empty());
        assert!(c.step(T0, Input::Answered { id: 1, answer: Answer::Applied }).is_empty(), "a duplicate answer");
        c.step(T0, Input::Marked(vec![1]));
        assert_eq!(c.pending(), 1);
    }

    #[test]
    fn one_reload_at_a_time_and_an_intent_marked_while_it_was_out_is_not_taken_back() {
        let mut c = Courier::new(None);
        c.step(T0, Input::Tick);
        c.step(T0, Input::Reloaded { gen: 1, intents: vec![intent(1)] });
        c.step(T0, Input::Answered { id: 1, answer: Answer::Applied });
        let later = T0 + Courier::<&str>::RELOAD_EVERY;
        assert_eq!(c.step(later, Input::Tick), vec![Output::Reload { gen: 2 }]);
        // The reload read the table before the mark committed; the mark is confirmed first.
        c.step(later, Input::Marked(vec![1]));
        assert!(c.step(later, Input::Wake).is_empty(), "no second reload while one is out");
        let out = c.step(later, Input::Reloaded { gen: 2, intents: vec![intent(1), intent(2)] });
        assert_eq!(sends(&out), vec![2], "intent 1 is delivered and marked: not sent again");
        // Woken meanwhile: the next reload goes as this one ends, and a stale answer is ignored.
        assert_eq!(out.last(), Some(&Output::Reload { gen: 3 }));
        assert!(sends(&c.step(later, Input::Reloaded { gen: 2, intents: vec![intent(4)] })).is_empty(), "stale");
        let out = c.step(later, Input::Reloaded { gen: 3, intents: vec![intent(2), intent(3)] });
        assert_eq!(sends(&out), vec![3]);
    }

    #[test]
    fn a_reload_never_answered_is_given_up_and_asked_again() {
        let mut c = Courier::<&str>::new(None);
        assert_eq!(c.step(T0, Input::Tick), vec![Output::Reload { gen: 1 }]);
        let before = T0 + Courier::<&str>::RELOAD_ANSWER_WITHIN - Duration::from_millis(1);
        assert!(c.step(before, Input::Tick).is_empty(), "still waiting for it");
        let after = T0 + Courier::<&str>::RELOAD_ANSWER_WITHIN;
        assert_eq!(c.step(after, Input::Tick), vec![Output::Reload { gen: 2 }]);
        assert!(sends(&c.step(after, Input::Reloaded { gen: 1, intents: vec![intent(1)] })).is_empty(), "too late");
        assert_eq!(sends(&c.step(after, Input::Reloaded { gen: 2, intents: vec![intent(1)] })), vec![1]);
    }

    #[test]
    fn unanswered_and_unreachable_deliveries_go_again_later() {
        let mut c = Courier::new(None);
        c.step(T0, Input::Tick);
        c.step(T0, Input::Reloaded { gen: 1, intents: vec![intent(1), intent(2)] });
        let soon = T0 + Courier::<&str>::BACKOFF / 2;
        assert!(sends(&c.step(soon, Input::Tick)).is_empty(), "both still out");
        let out = c.step(soon, Input::Answered { id: 2, answer: Answer::Unreachable });
        assert!(sends(&out).is_empty(), "not at once after unreachable");
        assert_eq!(sends(&c.step(soon + Courier::<&str>::BACKOFF, Input::Tick)), vec![2]);
        let later = T0 + Courier::<&str>::RETRY_AFTER;
        assert_eq!(sends(&c.step(later, Input::Tick)), vec![1]);
    }

    #[test]
    fn a_refused_intent_is_undone_before_it_is_marked_and_sent_again_if_the_undo_failed() {
        let mut c = Courier::new(None);
        c.step(T0, Input::Tick);
        c.step(T0, Input::Reloaded { gen: 1, intents: vec![intent(1)] });
        let out = c.step(T0, Input::Answered { id: 1, answer: Answer::Refused("gone".into()) });
        assert_eq!(out, vec![Output::Undo(intent(1))]);
        let t1 = T0 + Courier::<&str>::RELOAD_EVERY;
        assert_eq!(c.step(t1, Input::Tick), vec![Output::Reload { gen: 2 }]);
        let listed = c.step(t1, Input::Reloaded { gen: 2, intents: vec![intent(1)] });
        assert!(sends(&listed).is_empty(), "not sent while undoing");
        assert!(c.step(t1, Input::Undone { id: 1, done: false }).is_empty());
        let again = t1 + Courier::<&str>::BACKOFF;
        assert_eq!(sends(&c.step(again, Input::Tick)), vec![1]);
        c.step(again, Input::Answered { id: 1, answer: Answer::Refused("gone".into()) });
        assert_eq!(
            c.step(again, Input::Undone { id: 1, done: true }),
            vec![Output::MarkDelivered(vec![1], Delivered::Refused)]
        );
    }

    #[test]
    fn at_most_so_many_are_out_at_once_oldest_first() {
        let mut c = Courier::new(None);
        c.step(T0, Input::Tick);
        let n = Courier::<&str>::MAX_IN_FLIGHT as u64;
        let out = c.step(T0, Input::Reloaded { gen: 1, intents: (1..=n + 3).map(intent).collect() });
        assert_eq!(sends(&out), (1..=n).collect::<Vec<_>>());
        let out = c.step(T0, Input::Answered { id: 5, answer: Answer::Refused("gone".into()) });
        assert_eq!(sends(&out), vec![n + 1]);
    }
}
