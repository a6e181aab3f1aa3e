//! The workloads: which URLs each one requests, drawn here once and written to a file the
//! load generator's script cycles through (so every target is asked exactly the same
//! sequence of paths).
//!
//! - (r1) entity reads, `GET /api/entities/{id}`, ids uniform over every entity of the graph.
//! - (r2) a TAO-shaped read mix over the same graph, keys Zipf(s) over all entities (in a
//!   random order, so popularity does not follow id order): assoc_range 41 %
//!   (`…/associations/{type}?limit=10`), obj_get 29 % (`/api/entities/{id}`), assoc_get 16 %
//!   and assoc_count 12 %. The gateway has no route for either of the last two, so they use
//!   the nearest one, the list route: `?limit=1` (the newest association, not one named by
//!   its far end as TAO's assoc_get) and `?limit=0` (the count with no items). Association
//!   types follow the entity's type: `friend`, `likes`, `posted` for users, `likedby`,
//!   `postedby` for statuses.
//!
//! The trivial handler is always asked for its one fixed route, [`TRIVIAL_PATH`].

use std::path::{Path, PathBuf};

use instaface_testkit::zipf::Zipf;
use rand::seq::SliceRandom;
use rand::Rng as _;

/// The trivial handler's one route.
pub const TRIVIAL_PATH: &str = "/trivial";

/// Association types read from a user / a status.
pub const USER_ASSOCS: [&str; 3] = ["friend", "likes", "posted"];
pub const STATUS_ASSOCS: [&str; 2] = ["likedby", "postedby"];

/// The bench's random source, seeded from the OS (a different draw per run).
pub type Rng = rand::rngs::StdRng;

/// An entity of the graph: its id and whether it is a user (else a status).
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub id: u64,
    pub user: bool,
}

/// The association types one entity has lists of.
pub fn assoc_types(node: Node) -> &'static [&'static str] {
    if node.user {
        &USER_ASSOCS
    } else {
        &STATUS_ASSOCS
    }
}

/// The four operations of the mix, with their shares (percent) and the path each uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    AssocRange,
    ObjGet,
    AssocGet,
    AssocCount,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::AssocRange, Op::ObjGet, Op::AssocGet, Op::AssocCount];

    /// TAO's shares of these four (they make 98 % of its reads; the rest is left out).
    pub fn share(self) -> f64 {
        match self {
            Op::AssocRange => 41.0,
            Op::ObjGet => 29.0,
            Op::AssocGet => 16.0,
            Op::AssocCount => 12.0,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Op::AssocRange => "assoc_range (`?limit=10`)",
            Op::ObjGet => "obj_get",
            Op::AssocGet => "assoc_get (`?limit=1`)",
            Op::AssocCount => "assoc_count (`?limit=0`)",
        }
    }

    pub fn path(self, node: Node, atype: &str) -> String {
        match self {
            Op::ObjGet => format!("/api/entities/{}", node.id),
            Op::AssocRange => format!("/api/entities/{}/associations/{atype}?limit=10", node.id),
            Op::AssocGet => format!("/api/entities/{}/associations/{atype}?limit=1", node.id),
            Op::AssocCount => format!("/api/entities/{}/associations/{atype}?limit=0", node.id),
        }
    }
}

/// The r1 paths: `n` entity reads, uniform over `nodes`.
pub fn r1_paths(nodes: &[Node], n: usize, rng: &mut Rng) -> Vec<String> {
    (0..n).map(|_| Op::ObjGet.path(nodes[rng.random_range(0..nodes.len())], "")).collect()
}

/// The r2 paths: `n` operations of the mix, keys Zipf(`s`) over `nodes` (ranked in a random
/// order), and how many of each operation were drawn.
pub fn r2_paths(nodes: &[Node], n: usize, s: f64, rng: &mut Rng) -> (Vec<String>, [usize; 4]) {
    let mut ranked = nodes.to_vec();
    ranked.shuffle(rng);
    let zipf = Zipf::new(ranked.len(), s);
    let total: f64 = Op::ALL.iter().map(|o| o.share()).sum();
    let mut counts = [0usize; 4];
    let paths = (0..n)
        .map(|_| {
            let node = ranked[zipf.sample(rng)];
            let mut r = rng.random::<f64>() * total;
            let mut op = Op::AssocCount;
            for o in Op::ALL {
                if r < o.share() {
                    op = o;
                    break;
                }
                r -= o.share();
            }
            counts[op as usize] += 1;
            let types = assoc_types(node);
            op.path(node, types[rng.random_range(0..types.len())])
        })
        .collect();
    (paths, counts)
}

/// Writes one path a line to `dir/name`.
pub fn write_paths(dir: &Path, name: &str, paths: &[String]) -> std::io::Result<PathBuf> {
    let file = dir.join(name);
    let mut text = paths.join("\n");
    text.push('\n');
    std::fs::write(&file, text)?;
    Ok(file)
}
