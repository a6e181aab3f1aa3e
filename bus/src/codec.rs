//! MessagePack encoding for every payload: always a map with named fields
//! (`rmp_serde::to_vec_named`), so a decoder in any language sees field names.
//!
//! Decoding never panics: garbage or truncated input is a [`DecodeError`] value.
//! [`DecodeLog`] logs such errors once per burst instead of once per message.

use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};

/// A payload that could not be decoded as the expected message type.
#[derive(Debug, thiserror::Error)]
#[error("undecodable {what} payload ({len} bytes): {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub len: usize,
    pub reason: String,
}

/// Encodes `msg` as a MessagePack map with named fields.
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Vec<u8> {
    // Encoding our own types into a Vec cannot fail short of a serde bug (maps with
    // non-string keys are still valid MessagePack), so an error here is a programming error.
    rmp_serde::to_vec_named(msg).expect("message types always encode")
}

/// Decodes a MessagePack payload into `T`.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    rmp_serde::from_slice(payload).map_err(|e| DecodeError {
        what: short_type_name::<T>(),
        len: payload.len(),
        reason: e.to_string(),
    })
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Rate-limits decode-error logging: the first error of a burst is logged at once, the
/// rest are counted and summarised when the next burst starts (after `quiet`).
#[derive(Debug)]
pub struct DecodeLog {
    quiet: Duration,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl Default for DecodeLog {
    fn default() -> Self {
        DecodeLog { quiet: Duration::from_secs(5), last_logged: None, suppressed: 0 }
    }
}

impl DecodeLog {
    /// Records one undecodable payload on `subject`; logs it unless a burst is under way.
    pub fn record(&mut self, subject: &str, err: &DecodeError) {
        let now = Instant::now();
        match self.last_logged {
            Some(t) if now.duration_since(t) < self.quiet => self.suppressed += 1,
            _ => {
                tracing::warn!(
                    subject,
                    error = %err,
                    suppressed_before = self.suppressed,
                    "dropping undecodable message"
                );
                self.last_logged = Some(now);
                self.suppressed = 0;
            }
        }
    }
}
