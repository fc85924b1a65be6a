//! The circuit breaker of one backend instance.
//!
//! ```text
//!   closed ──(consecutive_failures in a row, or failure_rate over window
//!     ▲       once min_requests were seen)──► open ──(open_for)──► half-open
//!     │                                        ▲                      │
//!     └──── every probe succeeded ─────────────┼──── a probe failed ◄─┘
//! ```
//!
//! Half-open admits exactly `half_open_probes` requests, however many arrive at once. A
//! probe's [`Ticket`] must be settled: its result is recorded, or, when the client went
//! away first (not the backend's fault), dropping the ticket gives the probe slot back.
//! A hanging probe is cut by the attempt timeout and counts as a failure, so the breaker
//! can never stay half-open. Results of requests admitted before the last transition
//! (an older generation) do not move the state.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::window::{Counts, Window};
use crate::config::BreakerSettings;

/// The breaker's state, as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests pass.
    Closed,
    /// Requests are refused at once.
    Open,
    /// Probes pass; the rest is refused.
    HalfOpen,
}

impl State {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped at every transition.
    generation: u64,
    consecutive: u32,
    window: Window<Counts>,
}

/// A circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    /// Who this breaker guards, for the log (`backend instance`).
    label: String,
    inner: Mutex<Inner>,
    /// Transitions into closed, open and half-open.
    transitions: [std::sync::atomic::AtomicU64; 3],
}

/// Leave to send one request; settle it with [`Breaker::record`].
#[derive(Debug)]
pub struct Ticket {
    breaker: Arc<Breaker>,
    generation: u64,
    probe: bool,
    settled: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.give_back(self.generation);
        }
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings, label: String, now: Instant) -> Arc<Self> {
        let window = Window::new(settings.window, 10, now);
        Arc::new(Self {
            settings,
            label,
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                generation: 0,
                consecutive: 0,
                window,
            }),
            transitions: Default::default(),
        })
    }

    /// The settings (for what counts as a failure).
    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is consistent after every statement; a panic cannot break it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leave to send a request, or how long until the breaker lets one through.
    pub fn admit(self: &Arc<Self>, now: Instant) -> Result<Ticket, Duration> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let probe = match &mut inner.phase {
            Phase::Closed => false,
            Phase::Open { until } if now < *until => return Err(*until - now),
            Phase::Open { .. } => {
                inner.phase = Phase::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                };
                inner.generation += 1;
                self.moved(State::HalfOpen);
                tracing::info!(breaker = %self.label, "circuit breaker half-open: probing");
                true
            }
            Phase::HalfOpen { admitted, .. } if *admitted < self.settings.half_open_probes => {
                *admitted += 1;
                true
            }
            // The probes are out; their answers decide. Ask again in a second.
            Phase::HalfOpen { .. } => return Err(Duration::from_secs(1)),
        };
        Ok(Ticket {
            breaker: self.clone(),
            generation: inner.generation,
            probe,
            settled: false,
        })
    }

    /// Whether a request would be admitted now (without taking a probe slot).
    pub fn admits(&self, now: Instant) -> bool {
        match &self.lock().phase {
            Phase::Closed => true,
            Phase::Open { until } => now >= *until,
            Phase::HalfOpen { admitted, .. } => *admitted < self.settings.half_open_probes,
        }
    }

    /// Records the result of a request admitted by `ticket`.
    pub fn record(&self, mut ticket: Ticket, failed: bool, now: Instant) {
        ticket.settled = true;
        let mut guard = self.lock();
        let inner = &mut *guard;
        if ticket.generation != inner.generation {
            return;
        }
        match &mut inner.phase {
            Phase::Closed => {
                let bucket = inner.window.current(now);
                bucket.total += 1;
                bucket.marked += u64::from(failed);
                inner.consecutive = if failed { inner.consecutive + 1 } else { 0 };
                if failed && self.trips(inner, now) {
                    self.open(inner, now);
                }
            }
            Phase::HalfOpen { .. } if ticket.probe && failed => self.open(inner, now),
            Phase::HalfOpen { succeeded, .. } if ticket.probe => {
                *succeeded += 1;
                if *succeeded >= self.settings.half_open_probes {
                    inner.phase = Phase::Closed;
                    inner.generation += 1;
                    inner.consecutive = 0;
                    inner.window.clear(now);
                    self.moved(State::Closed);
                    tracing::info!(breaker = %self.label, "circuit breaker closed");
                }
            }
            _ => {}
        }
    }

    /// Whether the closed breaker's counts call for opening.
    fn trips(&self, inner: &mut Inner, now: Instant) -> bool {
        let s = &self.settings;
        let in_a_row = s
            .consecutive_failures
            .is_some_and(|n| inner.consecutive >= n);
        in_a_row
            || s.failure_rate.is_some_and(|rate| {
                let total = inner.window.total(now);
                total.total >= u64::from(s.min_requests)
                    && total.marked as f64 >= rate * total.total as f64
            })
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        inner.phase = Phase::Open {
            until: now + self.settings.open_for,
        };
        inner.generation += 1;
        self.moved(State::Open);
        tracing::warn!(
            breaker = %self.label,
            open_for = ?self.settings.open_for,
            "circuit breaker opened"
        );
    }

    /// A probe ended without a result (the client went away): its slot is free again.
    fn give_back(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if let Phase::HalfOpen { admitted, .. } = &mut inner.phase {
            *admitted = admitted.saturating_sub(1);
        }
    }

    fn moved(&self, to: State) {
        self.transitions[to as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Transitions so far into `[closed, open, half_open]`.
    pub fn transitions(&self) -> [u64; 3] {
        self.transitions
            .each_ref()
            .map(|t| t.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> State {
        match self.lock().phase {
            Phase::Closed => State::Closed,
            Phase::Open { until } if now < until => State::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Conditions;

    fn settings(consecutive: Option<u32>, rate: Option<f64>, probes: u32) -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: consecutive,
            failure_rate: rate,
            window: Duration::from_secs(10),
            min_requests: 10,
            open_for: Duration::from_secs(5),
            half_open_probes: probes,
            on: Conditions::none(),
        }
    }

    fn run(b: &Arc<Breaker>, now: Instant, failed: bool) {
        let t = b.admit(now).expect("admitted");
        b.record(t, failed, now);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_then_probes_and_closes() {
        let b = Breaker::new(settings(Some(3), None, 1), "b".into(), Instant::now());
        run(&b, Instant::now(), true);
        run(&b, Instant::now(), true);
        run(&b, Instant::now(), false); // a success resets the count
        run(&b, Instant::now(), true);
        run(&b, Instant::now(), true);
        assert_eq!(b.state(Instant::now()), State::Closed);
        run(&b, Instant::now(), true);
        assert_eq!(b.state(Instant::now()), State::Open);
        let wait = b.admit(Instant::now()).unwrap_err();
        assert_eq!(wait, Duration::from_secs(5));

        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = b.admit(Instant::now()).expect("one probe");
        assert_eq!(b.state(Instant::now()), State::HalfOpen);
        for _ in 0..50 {
            assert!(b.admit(Instant::now()).is_err(), "only one probe at a time");
        }
        b.record(probe, false, Instant::now());
        assert_eq!(b.state(Instant::now()), State::Closed);
        run(&b, Instant::now(), false);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_a_cancelled_one_frees_its_slot() {
        let b = Breaker::new(settings(Some(1), None, 2), "b".into(), Instant::now());
        run(&b, Instant::now(), true);
        tokio::time::advance(Duration::from_secs(5)).await;
        let p1 = b.admit(Instant::now()).unwrap();
        let p2 = b.admit(Instant::now()).unwrap();
        assert!(b.admit(Instant::now()).is_err(), "two probes, no more");
        drop(p2); // the client went away: not the backend's fault
        let p3 = b.admit(Instant::now()).expect("the slot came back");
        b.record(p1, false, Instant::now());
        assert_eq!(
            b.state(Instant::now()),
            State::HalfOpen,
            "needs both probes"
        );
        b.record(p3, true, Instant::now());
        assert_eq!(b.state(Instant::now()), State::Open);
        assert_eq!(b.admit(Instant::now()).unwrap_err(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_needs_min_requests_and_old_results_are_ignored() {
        let b = Breaker::new(settings(None, Some(0.5), 1), "b".into(), Instant::now());
        // Admitted while closed, answered after the breaker moved on.
        let late = b.admit(Instant::now()).unwrap();
        for _ in 0..4 {
            run(&b, Instant::now(), true);
        }
        assert_eq!(
            b.state(Instant::now()),
            State::Closed,
            "4 requests < min_requests"
        );
        for _ in 0..5 {
            run(&b, Instant::now(), false);
        }
        run(&b, Instant::now(), true); // 5 of 10 failed
        assert_eq!(b.state(Instant::now()), State::Open);
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = b.admit(Instant::now()).unwrap();
        b.record(late, true, Instant::now()); // an older generation: ignored
        assert_eq!(b.state(Instant::now()), State::HalfOpen);
        b.record(probe, false, Instant::now());
        assert_eq!(b.state(Instant::now()), State::Closed);
        // The window was cleared on closing: one failure is not 50% of enough requests.
        run(&b, Instant::now(), true);
        assert_eq!(b.state(Instant::now()), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_older_than_the_window_do_not_count() {
        let b = Breaker::new(settings(None, Some(0.5), 1), "b".into(), Instant::now());
        for _ in 0..9 {
            run(&b, Instant::now(), true);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        for _ in 0..9 {
            run(&b, Instant::now(), false);
        }
        run(&b, Instant::now(), true);
        assert_eq!(b.state(Instant::now()), State::Closed, "1 of 10 in window");
    }
}
