//! A token bucket in virtual time: the provider's rate limit and the client's rate limiter.

/// One request, in bucket units: a minute of microseconds, so a refill of `per_minute` units per
/// microsecond adds exactly `per_minute` requests a minute, in integers.
const REQUEST: u64 = 60_000_000;

/// Requests refill continuously at `per_minute`; at most `burst` wait in the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    per_minute: u64,
    capacity: u64,
    tokens: u64,
    last_us: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_minute: u32, burst: u32) -> TokenBucket {
        let capacity = burst.max(1) as u64 * REQUEST;
        TokenBucket {
            per_minute: per_minute.max(1) as u64,
            capacity,
            tokens: capacity,
            last_us: 0,
        }
    }

    /// Takes one request's token at `now_us`, or says how long until one is there.
    pub fn take(&mut self, now_us: u64) -> Result<(), u64> {
        self.take_n(now_us, 1)
    }

    /// Takes one request's token at the earliest time from `now_us` that the bucket has one
    /// (after the requests already queued before it), and returns that time.
    pub fn reserve(&mut self, now_us: u64) -> u64 {
        let at_us = now_us.max(self.last_us);
        match self.take(at_us) {
            Ok(()) => at_us,
            Err(wait_us) => {
                let at_us = at_us.saturating_add(wait_us);
                // Exactly enough has refilled by then.
                let _ = self.take(at_us);
                at_us
            }
        }
    }

    /// Takes `n` tokens at once (a request of `n` model tokens), or says how long until they are
    /// there. More than the bucket holds is capped at a full bucket, so it passes eventually.
    pub fn take_n(&mut self, now_us: u64, n: u64) -> Result<(), u64> {
        let elapsed_us = now_us.saturating_sub(self.last_us);
        self.tokens = self
            .tokens
            .saturating_add(elapsed_us.saturating_mul(self.per_minute))
            .min(self.capacity);
        self.last_us = self.last_us.max(now_us);
        let cost = n.max(1).saturating_mul(REQUEST).min(self.capacity);
        if self.tokens < cost {
            return Err((cost - self.tokens).div_ceil(self.per_minute));
        }
        self.tokens -= cost;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;

    #[test]
    fn a_bucket_gives_its_burst_then_refills_at_its_rate() {
        let mut bucket = TokenBucket::new(60, 2); // one a second, two at once
        assert_eq!(bucket.take(0), Ok(()));
        assert_eq!(bucket.take(0), Ok(()));
        assert_eq!(bucket.take(0), Err(1_000_000));
        assert_eq!(bucket.take(400_000), Err(600_000));
        assert_eq!(bucket.take(1_000_000), Ok(()));
        assert_eq!(bucket.take(10_000_000), Ok(()));
        assert_eq!(
            bucket.take(10_000_000),
            Ok(()),
            "full again after a long pause, but no more than the burst"
        );
        assert!(bucket.take(10_000_000).is_err());
    }
}
