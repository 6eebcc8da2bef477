//! The retry schedule: exponential backoff with jitter, a cap on the
//! interval, and a maximum time in the queue after which the message
//! bounces.
//!
//! ```text
//! interval(n) = min(initial × factor^(n-1), interval_max)      n = failed attempts so far
//! next try    = now + interval(n) ± jitter_percent %           (never past the expiry)
//! expiry      = received + lifetime_max                        → bounce after the last try
//! ```
//!
//! With the defaults (Postfix's `minimal_backoff_time`, `maximal_backoff_time`
//! and `maximal_queue_lifetime`): 5 min, 10, 20, 40, then every 66 min 40 s
//! (±20 %) for 5 days, about 110 attempts. The jitter spreads the retries of
//! a destination that came back, instead of sending the whole backlog in
//! the same second. Its randomness is an input (`jitter`, any u64 from the
//! runtime's generator), so the schedule is a pure function.

use std::time::Duration;

/// Default [`RetryPolicy::initial`], Postfix's `minimal_backoff_time`.
pub const RETRY_INITIAL_DEFAULT: Duration = Duration::from_secs(300);
/// Default [`RetryPolicy::interval_max`], Postfix's `maximal_backoff_time`.
pub const RETRY_INTERVAL_MAX_DEFAULT: Duration = Duration::from_secs(4000);
/// Default [`RetryPolicy::factor`].
pub const RETRY_FACTOR_DEFAULT: u32 = 2;
/// Default [`RetryPolicy::jitter_percent`].
pub const RETRY_JITTER_PERCENT_DEFAULT: u32 = 20;
/// Default [`RetryPolicy::lifetime_max`], Postfix's `maximal_queue_lifetime`.
pub const QUEUE_LIFETIME_DEFAULT: Duration = Duration::from_secs(5 * 24 * 3600);
/// Shortest interval ever scheduled, whatever the jitter.
pub const RETRY_INTERVAL_MIN: Duration = Duration::from_secs(1);

const _: () = assert!(RETRY_INITIAL_DEFAULT.as_secs() <= RETRY_INTERVAL_MAX_DEFAULT.as_secs());
const _: () = assert!(RETRY_INTERVAL_MAX_DEFAULT.as_secs() < QUEUE_LIFETIME_DEFAULT.as_secs());
const _: () = assert!(RETRY_JITTER_PERCENT_DEFAULT <= 100);

/// When to try again, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Interval after the first failed attempt.
    pub initial: Duration,
    /// Growth per failed attempt (1 = constant).
    pub factor: u32,
    /// Longest interval.
    pub interval_max: Duration,
    /// Each interval moves by up to this share, up or down (0..=100).
    pub jitter_percent: u32,
    /// Time in the queue after which a message still not delivered bounces.
    pub lifetime_max: Duration,
    /// Send a "delayed" DSN once the message has waited this long (None:
    /// never, Postfix's default `delay_warning_time = 0`).
    pub delay_warning_after: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: RETRY_INITIAL_DEFAULT,
            factor: RETRY_FACTOR_DEFAULT,
            interval_max: RETRY_INTERVAL_MAX_DEFAULT,
            jitter_percent: RETRY_JITTER_PERCENT_DEFAULT,
            lifetime_max: QUEUE_LIFETIME_DEFAULT,
            delay_warning_after: None,
        }
    }
}

/// What to do after a temporary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again at this time (unix ms): the spool's `Deferred` record.
    At {
        /// Next attempt, unix ms.
        unix_ms: u64,
    },
    /// The message outlived `lifetime_max`: bounce what is left.
    Bounce,
}

/// A policy that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetryPolicyError {
    /// `initial` is zero or above `interval_max`.
    #[error("retry initial interval must be > 0 and <= interval_max")]
    Initial,
    /// `factor` is zero.
    #[error("retry factor must be >= 1")]
    Factor,
    /// `jitter_percent` above 100.
    #[error("retry jitter_percent must be <= 100")]
    Jitter,
    /// `lifetime_max` shorter than `initial`.
    #[error("queue lifetime must be at least the initial retry interval")]
    Lifetime,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RetryPolicy {
    /// Checks the relations between the fields.
    ///
    /// # Errors
    /// The first [`RetryPolicyError`] found.
    pub fn check(&self) -> Result<(), RetryPolicyError> {
        if self.initial.is_zero() || self.initial > self.interval_max {
            return Err(RetryPolicyError::Initial);
        }
        if self.factor == 0 {
            return Err(RetryPolicyError::Factor);
        }
        if self.jitter_percent > 100 {
            return Err(RetryPolicyError::Jitter);
        }
        if self.lifetime_max < self.initial {
            return Err(RetryPolicyError::Lifetime);
        }
        Ok(())
    }

    /// The interval after `attempts` failed attempts (at least 1), without
    /// jitter.
    #[must_use]
    pub fn interval(&self, attempts: u32) -> Duration {
        let cap = ms(self.interval_max);
        let mut interval = ms(self.initial).min(cap);
        for _ in 1..attempts.max(1) {
            interval = interval.saturating_mul(u64::from(self.factor)).min(cap);
            if interval == cap {
                break;
            }
        }
        Duration::from_millis(interval)
    }

    /// `interval` moved by the jitter: `jitter` (any u64, uniformly random)
    /// picks an offset in ±`jitter_percent` %; never below
    /// [`RETRY_INTERVAL_MIN`].
    #[must_use]
    pub fn jittered(&self, interval: Duration, jitter: u64) -> Duration {
        let base = ms(interval);
        let spread = base / 100 * u64::from(self.jitter_percent.min(100))
            + base % 100 * u64::from(self.jitter_percent.min(100)) / 100;
        let offset = jitter % (2 * spread + 1);
        let value = (base + offset).saturating_sub(spread);
        Duration::from_millis(value.max(ms(RETRY_INTERVAL_MIN)))
    }

    /// When a message received at `received_unix_ms` expires.
    #[must_use]
    pub fn expiry(&self, received_unix_ms: u64) -> u64 {
        received_unix_ms.saturating_add(ms(self.lifetime_max))
    }

    /// The decision after a temporary failure at `now_unix_ms`, the
    /// `attempts`-th (this one included). The last try is placed at the
    /// expiry itself, so a message is never bounced early.
    #[must_use]
    pub fn after_failure(
        &self,
        received_unix_ms: u64,
        attempts: u32,
        now_unix_ms: u64,
        jitter: u64,
    ) -> Retry {
        let expiry = self.expiry(received_unix_ms);
        if now_unix_ms >= expiry {
            return Retry::Bounce;
        }
        let wait = ms(self.jittered(self.interval(attempts), jitter));
        Retry::At {
            unix_ms: now_unix_ms.saturating_add(wait).min(expiry),
        }
    }

    /// Whether a "delayed" DSN is due now (once per message: the runtime
    /// remembers that it sent one).
    #[must_use]
    pub fn delay_warning_due(&self, received_unix_ms: u64, now_unix_ms: u64, sent: bool) -> bool {
        match self.delay_warning_after {
            Some(after) if !sent => now_unix_ms >= received_unix_ms.saturating_add(ms(after)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: u64 = 60_000;

    #[test]
    fn defaults_follow_postfix() {
        let p = RetryPolicy::default();
        assert_eq!(p.check(), Ok(()));
        let no_jitter = RetryPolicy {
            jitter_percent: 0,
            ..p
        };
        let waits: Vec<u64> = (1..=6)
            .map(|n| ms(no_jitter.jittered(no_jitter.interval(n), 12345)) / 1000)
            .collect();
        assert_eq!(waits, [300, 600, 1200, 2400, 4000, 4000]);
        assert_eq!(p.interval(u32::MAX), Duration::from_secs(4000));
    }

    #[test]
    fn schedule_until_bounce() {
        let p = RetryPolicy {
            jitter_percent: 0,
            lifetime_max: Duration::from_secs(3600),
            ..RetryPolicy::default()
        };
        let received = 1_000_000;
        let mut now = received;
        let mut attempts = 0;
        let mut tries = Vec::new();
        loop {
            attempts += 1;
            match p.after_failure(received, attempts, now, 0) {
                Retry::At { unix_ms } => {
                    assert!(unix_ms > now);
                    tries.push((unix_ms - received) / MIN);
                    now = unix_ms;
                }
                Retry::Bounce => break,
            }
        }
        // 5, +10, +20, then the last try at the one-hour expiry.
        assert_eq!(tries, [5, 15, 35, 60]);
        assert_eq!(now, p.expiry(received));
    }

    #[test]
    fn jitter_is_bounded_and_uses_its_input() {
        let p = RetryPolicy::default();
        let base = Duration::from_secs(1000);
        let low = p.jittered(base, 0);
        let high = p.jittered(base, 400_000);
        assert_eq!(low, Duration::from_secs(800));
        assert_eq!(high, Duration::from_secs(1200));
        assert_ne!(p.jittered(base, 7), p.jittered(base, 8));
        let tiny = RetryPolicy {
            jitter_percent: 100,
            ..p
        };
        assert_eq!(tiny.jittered(base, 0), RETRY_INTERVAL_MIN);
    }

    #[test]
    fn bad_policies_are_refused() {
        let p = RetryPolicy::default();
        let bad = [
            (
                RetryPolicy {
                    initial: Duration::ZERO,
                    ..p
                },
                RetryPolicyError::Initial,
            ),
            (RetryPolicy { factor: 0, ..p }, RetryPolicyError::Factor),
            (
                RetryPolicy {
                    jitter_percent: 101,
                    ..p
                },
                RetryPolicyError::Jitter,
            ),
            (
                RetryPolicy {
                    lifetime_max: Duration::from_secs(1),
                    ..p
                },
                RetryPolicyError::Lifetime,
            ),
        ];
        for (policy, error) in bad {
            assert_eq!(policy.check(), Err(error));
        }
    }

    #[test]
    fn delay_warning_once() {
        let p = RetryPolicy {
            delay_warning_after: Some(Duration::from_secs(4 * 3600)),
            ..RetryPolicy::default()
        };
        let h = 3_600_000;
        assert!(!p.delay_warning_due(0, 3 * h, false));
        assert!(p.delay_warning_due(0, 4 * h, false));
        assert!(!p.delay_warning_due(0, 5 * h, true));
        assert!(!RetryPolicy::default().delay_warning_due(0, 100 * h, false));
    }

    proptest! {
        #[test]
        fn retries_stay_in_the_window(
            received in 0u64..1 << 50,
            attempts in 1u32..200,
            elapsed in 0u64..10 * 24 * 3600 * 1000,
            jitter in any::<u64>(),
        ) {
            let p = RetryPolicy::default();
            let now = received + elapsed;
            match p.after_failure(received, attempts, now, jitter) {
                Retry::At { unix_ms } => {
                    prop_assert!(unix_ms > now);
                    prop_assert!(unix_ms <= p.expiry(received));
                    let wait = unix_ms - now;
                    prop_assert!(wait <= ms(p.interval_max) * 12 / 10);
                }
                Retry::Bounce => prop_assert!(now >= p.expiry(received)),
            }
        }
    }
}
