//! How many `Normal` Events (SuccessfulReflection, ...) the host writes per second.
//!
//! Each Event is one more write to the local API server. Liqo writes one per successful pass;
//! at a few hundred reflections per second that doubles the local API server's write load for
//! information nobody reads at that rate (the benchmark measured it: the host wrote as many
//! Events to london as copies to newyork). Warnings are never limited: they say what to fix.
//! This is a plain token bucket: `burst` Events at once, then `per_second` on average.

use std::time::Instant;

/// A token bucket for Normal Events.
#[derive(Debug)]
pub(crate) struct EventBudget {
    burst: f64,
    per_second: f64,
    tokens: f64,
    refilled: Instant,
}

impl EventBudget {
    /// A full bucket of `burst` tokens, refilled at `per_second`.
    pub fn new(burst: u32, per_second: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            tokens: f64::from(burst),
            refilled: Instant::now(),
        }
    }

    /// Takes a token at `now` if one is left.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled);
        // Never move the refill point back: an earlier `now` must not be counted twice later.
        self.refilled = self.refilled.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut budget = EventBudget::new(5, 10);
        let start = Instant::now();
        assert_eq!((0..8).filter(|_| budget.take(start)).count(), 5);
        // 10 per second: 0.1 s gives one more, 1 s refills at most the burst.
        assert!(budget.take(start + Duration::from_millis(100)));
        assert!(!budget.take(start + Duration::from_millis(100)));
        let later = start + Duration::from_secs(60);
        assert_eq!((0..8).filter(|_| budget.take(later)).count(), 5);
    }

    #[test]
    fn time_going_backwards_takes_nothing_extra() {
        let mut budget = EventBudget::new(1, 1);
        let start = Instant::now();
        assert!(budget.take(start + Duration::from_secs(1)));
        assert!(!budget.take(start));
        assert!(!budget.take(start + Duration::from_secs(1)));
    }
}
