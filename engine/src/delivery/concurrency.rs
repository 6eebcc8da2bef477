//! Per-destination concurrency accounting: how many delivery connections a
//! shard may open, in total and to one destination (a relay host, or a
//! recipient domain's MX set).
//!
//! A pure data structure: the runtime asks [`Concurrency::try_acquire`]
//! before it connects and hands the [`Slot`] back with the outcome through
//! [`Concurrency::release`]. Each destination has a *window*, the number of
//! connections it may have at once:
//!
//! - it starts at `initial` (Postfix's `initial_destination_concurrency`,
//!   5) and grows by one per successful connection, up to
//!   `per_destination_max` (Postfix's `default_destination_concurrency_limit`,
//!   20);
//! - it shrinks by one per failed connection (refused, timed out, greeting
//!   4xx), never below 1, so a struggling server is not hammered but is
//!   still probed.
//!
//! Memory is bounded: at most `destinations_max` destinations are tracked;
//! a destination whose state is back to the default with nothing in flight
//! is forgotten.

use std::collections::HashMap;

/// Default [`ConcurrencyLimits::per_destination_max`].
pub const DESTINATION_CONCURRENCY_DEFAULT: u32 = 20;
/// Default [`ConcurrencyLimits::initial`].
pub const DESTINATION_CONCURRENCY_INITIAL_DEFAULT: u32 = 5;
/// Default [`ConcurrencyLimits::total_max`] (per shard).
pub const DELIVERY_CONNECTIONS_DEFAULT: u32 = 100;
/// Default [`ConcurrencyLimits::destinations_max`].
pub const DESTINATIONS_DEFAULT: usize = 10_000;

const _: () = assert!(DESTINATION_CONCURRENCY_INITIAL_DEFAULT <= DESTINATION_CONCURRENCY_DEFAULT);
const _: () = assert!(DESTINATION_CONCURRENCY_DEFAULT <= DELIVERY_CONNECTIONS_DEFAULT);

/// The bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyLimits {
    /// Most connections at once, all destinations together.
    pub total_max: u32,
    /// Most connections to one destination.
    pub per_destination_max: u32,
    /// A destination's window before any feedback.
    pub initial: u32,
    /// Most destinations tracked at once.
    pub destinations_max: usize,
}

impl Default for ConcurrencyLimits {
    fn default() -> Self {
        ConcurrencyLimits {
            total_max: DELIVERY_CONNECTIONS_DEFAULT,
            per_destination_max: DESTINATION_CONCURRENCY_DEFAULT,
            initial: DESTINATION_CONCURRENCY_INITIAL_DEFAULT,
            destinations_max: DESTINATIONS_DEFAULT,
        }
    }
}

/// Why no connection may be opened now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// `total_max` connections are open.
    #[error("delivery connection limit reached")]
    Total,
    /// The destination's window is full.
    #[error("destination concurrency limit reached")]
    Destination,
    /// `destinations_max` destinations are busy.
    #[error("too many destinations in flight")]
    Destinations,
}

/// How a connection ended, for the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// The session worked (whatever the recipients' fate).
    Success,
    /// The destination failed us (no connection, timeout, 4xx greeting).
    Failure,
    /// Neither (we closed it ourselves, e.g. shutting down).
    Neutral,
}

/// A permission to hold one connection to a destination. Hand it back to
/// [`Concurrency::release`] exactly once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a slot must be released"]
pub struct Slot {
    destination: String,
}

impl Slot {
    /// The destination it is for.
    #[must_use]
    pub fn destination(&self) -> &str {
        &self.destination
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Destination {
    in_flight: u32,
    window: u32,
}

/// The accounting of one shard.
#[derive(Debug, Clone)]
pub struct Concurrency {
    limits: ConcurrencyLimits,
    total: u32,
    destinations: HashMap<String, Destination>,
}

impl Concurrency {
    /// Empty accounting; the limits are clamped to be consistent (at least
    /// one connection, `initial` within 1..=`per_destination_max`).
    #[must_use]
    pub fn new(mut limits: ConcurrencyLimits) -> Self {
        limits.total_max = limits.total_max.max(1);
        limits.per_destination_max = limits.per_destination_max.clamp(1, limits.total_max);
        limits.initial = limits.initial.clamp(1, limits.per_destination_max);
        limits.destinations_max = limits.destinations_max.max(1);
        Concurrency {
            limits,
            total: 0,
            destinations: HashMap::new(),
        }
    }

    /// Connections open, all destinations.
    #[must_use]
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Connections open to `destination`.
    #[must_use]
    pub fn in_flight(&self, destination: &str) -> u32 {
        self.destinations
            .get(destination)
            .map_or(0, |d| d.in_flight)
    }

    /// The current window of `destination`.
    #[must_use]
    pub fn window(&self, destination: &str) -> u32 {
        self.destinations
            .get(destination)
            .map_or(self.limits.initial, |d| d.window)
    }

    /// Destinations tracked.
    #[must_use]
    pub fn destinations(&self) -> usize {
        self.destinations.len()
    }

    /// A slot for one more connection to `destination`, if the limits allow.
    ///
    /// # Errors
    /// [`Busy`] says which limit is in the way.
    pub fn try_acquire(&mut self, destination: &str) -> Result<Slot, Busy> {
        if self.total >= self.limits.total_max {
            return Err(Busy::Total);
        }
        let initial = self.limits.initial;
        match self.destinations.get_mut(destination) {
            Some(d) if d.in_flight >= d.window => return Err(Busy::Destination),
            Some(d) => d.in_flight += 1,
            None => {
                if self.destinations.len() >= self.limits.destinations_max {
                    return Err(Busy::Destinations);
                }
                let d = Destination {
                    in_flight: 1,
                    window: initial,
                };
                self.destinations.insert(destination.to_owned(), d);
            }
        }
        self.total += 1;
        Ok(Slot {
            destination: destination.to_owned(),
        })
    }

    /// Hands a slot back with how the connection went.
    ///
    /// # Panics
    /// If the slot was not acquired here (a runtime bug).
    pub fn release(&mut self, slot: Slot, feedback: Feedback) {
        let (initial, max) = (self.limits.initial, self.limits.per_destination_max);
        let d = self
            .destinations
            .get_mut(&slot.destination)
            .expect("a released slot belongs to a tracked destination");
        assert!(d.in_flight > 0 && self.total > 0, "slot released twice");
        d.in_flight -= 1;
        self.total -= 1;
        match feedback {
            Feedback::Success => d.window = (d.window + 1).min(max),
            Feedback::Failure => d.window = d.window.saturating_sub(1).max(1),
            Feedback::Neutral => {}
        }
        if d.in_flight == 0 && d.window == initial {
            self.destinations.remove(&slot.destination);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(total: u32, per: u32, initial: u32) -> ConcurrencyLimits {
        ConcurrencyLimits {
            total_max: total,
            per_destination_max: per,
            initial,
            destinations_max: 3,
        }
    }

    #[test]
    fn window_grows_on_success_and_shrinks_on_failure() {
        let mut c = Concurrency::new(limits(100, 4, 2));
        let a = c.try_acquire("a").unwrap();
        let b = c.try_acquire("a").unwrap();
        assert_eq!(c.try_acquire("a"), Err(Busy::Destination));
        c.release(a, Feedback::Success);
        assert_eq!(c.window("a"), 3);
        let x = c.try_acquire("a").unwrap();
        let y = c.try_acquire("a").unwrap();
        assert_eq!(c.in_flight("a"), 3);
        assert_eq!(c.try_acquire("a"), Err(Busy::Destination));
        for s in [b, x, y] {
            c.release(s, Feedback::Failure);
        }
        assert_eq!(c.window("a"), 1, "never below one");
        assert_eq!(c.destinations(), 1, "remembered while not default");
        let s = c.try_acquire("a").unwrap();
        assert_eq!(c.try_acquire("a"), Err(Busy::Destination));
        c.release(s, Feedback::Success);
        assert_eq!(c.destinations(), 0, "back to the default: forgotten");
    }

    #[test]
    fn total_and_destination_count_limits() {
        let mut c = Concurrency::new(limits(3, 2, 2));
        let s1 = c.try_acquire("a").unwrap();
        let _s2 = c.try_acquire("b").unwrap();
        let _s3 = c.try_acquire("c").unwrap();
        assert_eq!(c.try_acquire("a"), Err(Busy::Total));
        // "a" stays tracked: its window shrank below the default.
        c.release(s1, Feedback::Failure);
        assert_eq!(c.try_acquire("d"), Err(Busy::Destinations));
        assert_eq!(c.total(), 2);
    }

    #[test]
    #[should_panic(expected = "tracked destination")]
    fn a_foreign_slot_is_a_bug() {
        let mut c = Concurrency::new(ConcurrencyLimits::default());
        c.release(
            Slot {
                destination: "x".into(),
            },
            Feedback::Neutral,
        );
    }

    proptest! {
        /// Random acquire/release sequences keep every invariant.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec((0u8..4, 0u8..3, 0u8..3), 0..200)) {
            let mut c = Concurrency::new(limits(5, 3, 2));
            let mut held: Vec<Slot> = Vec::new();
            for (op, dest, fb) in ops {
                let name = ["a", "b", "c", "d"][usize::from(op)];
                if dest == 0 && !held.is_empty() {
                    let slot = held.remove(usize::from(fb) % held.len());
                    let feedback = [Feedback::Success, Feedback::Failure, Feedback::Neutral][usize::from(fb)];
                    c.release(slot, feedback);
                } else if let Ok(slot) = c.try_acquire(name) {
                    held.push(slot);
                }
                prop_assert_eq!(c.total() as usize, held.len());
                prop_assert!(c.total() <= 5);
                prop_assert!(c.destinations() <= 3);
                for n in ["a", "b", "c", "d"] {
                    let count = held.iter().filter(|s| s.destination() == n).count();
                    prop_assert_eq!(c.in_flight(n) as usize, count);
                    prop_assert!(c.in_flight(n) <= 3);
                    prop_assert!((1..=3).contains(&c.window(n)));
                }
            }
        }
    }
}
