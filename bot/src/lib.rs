//! `instaface-bot`: fake social activity on an Instaface cluster, as a separate NATS client
//! (never HTTP) through the shared [`GraphClient`](instaface_bus::graph_client::GraphClient).
//!
//! - [`settings`]: the command line and its environment fallbacks → a [`run::RunConfig`].
//! - [`mix`]: the kinds of operation, the weighted mix they are drawn from, and each
//!   operation's seeded random stream.
//! - [`names`]: fake names and status texts from built-in lists.
//! - [`world`]: what the bot knows of the graph (its users, statuses and edges), so removals
//!   hit real edges and additions never re-add one; claims keep concurrent operations apart.
//! - [`ops`]: one operation from draw to record — planning, substitution, sending, riding
//!   through leader changes, and telling failures from unknown outcomes.
//! - [`stats`]: per-kind counts and latency histograms, the ledger of graph changes, and
//!   the final [`stats::Summary`].
//! - [`progress`]: the live progress line and the printed summary (text or JSON).
//! - [`run`]: a whole run — discovery, workers, pacing, stopping.
//!
//! Reconciling a run with MySQL: every confirmed change is in the summary's `entities` and
//! `associations` (in pairs: a pair is one row of the type and one of its inverse), every
//! change whose write had an unknown outcome in the matching `_unknown` field. After a run
//! by one bot on an empty graph, each count in MySQL lies between
//! `created − deleted − deleted_unknown` and `created + created_unknown − deleted` (and
//! likewise for association pairs); with no unknown outcome it equals `created − deleted`.

pub mod mix;
pub mod names;
pub mod ops;
pub mod progress;
pub mod run;
pub mod settings;
pub mod stats;
pub mod world;
