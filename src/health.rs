//! Healthchecks: which check a service has (its own `healthcheck`, over its image's), and the
//! state machine Docker applies to the results: `starting` until a check passes, `healthy`,
//! `unhealthy` after `retries` failures in a row, failures during `start_period` not counted.
//! Running the check inside the container is the supervisor's part.
//!
//! One addition to Docker's schedule, so that waiting for a dependency adds no fixed delay:
//! until its first success a check runs often, as soon as the container starts and then 50,
//! 100, 200 ms and every 250 ms after the previous one ends (never less often than Docker
//! would). Those extra probes can only make the service healthy sooner: a failure counts
//! towards `retries` only when a regular period has passed since the last one that counted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::model::Service;

/// How many results `inspect` keeps, as Docker does.
const LOG_LENGTH: usize = 5;
/// Output kept per result (Docker keeps 4 KiB).
pub const OUTPUT_LIMIT: usize = 4096;
const FIRST_EARLY_PROBE: Duration = Duration::from_millis(50);
/// The longest gap between probes until the first success.
const EARLY_PROBE_CAP: Duration = Duration::from_millis(250);

/// A service's effective healthcheck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The command, as argv (`CMD-SHELL` already turned into `/bin/sh -c`).
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
    /// The period until the first success (Docker's `start_interval`); at most `interval`.
    pub start_interval: Duration,
}

/// Docker's defaults for what neither the service nor the image sets.
const INTERVAL: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(30);
const RETRIES: u32 = 3;
const START_INTERVAL: Duration = Duration::from_secs(5);

/// The check `service` runs: its own `healthcheck` over the image's `Healthcheck` (from the
/// image config JSON, which Docker writes as `config.Healthcheck` with durations in
/// nanoseconds). None when neither has a test, or the test is `NONE` or `disable: true`.
pub fn effective(service: &Service, image_config: Option<&serde_json::Value>) -> Option<Check> {
    let image = image_config.and_then(|c| c.get("config")?.get("Healthcheck"));
    let image_test: Option<Vec<String>> =
        image.and_then(|h| serde_json::from_value(h.get("Test")?.clone()).ok());
    let nanos = |key: &str| {
        image.and_then(|h| h.get(key)?.as_u64()).filter(|n| *n > 0).map(Duration::from_nanos)
    };
    let own = service.healthcheck.as_ref();
    if own.is_some_and(|h| h.disable) {
        return None;
    }
    let test = own.and_then(|h| h.test.as_ref()).map(|t| t.0.clone()).or(image_test)?;
    let argv = match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
        }
        _ => return None, // NONE, or nothing to run
    };
    let pick = |own: Option<Duration>, key: &str, default: Duration| {
        own.or_else(|| nanos(key)).filter(|d| !d.is_zero()).unwrap_or(default)
    };
    let interval = pick(own.and_then(|h| h.interval).map(|d| d.0), "Interval", INTERVAL);
    let start_interval =
        pick(own.and_then(|h| h.start_interval).map(|d| d.0), "StartInterval", START_INTERVAL);
    Some(Check {
        argv,
        interval,
        timeout: pick(own.and_then(|h| h.timeout).map(|d| d.0), "Timeout", TIMEOUT),
        retries: own
            .and_then(|h| h.retries)
            .or_else(|| image.and_then(|h| h.get("Retries")?.as_u64()).map(|n| n as u32))
            .filter(|n| *n > 0)
            .unwrap_or(RETRIES),
        start_period: own
            .and_then(|h| h.start_period)
            .map(|d| d.0)
            .or_else(|| nanos("StartPeriod"))
            .unwrap_or_default(),
        start_interval: start_interval.min(interval),
    })
}

/// [`effective`] for a service whose image is in `store` (its config read from there).
pub fn of_service(store: &crate::image::Store, service: &Service) -> Option<Check> {
    let image_config = service
        .image
        .as_deref()
        .and_then(|i| crate::image::Reference::parse(i).ok())
        .and_then(|r| store.resolve(&r).ok().flatten())
        .and_then(|info| store.read_blob(&info.config_digest).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    effective(service, image_config.as_ref())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Starting,
    Healthy,
    Unhealthy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// One check's result, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// RFC 3339.
    pub start: String,
    pub end: String,
    /// The command's exit status; -1 when it timed out or could not run.
    pub exit_code: i32,
    /// Its output (stdout and stderr), at most [`OUTPUT_LIMIT`] bytes.
    pub output: String,
}

/// `; last check exited 1: its output`, for errors about an unhealthy service.
pub fn last_check_text(p: &Probe) -> String {
    match p.output.trim_end() {
        "" => format!("; last check exited {} with no output", p.exit_code),
        out => format!("; last check exited {}: {out}", p.exit_code),
    }
}

/// The health of one container.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub status: Status,
    pub failing_streak: u32,
    pub log: VecDeque<Probe>,
    started: Instant,
    /// Probes run so far.
    probes: u32,
    /// When a failure last counted (the start, before any).
    last_counted: Instant,
}

impl Tracker {
    pub fn new(started: Instant) -> Tracker {
        Tracker {
            status: Status::Starting,
            failing_streak: 0,
            log: VecDeque::new(),
            started,
            probes: 0,
            last_counted: started,
        }
    }

    /// Records a result; returns the new status when it changed.
    pub fn record(&mut self, check: &Check, probe: Probe, now: Instant) -> Option<Status> {
        let passed = probe.exit_code == 0;
        self.probes += 1;
        if self.log.len() == LOG_LENGTH {
            self.log.pop_front();
        }
        self.log.push_back(probe);
        let before = self.status;
        if passed {
            self.failing_streak = 0;
            self.status = Status::Healthy;
        } else {
            let in_start_period = now.duration_since(self.started) < check.start_period;
            // Docker: failures in the start period do not count until a check has passed, and
            // checks run every `interval`. Ours run more often until the first success: one
            // failure an `interval` counts, the first an `interval` after the start.
            let starting = self.status == Status::Starting;
            let too_soon = starting && now.duration_since(self.last_counted) < check.interval;
            if !(too_soon || in_start_period && starting) {
                self.last_counted = now;
                self.failing_streak += 1;
                if self.failing_streak >= check.retries {
                    self.status = Status::Unhealthy;
                }
            }
        }
        (self.status != before).then_some(self.status)
    }

    /// How long to wait before the next check (from the end of the last one): the early
    /// schedule until the first success (never slower than `start_interval`), then `interval`.
    pub fn next_delay(&self, check: &Check) -> Duration {
        if self.status != Status::Starting {
            return check.interval;
        }
        match self.probes {
            0 => Duration::ZERO,
            n => FIRST_EARLY_PROBE
                .saturating_mul(1 << (n - 1).min(16))
                .min(EARLY_PROBE_CAP)
                .min(check.start_interval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        let dir = std::path::Path::new("/nonexistent/p");
        let text = format!("services:\n  a:\n    image: busybox\n{yaml}");
        let p =
            crate::config::load_str(&dir.join("devenv.yaml"), &text, dir, Default::default(), None)
                .unwrap();
        p.model.services["a"].clone()
    }

    fn probe(code: i32) -> Probe {
        Probe { start: String::new(), end: String::new(), exit_code: code, output: String::new() }
    }

    #[test]
    fn the_service_check_overrides_the_image_and_shell_form_runs_sh() {
        let image = serde_json::json!({"config": {"Healthcheck": {
            "Test": ["CMD", "redis-cli", "ping"], "Interval": 2_000_000_000u64, "Retries": 7}}});
        let c = effective(&service(""), Some(&image)).unwrap();
        assert_eq!(c.argv, ["redis-cli", "ping"]);
        assert_eq!((c.interval, c.retries), (Duration::from_secs(2), 7));
        assert_eq!(c.start_interval, Duration::from_secs(2), "never longer than the interval");
        let own = "    healthcheck:\n      test: curl -f localhost\n      timeout: 3s\n";
        let c = effective(&service(own), Some(&image)).unwrap();
        assert_eq!(c.argv, ["/bin/sh", "-c", "curl -f localhost"]);
        assert_eq!(
            (c.interval, c.timeout, c.retries),
            (Duration::from_secs(2), Duration::from_secs(3), 7)
        );
        assert!(
            effective(&service("    healthcheck:\n      disable: true\n"), Some(&image)).is_none()
        );
        assert!(effective(&service("    healthcheck:\n      test: [\"NONE\"]\n"), Some(&image))
            .is_none());
        assert!(effective(&service(""), None).is_none());
        let c = effective(&service("    healthcheck:\n      test: [\"CMD\", \"true\"]\n"), None);
        assert_eq!(c.unwrap().interval, INTERVAL);
    }

    #[test]
    fn early_probes_ramp_up_and_only_one_failure_a_period_counts() {
        let check = Check {
            argv: vec!["x".into()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries: 2,
            start_period: Duration::ZERO,
            start_interval: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        let mut t = Tracker::new(t0);
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let d = t.next_delay(&check);
            delays.push(d.as_millis());
            now += d;
            assert_eq!(t.record(&check, probe(1), now), None);
        }
        assert_eq!(delays, [0, 50, 100, 200, 250, 250, 250, 250]);
        // 1.35 s in: one failure counted, at 1.1 s, the first a whole period after the start.
        assert_eq!(t.failing_streak, 1);
        now += Duration::from_millis(250);
        assert_eq!(t.record(&check, probe(1), now), None, "half a period after the last");
        now += Duration::from_millis(500);
        assert_eq!(t.record(&check, probe(1), now), Some(Status::Unhealthy));
        assert_eq!(t.record(&check, probe(0), now), Some(Status::Healthy));
        assert_eq!(t.next_delay(&check), Duration::from_secs(1));
    }

    #[test]
    fn retries_and_the_start_period() {
        let check = Check {
            argv: vec!["x".into()],
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
            retries: 3,
            start_period: Duration::from_secs(60),
            start_interval: Duration::from_millis(10),
        };
        let t0 = Instant::now();
        let mut t = Tracker::new(t0);
        for _ in 0..10 {
            assert_eq!(t.record(&check, probe(1), t0), None, "not counted in the start period");
        }
        assert_eq!(t.failing_streak, 0);
        assert_eq!(t.log.len(), LOG_LENGTH);
        assert_eq!(t.record(&check, probe(0), t0), Some(Status::Healthy));
        // Once it has passed, failures count even in the start period.
        assert_eq!(t.record(&check, probe(1), t0), None);
        assert_eq!(t.record(&check, probe(1), t0), None);
        assert_eq!(t.record(&check, probe(1), t0), Some(Status::Unhealthy));
        let late = t0 + Duration::from_secs(61);
        let mut t = Tracker::new(t0);
        let ms = Duration::from_millis;
        t.record(&check, probe(1), late);
        assert_eq!(t.record(&check, probe(1), late + ms(5)), None, "within a period: not counted");
        t.record(&check, probe(1), late + ms(10));
        assert_eq!(t.record(&check, probe(1), late + ms(20)), Some(Status::Unhealthy));
    }
}
