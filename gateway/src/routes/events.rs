//! `GET /api/events`: the live event stream as JSON over a websocket.
//!
//! Every socket reads the one `broadcast` channel fed by [`crate::event_feed`], in a task of
//! its own. A client that falls more than the channel's capacity behind, or whose send
//! blocks longer than `ws_send_timeout`, is closed (code 1008, "lagging") instead of being
//! allowed to slow the others or to hold memory. At most `max_ws_clients` sockets are open at
//! once (past it: 503 with `Retry-After`), and what a client sends is read in messages of at
//! most [`MAX_CLIENT_MESSAGE`] bytes (and ignored): nothing a client does grows without bound.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::broadcast::{self, error::RecvError};

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::state::AppState;

/// Close code for a client dropped for falling behind (policy violation).
pub const CLOSE_LAGGING: u16 = 1008;

/// Largest message (and frame) a client may send, in bytes. Clients have nothing to say on
/// this socket (what they send is ignored), so the library's defaults (64 MiB messages,
/// 16 MiB frames, buffered whole before being handed over) would only be room for abuse;
/// a larger message closes the socket.
pub const MAX_CLIENT_MESSAGE: usize = 4096;

/// The headers of a websocket handshake (RFC 6455 §4.1), which the route requires.
pub struct UpgradeHeaders;

impl IntoParams for UpgradeHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let header = |name: &str, description: &str, schema: ObjectBuilder| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        let string = |example: &str| ObjectBuilder::new().schema_type(Type::String).examples([example]);
        vec![
            header("Connection", "Must list `upgrade` (in any case)", string("Upgrade")),
            header("Upgrade", "`websocket` (in any case)", string("websocket")),
            header(
                "Sec-WebSocket-Version",
                "`13`",
                ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["13"])),
            ),
            header("Sec-WebSocket-Key", "The handshake nonce", string("dGhlIHNhbXBsZSBub25jZQ==")),
        ]
    }
}

/// Upgrades to a websocket that receives every event on `P.events` about a member of the
/// cluster as a JSON text message with the event's fields (`type`, `node`, `term`, `ts`, …).
/// At most `MAX_WS_CLIENTS` sockets are open at once.
#[utoipa::path(
    get,
    operation_id = "events",
    path = "/api/events",
    tag = "cluster",
    params(UpgradeHeaders),
    responses(
        (status = 101, description = "Switching to the websocket protocol; each text message is one event"),
        (status = 400, description = "Not a websocket upgrade request (a header of the handshake missing or wrong)",
            body = crate::model::ErrorResponse),
        (status = 503, description = "MAX_WS_CLIENTS websockets are open already", body = crate::model::ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade?.max_message_size(MAX_CLIENT_MESSAGE).max_frame_size(MAX_CLIENT_MESSAGE);
    // The slot is held until the socket's relay ends (or the handshake fails).
    let Ok(slot) = state.ws_slots.clone().try_acquire_owned() else {
        state.metrics.ws_refused.inc();
        return Err(ApiError::Unavailable(format!(
            "{} websocket clients are connected already (MAX_WS_CLIENTS); retry later",
            state.config.max_ws_clients
        )));
    };
    // Subscribe before the handshake completes, so the client misses nothing after it.
    let feed = state.events.subscribe();
    let send_timeout = state.config.ws_send_timeout;
    let metrics = state.metrics.clone();
    Ok(upgrade.on_upgrade(move |socket: WebSocket| async move {
        let _slot = slot;
        metrics.ws_clients.inc();
        let (sink, stream) = socket.split();
        let outcome = relay(feed, sink, stream, send_timeout).await;
        metrics.ws_clients.dec();
        if outcome == Outcome::Lagging {
            metrics.ws_dropped.inc();
        }
    }))
}

/// Why a socket's relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The client closed, or the connection failed.
    ClientGone,
    /// The client fell behind and was dropped.
    Lagging,
    /// The feed ended (the gateway is stopping).
    FeedClosed,
}

/// Copies the feed to one client until either side ends; drops the client if it lags.
pub async fn relay<Tx, Rx>(
    mut feed: broadcast::Receiver<Utf8Bytes>,
    mut sink: Tx,
    mut stream: Rx,
    send_timeout: Duration,
) -> Outcome
where
    Tx: Sink<Message> + Unpin,
    Rx: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    loop {
        tokio::select! {
            event = feed.recv() => match event {
                Ok(text) => match tokio::time::timeout(send_timeout, sink.send(Message::Text(text))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Outcome::ClientGone,
                    Err(_) => return Outcome::Lagging,
                },
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "dropping a websocket client that fell behind");
                    let close = CloseFrame { code: CLOSE_LAGGING, reason: Utf8Bytes::from_static("lagging") };
                    let _ = tokio::time::timeout(send_timeout, sink.send(Message::Close(Some(close)))).await;
                    return Outcome::Lagging;
                }
                Err(RecvError::Closed) => {
                    let _ = tokio::time::timeout(send_timeout, sink.send(Message::Close(None))).await;
                    return Outcome::FeedClosed;
                }
            },
            incoming = stream.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Outcome::ClientGone,
                // Pings are answered by axum; anything else from the client is ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;

    fn text(m: &Message) -> Option<&str> {
        match m {
            Message::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn relays_in_order_until_the_client_leaves() {
        let (tx, feed) = broadcast::channel(16);
        let (sink, mut out) = mpsc::unbounded::<Message>();
        let (client, stream) = mpsc::unbounded::<Result<Message, axum::Error>>();
        let task = tokio::spawn(relay(feed, sink, stream, Duration::from_secs(1)));
        tx.send(Utf8Bytes::from_static("{\"n\":1}")).unwrap();
        tx.send(Utf8Bytes::from_static("{\"n\":2}")).unwrap();
        assert_eq!(text(&out.next().await.unwrap()), Some("{\"n\":1}"));
        assert_eq!(text(&out.next().await.unwrap()), Some("{\"n\":2}"));
        client.unbounded_send(Ok(Message::Close(None))).unwrap();
        assert_eq!(task.await.unwrap(), Outcome::ClientGone);
    }

    #[tokio::test]
    async fn a_lagging_client_is_dropped_and_the_others_keep_up() {
        let (tx, slow_feed) = broadcast::channel(4);
        // The slow client's feed overflows before its relay even starts.
        for i in 0..10 {
            tx.send(Utf8Bytes::from(format!("{{\"n\":{i}}}"))).unwrap();
        }
        let (slow_sink, mut slow_out) = mpsc::unbounded::<Message>();
        let (_slow_client, slow_stream) = mpsc::unbounded::<Result<Message, axum::Error>>();
        let outcome = relay(slow_feed, slow_sink, slow_stream, Duration::from_secs(1)).await;
        assert_eq!(outcome, Outcome::Lagging);
        match slow_out.next().await {
            Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CLOSE_LAGGING),
            other => panic!("expected a close frame, got {other:?}"),
        }
        // A client that keeps up still gets every event.
        let fast_feed = tx.subscribe();
        let (fast_sink, mut fast_out) = mpsc::unbounded::<Message>();
        let (_fast_client, fast_stream) = mpsc::unbounded::<Result<Message, axum::Error>>();
        let task = tokio::spawn(relay(fast_feed, fast_sink, fast_stream, Duration::from_secs(1)));
        tx.send(Utf8Bytes::from_static("{\"n\":10}")).unwrap();
        assert_eq!(text(&fast_out.next().await.unwrap()), Some("{\"n\":10}"));
        drop(tx);
        assert_eq!(task.await.unwrap(), Outcome::FeedClosed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_whose_sends_block_is_dropped() {
        let (tx, feed) = broadcast::channel(4);
        // A sink that never accepts anything.
        let sink =
            futures::sink::unfold((), |(), _m: Message| futures::future::pending::<Result<(), std::io::Error>>());
        let (_client, stream) = mpsc::unbounded::<Result<Message, axum::Error>>();
        let task = tokio::spawn(relay(feed, Box::pin(sink), stream, Duration::from_secs(5)));
        tx.send(Utf8Bytes::from_static("{}")).unwrap();
        assert_eq!(task.await.unwrap(), Outcome::Lagging);
    }
}
