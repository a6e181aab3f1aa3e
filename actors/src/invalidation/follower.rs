//! How a node's `applied_seq` moves, and what it drops from its cache for it. Used by
//! followers for every heartbeat and broadcast invalidation, and by a new leader to
//! replay the outbox into its own cache.

use instaface_bus::messages::InvalidationEntry;

/// What the cache must do, before anything later reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheEffect {
    /// Drop these keys (as written on the wire).
    Invalidate(Vec<String>),
    /// Drop everything.
    Clear,
}

/// A heartbeat's window: every invalidation with `floor < seq' <= seq` is in `entries`.
/// A node at or past `floor` drops the keys of the entries past its own `applied`; one
/// behind `floor` cannot know what it missed and clears its cache. Either way it is then
/// at `seq`. Returns what the cache must do (`None`: nothing new).
pub fn apply_window(applied: &mut u64, floor: u64, seq: u64, entries: &[InvalidationEntry]) -> Option<CacheEffect> {
    if *applied >= seq {
        return None;
    }
    let effect = if *applied >= floor {
        let from = *applied;
        let keys: Vec<String> =
            entries.iter().filter(|e| e.seq > from && e.seq <= seq).flat_map(|e| e.keys.iter().cloned()).collect();
        CacheEffect::Invalidate(keys)
    } else {
        CacheEffect::Clear
    };
    *applied = seq;
    Some(effect)
}

/// One broadcast invalidation, whose predecessor is `prev_seq`. Its keys are always
/// dropped; `applied` moves to `seq` only when it was at (or past) `prev_seq`, so a node
/// that missed something in between keeps reporting the gap until a heartbeat fills it.
pub fn apply_one(applied: &mut u64, prev_seq: u64, seq: u64, keys: &[String]) -> CacheEffect {
    if *applied >= prev_seq && seq > *applied {
        *applied = seq;
    }
    CacheEffect::Invalidate(keys.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, key: &str) -> InvalidationEntry {
        InvalidationEntry { seq, keys: vec![key.into()] }
    }

    #[test]
    fn a_window_applies_what_is_new_or_clears_a_node_behind_its_floor() {
        let window = [entry(5, "e:5"), entry(7, "e:7"), entry(9, "e:9")];
        let mut applied = 5;
        assert_eq!(
            apply_window(&mut applied, 4, 9, &window),
            Some(CacheEffect::Invalidate(vec!["e:7".into(), "e:9".into()]))
        );
        assert_eq!(applied, 9);
        assert_eq!(apply_window(&mut applied, 4, 9, &window), None);
        let mut behind = 3;
        assert_eq!(apply_window(&mut behind, 4, 9, &window), Some(CacheEffect::Clear));
        assert_eq!(behind, 9);
        // A window that claims nothing (an unready leader: seq 0) changes nothing.
        let mut at = 9;
        assert_eq!(apply_window(&mut at, 0, 0, &[]), None);
        assert_eq!(at, 9);
    }

    #[test]
    fn a_broadcast_moves_applied_only_without_a_gap() {
        let mut applied = 5;
        let keys = vec!["e:1".to_string()];
        assert_eq!(apply_one(&mut applied, 5, 8, &keys), CacheEffect::Invalidate(keys.clone()));
        assert_eq!(applied, 8);
        // Seq 9 was missed: 10 (whose predecessor is 9) drops its keys, applied stays.
        assert_eq!(apply_one(&mut applied, 9, 10, &keys), CacheEffect::Invalidate(keys.clone()));
        assert_eq!(applied, 8);
        // A late duplicate of 8 changes nothing.
        apply_one(&mut applied, 5, 8, &keys);
        assert_eq!(applied, 8);
    }
}
