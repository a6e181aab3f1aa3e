//! Authenticated cluster messages: with a cluster key set (`CLUSTER_KEY`), every message
//! between nodes — heartbeats, votes and their replies, acks and their confirmations,
//! leadership transfers, invalidations, fills and their replies — and every unplug
//! command carries an HMAC-SHA256 over its subject and payload, in the NATS header
//! [`MAC_HEADER`] (lowercase hex). The payload stays the plain MessagePack map, so anyone
//! may still read the traffic; only holders of the key can write it. A message that fails
//! the check is dropped and counted by the receiver.
//!
//! What it does not do: stop a replay of a genuine message (terms, heartbeat numbers and
//! random ack numbers make old ones harmless to safety; NATS permissions keep other roles
//! off these subjects in the first place), or hide anything.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The NATS header that carries a message's MAC.
pub const MAC_HEADER: &str = "Instaface-Mac";

/// Shortest key accepted, in bytes of its text form.
pub const MIN_KEY_LEN: usize = 32;

/// The shared secret of one cluster's nodes (and of whoever may unplug them).
#[derive(Clone)]
pub struct ClusterKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(…)")
    }
}

impl ClusterKey {
    /// A key from its text form (e.g. 64 hex characters from `openssl rand -hex 32`): at
    /// least [`MIN_KEY_LEN`] characters, used as they are.
    pub fn parse(text: &str) -> Result<ClusterKey, String> {
        let text = text.trim();
        if text.len() < MIN_KEY_LEN {
            return Err(format!(
                "CLUSTER_KEY must be at least {MIN_KEY_LEN} characters (e.g. `openssl rand -hex 32`), got {}",
                text.len()
            ));
        }
        Ok(ClusterKey { key: text.as_bytes().to_vec() })
    }

    fn mac(&self, subject: &str, payload: &[u8]) -> Hmac<Sha256> {
        // new_from_slice accepts keys of any length for HMAC.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(subject.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    /// The MAC of a message on `subject` with `payload`, as lowercase hex.
    pub fn sign(&self, subject: &str, payload: &[u8]) -> String {
        let tag = self.mac(subject, payload).finalize().into_bytes();
        let mut hex = String::with_capacity(tag.len() * 2);
        for b in tag {
            hex.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            hex.push(char::from_digit((b & 0xf) as u32, 16).unwrap_or('0'));
        }
        hex
    }

    /// Whether `mac_hex` is the MAC of that message (compared in constant time).
    pub fn verify(&self, subject: &str, payload: &[u8], mac_hex: &str) -> bool {
        let Some(tag) = from_hex(mac_hex) else {
            return false;
        };
        self.mac(subject, payload).verify_slice(&tag).is_ok()
    }
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    s.as_bytes().chunks(2).map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_binds_the_key_the_subject_and_the_payload() {
        let key = ClusterKey::parse(&"k".repeat(32)).unwrap();
        let mac = key.sign("p.heartbeat", b"payload");
        assert_eq!(mac.len(), 64);
        assert!(key.verify("p.heartbeat", b"payload", &mac));
        assert!(!key.verify("p.heartbeat", b"payload!", &mac), "another payload");
        assert!(!key.verify("p.invalidate", b"payload", &mac), "another subject");
        let other = ClusterKey::parse(&"x".repeat(32)).unwrap();
        assert!(!other.verify("p.heartbeat", b"payload", &mac), "another key");
        assert!(!key.verify("p.heartbeat", b"payload", "zz"), "garbage");
        assert!(!key.verify("p.heartbeat", b"payload", &mac.to_uppercase().replace('A', "g")));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(ClusterKey::parse("short").unwrap_err().contains("CLUSTER_KEY"));
        assert!(format!("{:?}", ClusterKey::parse(&"s".repeat(40)).unwrap()).contains('…'));
    }
}
