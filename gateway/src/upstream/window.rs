//! A rolling time window of counters, split into buckets that expire one by one.
//!
//! Used for the breaker's failure rate, the retry budget and the recent error rate and
//! latency shown by the admin API. Time is passed in, so the state machines built on it
//! are tested with paused or made-up clocks.

use std::time::Duration;

use tokio::time::Instant;

/// What one bucket counts.
pub(crate) trait Bucket: Default + Clone {
    /// Adds another bucket's counts to this one.
    fn merge(&mut self, other: &Self);
}

/// Counters over the last `span`, in `n` buckets.
#[derive(Debug, Clone)]
pub(crate) struct Window<B> {
    buckets: Vec<B>,
    width: Duration,
    /// Index of the current bucket.
    head: usize,
    /// When the current bucket started.
    start: Instant,
}

impl<B: Bucket> Window<B> {
    /// A window over `span`, in `n` buckets (at least 1).
    pub(crate) fn new(span: Duration, n: usize, now: Instant) -> Self {
        let n = n.max(1);
        Self {
            buckets: vec![B::default(); n],
            width: (span / n as u32).max(Duration::from_millis(1)),
            head: 0,
            start: now,
        }
    }

    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed < self.width {
            return;
        }
        let steps = (elapsed.as_nanos() / self.width.as_nanos()) as usize;
        if steps >= self.buckets.len() {
            self.clear(now);
            return;
        }
        for _ in 0..steps {
            self.head = (self.head + 1) % self.buckets.len();
            self.buckets[self.head] = B::default();
        }
        self.start += self.width * steps as u32;
    }

    /// The bucket counting `now`.
    pub(crate) fn current(&mut self, now: Instant) -> &mut B {
        self.advance(now);
        &mut self.buckets[self.head]
    }

    /// The counts over the whole window up to `now`.
    pub(crate) fn total(&mut self, now: Instant) -> B {
        self.advance(now);
        let mut sum = B::default();
        for b in &self.buckets {
            sum.merge(b);
        }
        sum
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self, now: Instant) {
        self.buckets.iter_mut().for_each(|b| *b = B::default());
        self.head = 0;
        self.start = now;
    }
}

/// Requests and how many of them failed (or, for the retry budget, were retries).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    pub(crate) marked: u64,
}

impl Bucket for Counts {
    fn merge(&mut self, other: &Self) {
        self.total += other.total;
        self.marked += other.marked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_expire_one_by_one() {
        let t0 = Instant::now();
        let mut w: Window<Counts> = Window::new(Duration::from_secs(10), 10, t0);
        w.current(t0).total += 5;
        w.current(t0 + Duration::from_secs(3)).total += 7;
        assert_eq!(w.total(t0 + Duration::from_secs(9)).total, 12);
        // The first second's bucket has left the window; the fourth's has not.
        assert_eq!(w.total(t0 + Duration::from_millis(10_500)).total, 7);
        assert_eq!(w.total(t0 + Duration::from_millis(12_900)).total, 7);
        assert_eq!(w.total(t0 + Duration::from_secs(13)).total, 0);
        // A long silence clears everything.
        w.current(t0 + Duration::from_secs(15)).total += 1;
        assert_eq!(w.total(t0 + Duration::from_secs(100)).total, 0);
    }
}
