//! Follower reads coalesced into batches: the graph client's way to the `readers` queue
//! group when many reads are in flight at once (the gateway under load).
//!
//! A read crosses four processes (client → nats-server → follower → nats-server →
//! client), and on a small machine most of its CPU is those hops' wakeups and context
//! switches, not the cache lookup (`docs/benchmarks.md`). So a client keeps one request
//! to the followers in the fast lane ([`SLOTS`]): a read that finds the lane free goes at
//! once, alone, on `P.graph.read` (no wait at low load); the reads that arrive meanwhile
//! go together when it frees, up to [`MAX_READS_PER_BATCH`], as one [`ReadBatch`] on
//! `P.graph.reads`. A request that is slow (a cache fill, a big query) gives up its slot
//! after [`SLOT_HELD_AT_MOST`] and finishes outside the lane, so it holds up the reads
//! behind it that long at most; [`MAX_OUTSTANDING`] bounds the requests out in all.
//! Each read's answer is exactly what it would have had alone: the batch changes the
//! transport, not the protocol (the follower checks lease and consistency per read).
//!
//! The queue of waiting reads is bounded ([`MAX_WAITING`]): past it, and while
//! [`MAX_OUTSTANDING`] requests are out, a read goes alone, outside the batcher, so no read
//! waits behind a follower that stopped answering for longer than a slot is held.
//!
//! A batch is answered when its slowest read is: a read slower than the request timeout
//! (a follower's fill stuck behind a failing leader) times out its batch mates too, and
//! they go on to the leader as a read alone would.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::graph::{ReadBatch, ReadRequest, ReadResult, Reply, MAX_READS_PER_BATCH};
use crate::{Bus, BusError};

/// Requests (single reads or batches) in the fast lane at once, per client. One does best
/// under load (docs/benchmarks.md: 1, 2 and 4 measured): the fewer messages, the fewer
/// wakeups, and the batch grows to fill the time of a round trip.
pub const SLOTS: usize = 1;
/// How long a request keeps its slot before the next one may go.
pub const SLOT_HELD_AT_MOST: Duration = Duration::from_millis(2);
/// Requests out at once in all, slow ones included.
pub const MAX_OUTSTANDING: usize = 32;
/// Reads waiting for a slot at most; more go alone.
pub const MAX_WAITING: usize = 4 * MAX_READS_PER_BATCH;

/// What became of a read given to the batcher.
#[derive(Debug)]
pub enum Batched {
    /// The followers' answer (or the bus error), as a read alone would have had it.
    Answer(Result<Reply<ReadResult>, BusError>),
    /// Not answered (the queue was full, or the batch as a whole was refused: the
    /// followers were overloaded, or the answers would not fit one message): ask alone.
    Alone,
}

struct Waiting {
    req: ReadRequest,
    answer: oneshot::Sender<Batched>,
}

/// The handle reads go through; the task it started sends them.
#[derive(Clone)]
pub struct ReadBatcher {
    queue: mpsc::Sender<Waiting>,
}

impl ReadBatcher {
    /// Starts the batcher's task on `bus`, each request with `timeout`. The task ends
    /// when every handle is dropped (or when it is aborted).
    pub fn start(bus: Bus, timeout: Duration) -> (ReadBatcher, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(MAX_WAITING);
        (ReadBatcher { queue }, tokio::spawn(run(bus, rx, timeout)))
    }

    /// Sends `req` to the followers, alone or in a batch.
    pub async fn read(&self, req: ReadRequest) -> Batched {
        let (answer, rx) = oneshot::channel();
        if self.queue.try_send(Waiting { req, answer }).is_err() {
            return Batched::Alone;
        }
        rx.await.unwrap_or(Batched::Alone)
    }
}

async fn run(bus: Bus, mut rx: mpsc::Receiver<Waiting>, timeout: Duration) {
    let slots = Arc::new(Semaphore::new(SLOTS));
    let outstanding = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    loop {
        // A slot first: while none is free the reads wait in the queue and go together.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_READS_PER_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        // Too many requests out (followers that stopped answering hold theirs until the
        // timeout): these reads go alone rather than wait behind them.
        let Ok(out) = outstanding.clone().try_acquire_owned() else {
            for w in batch {
                let _ = w.answer.send(Batched::Alone);
            }
            continue;
        };
        let bus = bus.clone();
        tokio::spawn(async move {
            let sent = send(&bus, batch, timeout);
            tokio::pin!(sent);
            tokio::select! {
                () = &mut sent => drop(slot),
                () = tokio::time::sleep(SLOT_HELD_AT_MOST) => {
                    drop(slot);
                    sent.await;
                }
            }
            drop(out);
        });
    }
}

/// Sends one read alone (on `P.graph.read`) or several as a batch, and answers each.
async fn send(bus: &Bus, mut batch: Vec<Waiting>, timeout: Duration) {
    if batch.len() == 1 {
        let Some(w) = batch.pop() else { return };
        let answer = bus.request::<_, Reply<ReadResult>>(bus.subjects().graph_read(), &w.req, timeout).await;
        let _ = w.answer.send(Batched::Answer(answer));
        return;
    }
    let (reqs, answers): (Vec<ReadRequest>, Vec<oneshot::Sender<Batched>>) =
        batch.into_iter().map(|w| (w.req, w.answer)).unzip();
    let asked = reqs.len();
    let reply = bus
        .request::<_, Reply<Vec<Reply<ReadResult>>>>(bus.subjects().graph_reads(), &ReadBatch { reads: reqs }, timeout)
        .await;
    match reply {
        Ok(Reply::Ok(results)) if results.len() == asked => {
            for (answer, result) in answers.into_iter().zip(results) {
                let _ = answer.send(Batched::Answer(Ok(result)));
            }
        }
        // Refused as a whole (or a reply that does not match the batch): none was answered.
        Ok(_) => {
            for answer in answers {
                let _ = answer.send(Batched::Alone);
            }
        }
        // No answer in time: the followers are slow or gone, as for a read alone.
        Err(BusError::Timeout { subject, timeout }) => {
            for answer in answers {
                let timeout = BusError::Timeout { subject: subject.clone(), timeout };
                let _ = answer.send(Batched::Answer(Err(timeout)));
            }
        }
        // No follower takes batches (none serves, or they predate batches), or the bus
        // failed: each read alone finds out what to do.
        Err(_) => {
            for answer in answers {
                let _ = answer.send(Batched::Alone);
            }
        }
    }
}
