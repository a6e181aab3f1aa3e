//! The invalidation log's settings: when a write is answered, how many invalidations a
//! heartbeat carries, and the planted bugs that negative controls switch on.

use std::str::FromStr;

use clap::ValueEnum;

/// How a write's invalidation must be covered before the write is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InvalidationMode {
    /// Answer once every follower acked the invalidation or its read lease certainly lapsed.
    Lease,
    /// Answer right after commit and broadcast (TAO's trade; clients use `min_seq`).
    Async,
}

/// A rule of the protocol broken on purpose, so that a test can show its checker sees
/// the difference (a negative control). Only test builds and nodes started with test
/// hooks (`INSTAFACE_TEST_HOOKS=true` and `INSTAFACE_PLANTED_BUG=<name>`) set one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// `answer-uncovered`: answer a write as soon as it commits, before its
    /// invalidation is covered.
    AnswerUncovered,
    /// `confirm-with-gap`: confirm the ack of any follower that applied the outbox
    /// loaded at takeover, even one that missed a write answered since.
    ConfirmWithGap,
    /// `answer-unchanged-at-once`: answer a write that changed nothing at once, before
    /// the writes it observed are covered.
    AnswerUnchangedAtOnce,
    /// `skip-ready-gate`: a new leader serves, confirms acks and claims its seq before
    /// it has replayed the outbox.
    SkipReadyGate,
    /// `forget-earlier-leases`: a new leader assumes no follower still holds a read
    /// lease from an earlier leader, so it answers writes without waiting for one.
    ForgetEarlierLeases,
    /// `batch-last-keys-only`: the one invalidation of a committed batch carries only
    /// its last write's keys, though it moves followers over every seq of the batch.
    BatchLastKeysOnly,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 6] = [
        PlantedBug::AnswerUncovered,
        PlantedBug::ConfirmWithGap,
        PlantedBug::AnswerUnchangedAtOnce,
        PlantedBug::SkipReadyGate,
        PlantedBug::ForgetEarlierLeases,
        PlantedBug::BatchLastKeysOnly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AnswerUncovered => "answer-uncovered",
            PlantedBug::ConfirmWithGap => "confirm-with-gap",
            PlantedBug::AnswerUnchangedAtOnce => "answer-unchanged-at-once",
            PlantedBug::SkipReadyGate => "skip-ready-gate",
            PlantedBug::ForgetEarlierLeases => "forget-earlier-leases",
            PlantedBug::BatchLastKeysOnly => "batch-last-keys-only",
        }
    }
}

impl FromStr for PlantedBug {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| {
            let names: Vec<_> = PlantedBug::ALL.iter().map(|b| b.name()).collect();
            format!("unknown planted bug {s:?} (one of {})", names.join(", "))
        })
    }
}

/// The invalidation log's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    pub mode: InvalidationMode,
    /// Invalidations a heartbeat carries at most (and a new leader loads); a follower
    /// behind them clears its cache.
    pub window_max: usize,
    /// A broken rule, for negative controls only.
    pub planted: Option<PlantedBug>,
}

impl LogConfig {
    /// Invalidations a heartbeat carries at most, by default.
    pub const WINDOW_MAX: usize = 512;

    pub fn new(mode: InvalidationMode) -> LogConfig {
        LogConfig { mode, window_max: Self::WINDOW_MAX, planted: None }
    }

    pub(crate) fn bug(&self, bug: PlantedBug) -> bool {
        self.planted == Some(bug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_bugs_parse_by_name() {
        for bug in PlantedBug::ALL {
            assert_eq!(bug.name().parse::<PlantedBug>(), Ok(bug));
        }
        assert!("nope".parse::<PlantedBug>().unwrap_err().contains("confirm-with-gap"));
    }
}
