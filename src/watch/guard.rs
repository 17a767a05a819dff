//! The loop guard: detects a rule that re-triggers itself, its action making the service write
//! into its own watched path (a sync+exec that regenerates files under the synced tree, a
//! restart that rewrites a watched log), so that it is paused instead of running forever.
//!
//! Pure logic on instants given by the caller, so tests need no clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A rule trips the guard on its `LIMIT`-th firing in a row that each follow closely on the
/// previous action of that rule.
pub const LIMIT: u32 = 5;

/// How long after an action a new batch still counts as caused by it, beyond twice the debounce.
const SLACK: Duration = Duration::from_millis(150);

#[derive(Default)]
struct State {
    /// Firings in the current chain, this one included.
    count: u32,
    /// When this rule's last action finished.
    finished: Option<Instant>,
}

pub struct LoopGuard {
    window: Duration,
    rules: HashMap<(String, usize), State>,
}

impl LoopGuard {
    /// `debounce`: the quiet period of the batches; the window is 2 × debounce + 150 ms (the
    /// action's own writes need one debounce to make a batch, and may straddle another).
    pub fn new(debounce: Duration) -> LoopGuard {
        LoopGuard { window: debounce * 2 + SLACK, rules: HashMap::new() }
    }

    /// Called when rule (`service`, `rule`) is about to act for a batch whose first event
    /// arrived at `first_event`. Returns true when the rule must be paused now instead of
    /// acting: this is its [`LIMIT`]-th firing in a row, each one's batch having started within
    /// the window after the end of the previous action. A firing after a longer pause starts a
    /// new chain.
    pub fn check(&mut self, service: &str, rule: usize, first_event: Instant) -> bool {
        let st = self.rules.entry((service.to_string(), rule)).or_default();
        // A batch that started before the action ended (saturating to zero) is within the window.
        let chained =
            st.finished.is_some_and(|f| first_event.saturating_duration_since(f) <= self.window);
        st.count = if chained { st.count + 1 } else { 1 };
        if st.count >= LIMIT {
            // Paused now; once resumed, it starts afresh.
            *st = State::default();
            return true;
        }
        false
    }

    /// Called when that rule's action finished at `at`.
    pub fn finished(&mut self, service: &str, rule: usize, at: Instant) {
        self.rules.entry((service.to_string(), rule)).or_default().finished = Some(at);
    }

    /// Forgets every chain (after the rules are resumed, or the project reloaded).
    pub fn reset(&mut self) {
        self.rules.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(100);
    const ACTION: Duration = Duration::from_millis(40);

    /// Fires the rule with batches starting `gap` after each action's end; returns on which
    /// firing (1-based) the guard tripped, if it did within `n`.
    fn run(g: &mut LoopGuard, rule: usize, t: &mut Instant, gap: Duration, n: u32) -> Option<u32> {
        for i in 1..=n {
            *t += gap;
            if g.check("web", rule, *t) {
                return Some(i);
            }
            *t += ACTION;
            g.finished("web", rule, *t);
        }
        None
    }

    #[test]
    fn a_rule_that_keeps_retriggering_trips_on_its_fifth_firing() {
        let mut g = LoopGuard::new(DEBOUNCE);
        let mut t = Instant::now();
        // The window is 350 ms: 300 ms after each action is still a loop.
        assert_eq!(run(&mut g, 0, &mut t, Duration::from_millis(300), 10), Some(LIMIT));
        // Tripping starts a fresh chain for when the rule is resumed.
        assert_eq!(run(&mut g, 0, &mut t, Duration::from_millis(300), 4), None);
    }

    #[test]
    fn a_batch_starting_during_the_action_counts_as_caused_by_it() {
        let mut g = LoopGuard::new(DEBOUNCE);
        let t0 = Instant::now();
        assert!(!g.check("web", 0, t0));
        for i in 1..LIMIT {
            let end = t0 + Duration::from_secs(u64::from(i));
            g.finished("web", 0, end);
            // First event 10 ms before the previous action ended.
            assert_eq!(g.check("web", 0, end - Duration::from_millis(10)), i + 1 == LIMIT);
        }
    }

    #[test]
    fn pauses_between_firings_reset_the_count() {
        let mut g = LoopGuard::new(DEBOUNCE);
        let mut t = Instant::now();
        assert_eq!(run(&mut g, 0, &mut t, Duration::from_millis(300), 3), None);
        // One slow firing (a human saving again) breaks the chain ...
        assert_eq!(run(&mut g, 0, &mut t, Duration::from_millis(400), 1), None);
        // ... so it takes four more quick ones, not two, to trip.
        assert_eq!(run(&mut g, 0, &mut t, Duration::from_millis(300), 10), Some(4));
        // Humans editing every few seconds never trip it.
        assert_eq!(run(&mut g, 0, &mut t, Duration::from_secs(2), 100), None);
    }

    #[test]
    fn rules_are_counted_apart_and_reset_forgets_them() {
        let mut g = LoopGuard::new(DEBOUNCE);
        let mut t = Instant::now();
        let gap = Duration::from_millis(50);
        assert_eq!(run(&mut g, 0, &mut t, gap, 4), None);
        assert_eq!(run(&mut g, 1, &mut t, gap, 4), None);
        assert!(!g.check("db", 0, t));
        g.reset();
        assert_eq!(run(&mut g, 0, &mut t, gap, 4), None);
        assert_eq!(run(&mut g, 0, &mut t, gap, 1), Some(1));
    }
}
