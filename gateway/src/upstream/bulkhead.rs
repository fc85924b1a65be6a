//! The bulkhead of one backend: at most `max_concurrency` requests in flight (from the
//! first attempt until the response body ends); past it a request is refused at once, so
//! a hung backend holds a bounded share of the gateway and never slows other backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// In-flight count of one backend, with an optional cap.
#[derive(Debug)]
pub(crate) struct Bulkhead {
    max: Option<usize>,
    in_flight: AtomicUsize,
}

/// One place in the bulkhead, given back on drop.
#[derive(Debug)]
pub(crate) struct Permit(Arc<Bulkhead>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bulkhead {
    /// A bulkhead of `max` places (`None`: only counting).
    pub(crate) fn new(max: Option<u32>) -> Arc<Self> {
        Arc::new(Self {
            max: max.map(|m| m as usize),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// A place, unless all are taken.
    pub(crate) fn try_enter(self: &Arc<Self>) -> Option<Permit> {
        let taken = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(self.clone());
        match self.max {
            Some(max) if taken >= max => None, // dropping the permit undoes the count
            _ => Some(permit),
        }
    }

    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The cap.
    pub(crate) fn max(&self) -> Option<usize> {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_cap_and_frees_places_on_drop() {
        let b = Bulkhead::new(Some(2));
        let p1 = b.try_enter().unwrap();
        let _p2 = b.try_enter().unwrap();
        assert!(b.try_enter().is_none());
        assert_eq!(b.in_flight(), 2, "a refusal leaves no trace");
        drop(p1);
        assert!(b.try_enter().is_some());
    }
}
