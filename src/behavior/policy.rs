//! The pure parts of an agent's processing controls: the circuit breaker on its primary model,
//! retry backoff with jitter (and `retry-after`), and the retry budget.

use crate::kernel::RngStream;
use crate::protocol::ProviderError;
use crate::scenario::{Backoff, BreakerPolicy, Jitter, RetryPolicy};

/// The state of an agent's circuit breaker on its primary model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaker {
    Closed { failures: u32 },
    Open { until_us: u64 },
    HalfOpen,
}

impl Breaker {
    /// Whether a call may go through at `now_us`; an expired open breaker half-opens (and lets
    /// the probe through).
    pub fn allows(&mut self, now_us: u64) -> bool {
        match *self {
            Breaker::Open { until_us } if now_us < until_us => false,
            Breaker::Open { .. } => {
                *self = Breaker::HalfOpen;
                true
            }
            _ => true,
        }
    }

    /// The breaker after a call's outcome at `now_us`.
    pub fn record(self, policy: &BreakerPolicy, success: bool, now_us: u64) -> Breaker {
        match (self, success) {
            (_, true) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, false) if failures + 1 < policy.failures => {
                Breaker::Closed { failures: failures + 1 }
            }
            (Breaker::Open { until_us }, false) => Breaker::Open { until_us },
            (_, false) => Breaker::Open {
                until_us: now_us + policy.cool_down_us,
            },
        }
    }
}

/// Retry budget: retries may add at most `budget` × first attempts, plus 3.
pub fn within_retry_budget(budget: f64, retries: u64, first_attempts: u64) -> bool {
    (retries as f64) < 3.0 + budget * first_attempts as f64
}

/// The wait before attempt `attempt + 1`, or `None` to give up (a `retry-after` longer than the
/// policy accepts). Jitter draws come from the agent's stream.
pub fn retry_delay_us(
    policy: &RetryPolicy,
    error: &ProviderError,
    attempt: u32,
    previous_us: u64,
    stream: &mut RngStream,
) -> Option<u64> {
    if policy.honor_retry_after {
        if let Some(retry_after_us) = error.retry_after_us {
            return (retry_after_us <= policy.max_retry_after_us).then_some(retry_after_us);
        }
    }
    let exponent = attempt.saturating_sub(1).min(32);
    let delay_us = match policy.backoff {
        Backoff::Exponential => policy.base_us.saturating_mul(1u64 << exponent).min(policy.max_us),
        Backoff::Constant => policy.base_us,
    };
    Some(match policy.jitter {
        Jitter::None => delay_us,
        Jitter::Full => stream.below(delay_us + 1),
        Jitter::Equal => delay_us / 2 + stream.below(delay_us / 2 + 1),
        Jitter::Decorrelated => {
            let upper = previous_us.max(policy.base_us).saturating_mul(3);
            (policy.base_us + stream.below(upper.saturating_sub(policy.base_us) + 1)).min(policy.max_us)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            backoff: Backoff::Exponential,
            base_us: 500_000,
            max_us: 8_000_000,
            jitter,
            honor_retry_after: true,
            max_retry_after_us: 120_000_000,
            budget: None,
        }
    }

    fn server_error() -> ProviderError {
        ProviderError {
            status: 500,
            error_type: "server_error",
            code: "internal_error",
            retry_after_us: None,
            message: None,
        }
    }

    #[test]
    fn the_breaker_opens_after_failures_in_a_row_and_a_probe_decides() {
        let policy = BreakerPolicy {
            failures: 2,
            cool_down_us: 1_000,
        };
        let mut b = Breaker::Closed { failures: 0 };
        b = b.record(&policy, false, 10);
        assert_eq!(b, Breaker::Closed { failures: 1 });
        assert!(b.allows(10));
        b = b.record(&policy, false, 20);
        assert_eq!(b, Breaker::Open { until_us: 1_020 });
        assert!(!b.allows(1_019));
        assert_eq!(b.record(&policy, false, 500), Breaker::Open { until_us: 1_020 });
        assert!(b.allows(1_020));
        assert_eq!(b, Breaker::HalfOpen);
        assert_eq!(b.record(&policy, false, 1_030), Breaker::Open { until_us: 2_030 });
        assert_eq!(b.record(&policy, true, 1_030), Breaker::Closed { failures: 0 });
    }

    #[test]
    fn the_retry_budget_allows_three_plus_a_share_of_first_attempts() {
        assert!(within_retry_budget(0.1, 2, 0));
        assert!(!within_retry_budget(0.1, 3, 0));
        assert!(within_retry_budget(0.1, 3, 10));
        assert!(!within_retry_budget(0.1, 4, 10));
    }

    #[test]
    fn exponential_backoff_doubles_up_to_the_cap() {
        let mut stream = RngStream::new(1, "t");
        let delays: Vec<u64> = (1..=6)
            .map(|attempt| retry_delay_us(&policy(Jitter::None), &server_error(), attempt, 0, &mut stream).unwrap())
            .collect();
        assert_eq!(delays, [500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000, 8_000_000]);
    }

    #[test]
    fn retry_after_is_honoured_exactly_and_too_long_a_one_gives_up() {
        let mut stream = RngStream::new(1, "t");
        let limited = ProviderError {
            status: 429,
            error_type: "requests",
            code: "rate_limit_exceeded",
            retry_after_us: Some(2_000_000),
            message: None,
        };
        assert_eq!(
            retry_delay_us(&policy(Jitter::Full), &limited, 1, 0, &mut stream),
            Some(2_000_000)
        );
        let too_long = ProviderError {
            retry_after_us: Some(600_000_000),
            ..limited
        };
        assert_eq!(
            retry_delay_us(&policy(Jitter::Full), &too_long, 1, 0, &mut stream),
            None
        );
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_repeats_for_the_same_seed() {
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let draw = |seed| {
                let mut stream = RngStream::new(seed, "agent:a#0");
                (1..=200u32)
                    .map(|n| {
                        retry_delay_us(&policy(jitter), &server_error(), n % 6 + 1, 1_000_000, &mut stream).unwrap()
                    })
                    .collect::<Vec<_>>()
            };
            let (a, b) = (draw(7), draw(7));
            assert_eq!(a, b, "{jitter:?}");
            for (i, d) in a.iter().enumerate() {
                let attempt = (i as u32 + 1) % 6 + 1;
                let cap = (500_000u64 << (attempt - 1)).min(8_000_000);
                let ok = match jitter {
                    Jitter::Full => *d <= cap,
                    Jitter::Equal => *d >= cap / 2 && *d <= cap,
                    _ => *d >= 500_000 && *d <= 8_000_000,
                };
                assert!(ok, "{jitter:?}: {d} for attempt {attempt}");
            }
            assert!(
                a.iter().collect::<std::collections::BTreeSet<_>>().len() > 10,
                "{jitter:?} draws vary"
            );
        }
    }

    #[test]
    fn quota_errors_are_not_retryable_and_overload_is() {
        let quota = ProviderError {
            status: 429,
            error_type: "insufficient_quota",
            code: "insufficient_quota",
            retry_after_us: None,
            message: None,
        };
        assert!(!quota.retryable());
        assert!(ProviderError {
            status: 529,
            error_type: "overloaded_error",
            code: "overloaded_error",
            retry_after_us: None,
            message: None,
        }
        .retryable());
        assert!(!ProviderError {
            status: 401,
            error_type: "invalid_request_error",
            code: "invalid_api_key",
            retry_after_us: None,
            message: None,
        }
        .retryable());
    }
}
