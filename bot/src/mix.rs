//! The kinds of operation the bot performs and the weighted mix it draws them from.
//!
//! A mix is written `kind=weight,kind=weight,…` with whole-number weights; kinds left out
//! weigh 0. [`Mix::draw`] picks a kind in proportion to the weights. Every operation gets a
//! random stream of its own, [`op_rng`]`(seed, index)`, so the sequence of chosen kinds for a
//! seed does not depend on how many workers run it or in which order they finish.

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What one bot operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// Creates a user with a fake name.
    CreateUser,
    /// Adds `friend` between two users (the node adds the inverse).
    Befriend,
    /// Creates a status and links it `user --posted--> status`.
    Post,
    /// Adds `user --likes--> status`.
    Like,
    /// Patches a status's text.
    EditStatus,
    /// Patches a user's name.
    RenameUser,
    /// Removes a `likes` edge the bot made.
    Unlike,
    /// Removes a `friend` edge the bot made.
    Unfriend,
    /// Deletes a status the bot posted (with its `posted` and `likes` edges).
    DeleteStatus,
    /// Reads a user's timeline.
    ReadTimeline,
    /// Reads a user's friend list.
    ReadFriends,
}

impl OpKind {
    /// Every kind, in the order summaries list them.
    pub const ALL: [OpKind; 11] = [
        OpKind::CreateUser,
        OpKind::Befriend,
        OpKind::Post,
        OpKind::Like,
        OpKind::EditStatus,
        OpKind::RenameUser,
        OpKind::Unlike,
        OpKind::Unfriend,
        OpKind::DeleteStatus,
        OpKind::ReadTimeline,
        OpKind::ReadFriends,
    ];

    /// The kind's name in mixes, progress lines and summaries.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::CreateUser => "create_user",
            OpKind::Befriend => "befriend",
            OpKind::Post => "post",
            OpKind::Like => "like",
            OpKind::EditStatus => "edit_status",
            OpKind::RenameUser => "rename_user",
            OpKind::Unlike => "unlike",
            OpKind::Unfriend => "unfriend",
            OpKind::DeleteStatus => "delete_status",
            OpKind::ReadTimeline => "read_timeline",
            OpKind::ReadFriends => "read_friends",
        }
    }

    /// The kind's position in [`OpKind::ALL`] (for per-kind arrays).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the kind only reads.
    pub fn is_read(self) -> bool {
        matches!(self, OpKind::ReadTimeline | OpKind::ReadFriends)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OpKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OpKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = OpKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown operation {s:?} (known: {})", names.join(", "))
        })
    }
}

/// The default mix, close to TAO's published workload: reads dominate (two thirds here, so
/// writes are still visible in a demo), and writes are mostly association adds.
pub const DEFAULT_MIX: &str = "create_user=2,befriend=10,post=5,like=10,edit_status=2,rename_user=1,\
                               unlike=2,unfriend=1,delete_status=1,read_timeline=30,read_friends=36";

/// A weighted choice among operation kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; OpKind::ALL.len()],
    total: u64,
}

impl Mix {
    /// The weight of `kind`.
    pub fn weight(&self, kind: OpKind) -> u32 {
        self.weights[kind.index()]
    }

    /// The sum of all weights (never 0).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Picks a kind with probability weight / total.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> OpKind {
        let mut ticket = rng.random_range(0..self.total);
        for kind in OpKind::ALL {
            let w = u64::from(self.weight(kind));
            if ticket < w {
                return kind;
            }
            ticket -= w;
        }
        unreachable!("a ticket below the total falls in some weight")
    }
}

impl Default for Mix {
    fn default() -> Self {
        DEFAULT_MIX.parse().expect("the default mix parses")
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = [0u32; OpKind::ALL.len()];
        let mut seen = [false; OpKind::ALL.len()];
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let (name, weight) =
                part.split_once('=').ok_or_else(|| format!("mix entry {part:?} is not kind=weight"))?;
            let kind: OpKind = name.trim().parse()?;
            let weight: u32 = weight.trim().parse().map_err(|_| {
                format!("weight of {kind} must be a whole number from 0 to 1000000, not {:?}", weight.trim())
            })?;
            if weight > 1_000_000 {
                return Err(format!("weight of {kind} must be a whole number from 0 to 1000000, not {weight}"));
            }
            if std::mem::replace(&mut seen[kind.index()], true) {
                return Err(format!("mix names {kind} twice"));
            }
            weights[kind.index()] = weight;
        }
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return Err("mix has no operation with a weight above 0".into());
        }
        Ok(Mix { weights, total })
    }
}

impl fmt::Display for Mix {
    /// The canonical form: every kind with a weight above 0, in [`OpKind::ALL`] order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = OpKind::ALL
            .into_iter()
            .filter(|k| self.weight(*k) > 0)
            .map(|k| format!("{k}={}", self.weight(k)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The random stream of operation `index` in a run seeded with `seed`: the kind is its
/// first draw, then whatever the operation picks (users, statuses, names).
pub fn op_rng(seed: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix64(seed ^ splitmix64(index)))
}

/// SplitMix64's finaliser: spreads nearby inputs (seed 1, 2, …; index 0, 1, …) apart.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mix_is_read_heavy_and_writes_are_mostly_association_adds() {
        let mix = Mix::default();
        assert_eq!(mix.total(), 100);
        let reads: u64 = OpKind::ALL.iter().filter(|k| k.is_read()).map(|k| u64::from(mix.weight(*k))).sum();
        assert!(reads * 100 >= mix.total() * 65, "reads are {reads} of {}", mix.total());
        let assoc_adds = u64::from(mix.weight(OpKind::Befriend) + mix.weight(OpKind::Like));
        let writes = mix.total() - reads;
        assert!(assoc_adds * 2 > writes, "association adds {assoc_adds} of {writes} writes");
        assert_eq!(mix.to_string().parse::<Mix>(), Ok(mix));
    }

    #[test]
    fn mixes_parse_with_spaces_omitted_kinds_and_a_trailing_comma() {
        let mix: Mix = " befriend = 3, read_friends=1 ,".parse().unwrap();
        assert_eq!(mix.weight(OpKind::Befriend), 3);
        assert_eq!(mix.weight(OpKind::ReadFriends), 1);
        assert_eq!(mix.weight(OpKind::Like), 0);
        assert_eq!(mix.total(), 4);
        assert_eq!(mix.to_string(), "befriend=3,read_friends=1");
    }

    #[test]
    fn bad_mixes_are_refused_with_a_message_naming_the_problem() {
        let cases = [
            ("", "no operation with a weight above 0"),
            ("like=0,post=0", "no operation with a weight above 0"),
            ("like", "\"like\" is not kind=weight"),
            ("poke=3", "unknown operation \"poke\" (known: create_user, befriend"),
            ("like=-1", "weight of like must be a whole number"),
            ("like=1.5", "weight of like must be a whole number"),
            ("like=2000000", "not 2000000"),
            ("like=1,like=2", "mix names like twice"),
        ];
        for (input, expected) in cases {
            let err = input.parse::<Mix>().unwrap_err();
            assert!(err.contains(expected), "{input:?}: {err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn draws_follow_the_weights() {
        let mix: Mix = "create_user=1,befriend=3,read_friends=6".parse().unwrap();
        let mut counts = [0u32; OpKind::ALL.len()];
        let n = 100_000;
        for i in 0..n {
            counts[mix.draw(&mut op_rng(42, i)).index()] += 1;
        }
        for (kind, expected) in [(OpKind::CreateUser, 0.1), (OpKind::Befriend, 0.3), (OpKind::ReadFriends, 0.6)] {
            let share = f64::from(counts[kind.index()]) / n as f64;
            assert!((share - expected).abs() < 0.01, "{kind}: {share} vs {expected}");
        }
        assert_eq!(counts.iter().sum::<u32>(), n as u32, "kinds weighing 0 are never drawn");
    }

    #[test]
    fn the_sequence_of_kinds_is_a_function_of_the_seed() {
        let mix = Mix::default();
        let seq = |seed| (0..500).map(|i| mix.draw(&mut op_rng(seed, i))).collect::<Vec<_>>();
        assert_eq!(seq(7), seq(7));
        assert_ne!(seq(7), seq(8));
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in OpKind::ALL {
            assert_eq!(kind.name().parse::<OpKind>(), Ok(kind));
            assert_eq!(OpKind::ALL[kind.index()], kind);
        }
    }
}
