//! Election timing: one node's election settings, their validation, and the bounds the
//! core derives from them (CheckQuorum window, restart quarantine, lease bound span).

use std::time::Duration;

use instaface_bus::NodeId;

/// The highest term a node adopts or campaigns for (see [`instaface_bus::MAX_TERM`]).
pub use instaface_bus::MAX_TERM;

/// The settings of one node's [`ElectionCore`](super::ElectionCore).
///
/// `drift` bounds how far two nodes' clocks may disagree about a span of time: over any
/// interval, one node's monotonic clock advances at most `1 + drift` times as much as
/// another's. Every timing argument in this module is made under that assumption.
#[derive(Clone, Debug, PartialEq)]
pub struct ElectionConfig {
    /// This node's id.
    pub id: NodeId,
    /// How often a leader broadcasts a heartbeat (`HEARTBEAT_MS`).
    pub heartbeat: Duration,
    /// Lower bound of the randomized election timeout (`ELECTION_MIN_MS`). A node also
    /// refuses votes for this long after each heartbeat from a live leader.
    pub election_min: Duration,
    /// Upper bound, exclusive, of the election timeout (`ELECTION_MAX_MS`). Also the
    /// CheckQuorum window and the leader's reachability window.
    pub election_max: Duration,
    /// The read lease (`LEASE_MS`): how long a confirmed ack, or a majority-acked
    /// heartbeat, lets a node serve reads, counted from its send time.
    pub lease: Duration,
    /// Maximum relative clock-rate difference between two nodes (`0.05` = 5 %).
    pub drift: f64,
}

impl ElectionConfig {
    /// The drift assumed when none is configured: 5 %, far above what any real monotonic
    /// clock drifts, so the margin also absorbs scheduling jitter.
    pub const DEFAULT_DRIFT: f64 = 0.05;

    /// Checks the settings, naming the offending one in a single line.
    ///
    /// Requires `heartbeat > 0`, `heartbeat < election_min < election_max`,
    /// `0 <= drift < 1`, `lease > 0` and `lease * (1 + drift)^2 < election_min` (the last
    /// is what makes a new leader unable to take office while the old one's lease holds).
    pub fn validate(&self) -> Result<(), String> {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        if !instaface_bus::valid_node_id(&self.id) {
            return Err(format!("NODE_ID {:?} must be 1 to 64 characters of [A-Za-z0-9_-]", self.id));
        }
        if !(self.drift.is_finite() && (0.0..1.0).contains(&self.drift)) {
            return Err(format!("clock drift {} must be in [0, 1)", self.drift));
        }
        if self.heartbeat.is_zero() {
            return Err("HEARTBEAT_MS must be > 0".into());
        }
        if self.heartbeat >= self.election_min {
            return Err(format!(
                "HEARTBEAT_MS ({} ms) must be < ELECTION_MIN_MS ({} ms)",
                ms(self.heartbeat),
                ms(self.election_min)
            ));
        }
        if self.election_min >= self.election_max {
            return Err(format!(
                "ELECTION_MIN_MS ({} ms) must be < ELECTION_MAX_MS ({} ms)",
                ms(self.election_min),
                ms(self.election_max)
            ));
        }
        if self.lease.is_zero() {
            return Err("LEASE_MS must be > 0".into());
        }
        let stretched = self.lease.as_secs_f64() * (1.0 + self.drift).powi(2);
        if stretched >= self.election_min.as_secs_f64() {
            return Err(format!(
                "LEASE_MS ({} ms) * (1 + drift {})^2 = {:.1} ms must be < ELECTION_MIN_MS ({} ms)",
                ms(self.lease),
                self.drift,
                stretched * 1e3,
                ms(self.election_min)
            ));
        }
        Ok(())
    }

    /// The default read lease (`LEASE_MS` unset), used by the node and by every
    /// simulation alike: 95 % of the longest lease that passes
    /// [`validate`](Self::validate), `election_min / (1 + drift)^2`, in whole
    /// milliseconds (zero if there is none). The 5 % margin absorbs scheduling jitter on
    /// top of the drift bound.
    pub fn default_lease(election_min: Duration, drift: f64) -> Duration {
        let factor = (1.0 + drift.max(0.0)).powi(2);
        let limit = election_min.as_secs_f64() / factor;
        if !limit.is_finite() {
            return Duration::ZERO;
        }
        let mut ms = (limit * 0.95 * 1e3).floor().max(0.0) as u64;
        // Strictly below the limit, whatever the rounding above did.
        while ms > 0 && (ms as f64 / 1e3) * factor >= election_min.as_secs_f64() {
            ms -= 1;
        }
        Duration::from_millis(ms)
    }

    /// How long a leader stays in office without hearing acks from a majority
    /// (CheckQuorum), and how long without an ack before it calls a follower
    /// unreachable: `election_max`.
    pub fn check_quorum_window(&self) -> Duration {
        self.election_max
    }

    /// How long after start a node refuses votes (and pre-votes) and does not campaign:
    /// `election_min * (1 + drift)`.
    ///
    /// Its term and vote survive restarts, so it cannot vote twice in a term; but it
    /// forgot the heartbeats it received just before it went down, which had it refuse
    /// votes for `election_min` so that the leader's lease holds (lease stickiness).
    /// Refusing them for that long after any start keeps that promise, even if the
    /// restarted process's clock runs at another rate within the drift bound.
    pub fn restart_quarantine(&self) -> Duration {
        scale_up(self.election_min, 1.0 + self.drift)
    }

    /// What a leader adds to the receipt time of a follower's confirmed ack to bound that
    /// follower's lease: `lease * (1 + drift)`, rounded up.
    pub fn lease_bound_span(&self) -> Duration {
        scale_up(self.lease, 1.0 + self.drift)
    }
}

/// `d * factor`, rounded up to the nanosecond and saturating instead of panicking on
/// odd factors (a NaN or negative factor leaves `d` unchanged).
pub(crate) fn scale_up(d: Duration, factor: f64) -> Duration {
    if !(factor.is_finite() && factor >= 0.0) {
        return d;
    }
    let nanos = (d.as_nanos() as f64 * factor).ceil();
    if nanos >= u64::MAX as f64 {
        Duration::MAX
    } else {
        Duration::from_nanos(nanos as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ElectionConfig {
        ElectionConfig {
            id: "n1".into(),
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(750),
            election_max: Duration::from_millis(1000),
            lease: Duration::from_millis(600),
            drift: 0.05,
        }
    }

    #[test]
    fn election_config_accepts_the_defaults() {
        assert_eq!(cfg().validate(), Ok(()));
        let lease = ElectionConfig::default_lease(Duration::from_millis(750), 0.05);
        assert_eq!(lease, Duration::from_millis(646));
        assert_eq!(ElectionConfig { lease, ..cfg() }.validate(), Ok(()));
    }

    #[test]
    fn election_config_default_lease_is_strictly_below_the_limit() {
        assert_eq!(ElectionConfig::default_lease(Duration::from_millis(1000), 0.0), Duration::from_millis(950));
        assert_eq!(ElectionConfig::default_lease(Duration::ZERO, 0.05), Duration::ZERO);
    }

    #[test]
    fn election_config_names_the_bad_setting() {
        let e = ElectionConfig { lease: Duration::from_millis(700), ..cfg() }.validate();
        assert!(e.as_ref().is_err_and(|e| e.contains("LEASE_MS") && e.contains("ELECTION_MIN_MS")), "{e:?}");
        let e = ElectionConfig { heartbeat: Duration::from_millis(800), ..cfg() }.validate();
        assert!(e.is_err_and(|e| e.contains("HEARTBEAT_MS")));
        let e = ElectionConfig { election_max: Duration::from_millis(750), ..cfg() }.validate();
        assert!(e.is_err_and(|e| e.contains("ELECTION_MAX_MS")));
        let e = ElectionConfig { drift: f64::NAN, ..cfg() }.validate();
        assert!(e.is_err_and(|e| e.contains("drift")));
        let e = ElectionConfig { id: String::new(), ..cfg() }.validate();
        assert!(e.is_err_and(|e| e.contains("NODE_ID")));
    }

    #[test]
    fn election_config_derived_bounds() {
        let c = cfg();
        assert_eq!(c.check_quorum_window(), Duration::from_millis(1000));
        assert_eq!(c.restart_quarantine(), Duration::from_nanos(787_500_000));
        assert_eq!(c.lease_bound_span(), Duration::from_millis(630));
        assert_eq!(scale_up(Duration::MAX, 2.0), Duration::MAX);
        assert_eq!(scale_up(Duration::from_secs(1), f64::NAN), Duration::from_secs(1));
    }
}
