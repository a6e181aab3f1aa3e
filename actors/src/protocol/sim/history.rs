//! The clients' history and its checker: every acknowledged write (entity, version, the
//! moment the client got the answer) and every read (entity, the moment the client sent
//! it, the version it returned, the node that answered). A read is checked as it
//! completes: every write acknowledged before it began is already recorded, so the check
//! is exact — no read that began after a write's acknowledgement may return an older
//! version.

use std::time::Duration;

/// One entity's acknowledged writes, in acknowledgement order (the simulation's events
/// run in time order), with the running maximum of their versions.
#[derive(Debug, Default, Clone)]
struct Acks {
    at: Vec<Duration>,
    max_version: Vec<u64>,
}

impl Acks {
    fn push(&mut self, at: Duration, version: u64) {
        let max = self.max_version.last().copied().unwrap_or(0).max(version);
        self.at.push(at);
        self.max_version.push(max);
    }

    /// The newest version acknowledged strictly before `t` (and when), if any.
    fn newest_before(&self, t: Duration) -> Option<(u64, Duration)> {
        let n = self.at.partition_point(|&a| a < t);
        n.checked_sub(1).map(|i| (self.max_version[i], self.at[i]))
    }
}

/// A read that returned a version older than one acknowledged before it began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleRead {
    pub entity: usize,
    pub node: String,
    pub began: Duration,
    pub returned: u64,
    pub acked: u64,
    pub acked_at: Duration,
}

impl std::fmt::Display for StaleRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stale read: entity {} at {} began at {:?} and returned v{}, but v{} was acknowledged at {:?}",
            self.entity, self.node, self.began, self.returned, self.acked, self.acked_at
        )
    }
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct History {
    acks: Vec<Acks>,
    pub writes_acked: u64,
    pub writes_failed: u64,
    pub reads_ok: u64,
    pub reads_refused: u64,
}

impl History {
    pub fn new(entities: usize) -> History {
        History { acks: vec![Acks::default(); entities], ..History::default() }
    }

    /// A write of `entity` acknowledged at `at` with `version`.
    pub fn acked(&mut self, entity: usize, version: u64, at: Duration) {
        self.writes_acked += 1;
        self.acks[entity].push(at, version);
    }

    /// The newest version of `entity` acknowledged so far.
    pub fn newest_acked(&self, entity: usize) -> u64 {
        self.acks[entity].max_version.last().copied().unwrap_or(0)
    }

    /// A read of `entity` that began at `began` and returned `version` from `node`;
    /// `Err` if an older version than one acknowledged before it began.
    pub fn read(&mut self, entity: usize, version: u64, began: Duration, node: &str) -> Result<(), StaleRead> {
        self.reads_ok += 1;
        match self.acks[entity].newest_before(began) {
            Some((acked, acked_at)) if version < acked => {
                Err(StaleRead { entity, node: node.to_string(), began, returned: version, acked, acked_at })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_read_older_than_an_earlier_acknowledgement_is_reported() {
        let mut h = History::new(1);
        h.acked(0, 3, ms(10));
        h.acked(0, 2, ms(12)); // acknowledged late; the max still counts
        assert!(h.read(0, 2, ms(5), "n1").is_ok(), "began before the ack");
        assert!(h.read(0, 2, ms(10), "n1").is_ok(), "began at the ack");
        let stale = h.read(0, 2, ms(11), "n1").unwrap_err();
        assert_eq!((stale.returned, stale.acked), (2, 3));
        assert!(h.read(0, 3, ms(20), "n2").is_ok());
        assert_eq!(h.newest_acked(0), 3);
    }
}
