//! The command line (every flag with an environment fallback, as every Instaface binary
//! has) and its conversion into a [`RunConfig`], with the parsers for durations and rates.

use std::time::Duration;

use clap::Parser;
use instaface_bus::config::BusArgs;

use crate::mix::{Mix, DEFAULT_MIX};
use crate::run::RunConfig;

/// Fake social activity over NATS: creates users, befriends them, posts, likes, edits,
/// unlikes, unfriends, deletes and reads timelines and friend lists.
#[derive(Parser, Debug, Clone)]
#[command(name = "instaface-bot", version)]
pub struct Cli {
    #[command(flatten)]
    pub bus: BusArgs,

    /// Operations per second over all workers (0: as fast as the cluster answers). An
    /// upper bound: with slow answers, more `--concurrency` is needed to reach it.
    #[arg(long, env = "BOT_RATE", default_value = "0", value_parser = parse_rate)]
    pub rate: f64,

    /// Stop after this many operations.
    #[arg(long, env = "BOT_OPS")]
    pub ops: Option<u64>,

    /// Stop after this long (`90s`, `2m`, `1h30m`, `500ms`; a bare number is seconds).
    /// Operations under way then finish; those that sent nothing yet are dropped.
    #[arg(long, env = "BOT_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Operations in flight at once.
    #[arg(long, env = "BOT_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,

    /// Seed for every random choice (random when absent; the summary says which was used).
    #[arg(long, env = "BOT_SEED")]
    pub seed: Option<u64>,

    /// The weights of the operations: `kind=weight,…`; kinds left out weigh 0.
    #[arg(long, env = "BOT_MIX", default_value = DEFAULT_MIX, value_parser = parse_mix)]
    pub mix: Mix,

    /// How long one operation may wait for a leader before it counts as failed.
    #[arg(long, env = "BOT_MAX_LEADER_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub max_leader_wait: Duration,

    /// How many existing users and statuses to learn of (through `random`) at the start.
    #[arg(long, env = "BOT_DISCOVER", default_value_t = 100)]
    pub discover: u32,

    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl Cli {
    /// The run these flags ask for; a missing seed is drawn at random.
    pub fn run_config(&self) -> RunConfig {
        RunConfig {
            seed: self.seed.unwrap_or_else(rand::random),
            mix: self.mix.clone(),
            concurrency: usize::from(self.concurrency),
            rate: self.rate,
            ops: self.ops,
            duration: self.duration,
            max_leader_wait: self.max_leader_wait,
            discover: self.discover,
            progress: !self.quiet,
        }
    }
}

fn parse_mix(s: &str) -> Result<Mix, String> {
    s.parse()
}

/// Operations per second: a finite number ≥ 0.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("rate {s:?} must be a number of operations per second, 0 or more")),
    }
}

/// A duration such as `30s`, `2m`, `1h30m`, `250ms` or `1.5s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("duration {s:?} must look like 30s, 2m, 1h30m or 500ms");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(value * scale).map_err(|_| bad())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_usual_shapes() {
        let cases = [
            ("30s", 30_000),
            ("2m", 120_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("1.5s", 1_500),
            ("45", 45_000),
            ("1m30s", 90_000),
        ];
        for (input, ms) in cases {
            assert_eq!(parse_duration(input), Ok(Duration::from_millis(ms)), "{input}");
        }
        for bad in ["", "s", "10x", "-5s", "5 s", "1.2.3s", "ms10"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("must look like 30s"), "{bad}: {err}");
        }
    }

    #[test]
    fn rates_are_non_negative_numbers() {
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("12.5"), Ok(12.5));
        for bad in ["-1", "fast", "inf", "NaN"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_parse_into_a_run_config() {
        let cli = Cli::try_parse_from([
            "instaface-bot",
            "--prefix",
            "t1.bot",
            "--ops",
            "300",
            "--concurrency",
            "8",
            "--seed",
            "7",
            "--mix",
            "create_user=1,like=2",
            "--rate",
            "50",
            "--json",
        ])
        .unwrap();
        let cfg = cli.run_config();
        assert_eq!((cfg.seed, cfg.ops, cfg.concurrency, cfg.rate), (7, Some(300), 8, 50.0));
        assert_eq!(cfg.mix.to_string(), "create_user=1,like=2");
        assert_eq!(cli.bus.prefix, "t1.bot");
        assert!(cli.json && cfg.progress);
        assert_eq!(cfg.duration, None);
    }

    #[test]
    fn bad_flags_are_refused_naming_the_problem() {
        let err = Cli::try_parse_from(["instaface-bot", "--mix", "poke=1"]).unwrap_err().to_string();
        assert!(err.contains("unknown operation \"poke\""), "{err}");
        let err = Cli::try_parse_from(["instaface-bot", "--duration", "soon"]).unwrap_err().to_string();
        assert!(err.contains("must look like 30s"), "{err}");
        assert!(Cli::try_parse_from(["instaface-bot", "--concurrency", "0"]).is_err());
    }

    #[test]
    fn defaults_use_the_default_mix_and_a_random_seed() {
        let cli = Cli::try_parse_from(["instaface-bot"]).unwrap();
        assert_eq!(cli.mix, Mix::default());
        assert_eq!(cli.concurrency, 4);
        assert_eq!(cli.max_leader_wait, Duration::from_secs(30));
    }
}
