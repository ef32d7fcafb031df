//! Timer arithmetic for the FSM: jitter (RFC 4271 section 10), exponential
//! ConnectRetry backoff and idle-hold damping. Randomness is injected as a
//! seed so tests are deterministic.

use std::time::Duration;

/// A tiny deterministic PRNG (splitmix64). Only used for timer jitter, where
/// predictability in tests matters more than quality.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A jitter source from a seed (the driver seeds it from the clock and peer address).
    pub fn new(seed: u64) -> Jitter {
        Jitter { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `d` scaled by a random factor in [0.75, 1.0], as RFC 4271 section 10
    /// asks for ConnectRetry, keepalive and MinASOriginationInterval timers.
    pub fn apply(&mut self, d: Duration) -> Duration {
        // 0..=1000 → factor 750..=1000 per mille.
        let r = self.next_u64() % 251;
        let permille = 750 + r;
        let nanos = d.as_nanos().saturating_mul(u128::from(permille)) / 1000;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// `base * 2^exp`, capped at `max`.
pub fn backoff(base: Duration, exp: u32, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(exp.min(20)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        let mut j = Jitter::new(7);
        for _ in 0..1000 {
            let d = j.apply(Duration::from_secs(4));
            assert!(
                d >= Duration::from_secs(3) && d <= Duration::from_secs(4),
                "{d:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_secs(1);
        let m = Duration::from_secs(30);
        assert_eq!(backoff(b, 0, m), b);
        assert_eq!(backoff(b, 3, m), Duration::from_secs(8));
        assert_eq!(backoff(b, 10, m), m);
        assert_eq!(backoff(b, 1000, m), m);
    }
}
