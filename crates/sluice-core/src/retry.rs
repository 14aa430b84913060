//! Retrying what may pass: capped exponential backoff with full jitter, and
//! a circuit breaker.
//!
//! A [`Retrier`] follows one connection's attempts (a sink writing a stream,
//! a reader of a partition). After a failure that
//! [`crate::Error::is_retryable`], it says how long to wait: a random delay
//! between zero and `initial × 2^(n-1)`, capped at `max` ("full jitter", so
//! many clients that failed together do not come back together). After
//! `breaker_threshold` consecutive failures the circuit opens: the next
//! attempt waits about `max` and is a probe (half-open); a success closes
//! the circuit, a failure opens it again. Past `give_up_after` of
//! uninterrupted failure the retrier gives up and the error stands.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// How failures are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Upper bound of the first backoff.
    pub initial: Duration,
    /// Longest single wait; also how long an open circuit waits before its probe.
    pub max: Duration,
    /// Give up once failures have gone on this long without a success
    /// (`None`: never).
    pub give_up_after: Option<Duration>,
    /// Consecutive failures that open the circuit.
    pub breaker_threshold: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            give_up_after: Some(Duration::from_secs(600)),
            breaker_threshold: 4,
        }
    }
}

/// The state of the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Attempts go through.
    Closed,
    /// Too many failures in a row: waiting before a probe.
    Open,
    /// The next attempt is a probe; its outcome closes or reopens the circuit.
    HalfOpen,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Wait this long, then try again.
    Wait {
        delay: Duration,
        attempt: u32,
        circuit: Circuit,
    },
    /// Stop retrying; the error stands.
    GiveUp { attempts: u32, failing_for: Duration },
}

/// The attempts of one connection.
#[derive(Debug)]
pub struct Retrier {
    policy: RetryPolicy,
    consecutive: u32,
    failing_since: Option<Instant>,
    circuit: Circuit,
    rng: u64,
    /// Failed attempts that were retried, over the retrier's life.
    pub retries: u64,
    /// Times the circuit opened.
    pub opened: u64,
}

impl Retrier {
    pub fn new(policy: RetryPolicy) -> Self {
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Retrier {
            policy,
            consecutive: 0,
            failing_since: None,
            circuit: Circuit::Closed,
            rng: seed | 1,
            retries: 0,
            opened: 0,
        }
    }

    /// The circuit's state.
    pub fn circuit(&self) -> Circuit {
        self.circuit
    }

    /// An attempt succeeded: the circuit closes. Returns true when it was not
    /// closed before (a probe succeeded), so the caller can say so.
    pub fn success(&mut self) -> bool {
        let was_open = self.circuit != Circuit::Closed;
        self.consecutive = 0;
        self.failing_since = None;
        self.circuit = Circuit::Closed;
        was_open
    }

    /// An attempt failed with a retryable error: how long to wait, or give up.
    pub fn failure(&mut self) -> Next {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        self.consecutive += 1;
        if let Some(limit) = self.policy.give_up_after
            && since.elapsed() >= limit
        {
            return Next::GiveUp {
                attempts: self.consecutive,
                failing_for: since.elapsed(),
            };
        }
        self.retries += 1;
        let delay = if self.consecutive >= self.policy.breaker_threshold.max(1) {
            if self.circuit != Circuit::Open {
                self.opened += 1;
            }
            self.circuit = Circuit::Open;
            // Between half and all of the cap, so probes of many clients spread out.
            let max = self.policy.max;
            max / 2 + self.jitter(max / 2)
        } else {
            let exp = self.consecutive.saturating_sub(1).min(30);
            let ceiling = self.policy.initial.saturating_mul(1u32 << exp).min(self.policy.max);
            self.jitter(ceiling)
        };
        Next::Wait {
            delay,
            attempt: self.consecutive,
            circuit: self.circuit,
        }
    }

    /// The wait is over: an open circuit lets one probe through.
    pub fn waited(&mut self) {
        if self.circuit == Circuit::Open {
            self.circuit = Circuit::HalfOpen;
        }
    }

    /// A uniformly random duration in `[0, ceiling]` (xorshift64*).
    fn jitter(&mut self, ceiling: Duration) -> Duration {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(r % (nanos + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            give_up_after: None,
            breaker_threshold: 4,
        }
    }

    #[test]
    fn backoff_doubles_its_ceiling_with_full_jitter_then_opens_the_circuit() {
        let mut r = Retrier::new(policy());
        for (n, ceiling) in [(1u32, 1u64), (2, 2), (3, 4)] {
            match r.failure() {
                Next::Wait {
                    delay,
                    attempt,
                    circuit,
                } => {
                    assert_eq!(attempt, n);
                    assert!(delay <= Duration::from_secs(ceiling), "{delay:?} > {ceiling}s");
                    assert_eq!(circuit, Circuit::Closed);
                }
                other => panic!("gave up: {other:?}"),
            }
        }
        let Next::Wait { delay, circuit, .. } = r.failure() else {
            panic!("gave up")
        };
        assert_eq!(circuit, Circuit::Open);
        assert!(delay >= Duration::from_secs(15) && delay <= Duration::from_secs(30));
        r.waited();
        assert_eq!(r.circuit(), Circuit::HalfOpen);
        assert!(r.success(), "a successful probe closes an open circuit");
        assert_eq!(r.circuit(), Circuit::Closed);
        assert_eq!((r.retries, r.opened), (4, 1));
    }

    #[test]
    fn jitter_spreads_delays_and_never_exceeds_the_cap() {
        let mut r = Retrier::new(RetryPolicy {
            breaker_threshold: 100,
            ..policy()
        });
        let delays: Vec<Duration> = (0..40)
            .map(|_| match r.failure() {
                Next::Wait { delay, .. } => delay,
                other => panic!("gave up: {other:?}"),
            })
            .collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(30)));
        let late = &delays[10..];
        let distinct: std::collections::HashSet<_> = late.iter().collect();
        assert!(distinct.len() > 20, "delays are not jittered: {late:?}");
    }

    #[test]
    fn gives_up_after_the_limit() {
        let mut r = Retrier::new(RetryPolicy {
            give_up_after: Some(Duration::ZERO),
            ..policy()
        });
        assert!(matches!(r.failure(), Next::GiveUp { attempts: 1, .. }));
    }
}
