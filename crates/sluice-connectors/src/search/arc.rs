//! Adaptive request concurrency: how many bulk requests may be in flight.
//!
//! The limit starts at one and is revised once per window (about one mean
//! round-trip time): it grows by one when the window was saturated (every
//! permit was taken) and requests were no slower than the moving mean, and
//! shrinks to 90% on back-pressure (HTTP 429/503, items refused with
//! `es_rejected_execution_exception`) or when round trips are far slower
//! than the mean. A `Retry-After` from the server holds every new request
//! back until it has passed. A fixed limit turns the adaptation off.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Moving mean weight of the newest window.
const ALPHA: f64 = 0.4;
/// A window whose mean round trip exceeds the moving mean by this many
/// deviations (and by at least a quarter) counts as back-pressure.
const DEVIATIONS: f64 = 3.0;
/// Shortest window, so very fast endpoints are not judged on one response.
const MIN_WINDOW: Duration = Duration::from_millis(20);

/// The limiter shared by the requests of one sink.
pub(crate) struct Limiter {
    adaptive: bool,
    max: usize,
    state: Mutex<State>,
    freed: Notify,
    started: Instant,
}

struct State {
    limit: usize,
    in_flight: usize,
    not_before: Option<Instant>,
    window_start: Instant,
    saturated: bool,
    back_pressure: bool,
    rtt_sum: f64,
    rtt_count: u32,
    mean: Option<f64>,
    deviation: f64,
    /// (seconds since start, limit) at every change, for reports.
    history: Vec<(f64, usize)>,
}

/// A request's right to be in flight; released when dropped.
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    sent: Option<Instant>,
}

/// How a request ended, as far as the limiter cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The server kept up.
    Ok,
    /// The server pushed back (429, 503, rejected executions).
    BackPressure,
    /// Failed for another reason (the round trip says nothing about load).
    Failed,
}

impl Limiter {
    /// An adaptive limiter between 1 and `max`, or a fixed one of `fixed`.
    pub fn new(fixed: Option<usize>, max: usize) -> Limiter {
        let limit = fixed.unwrap_or(1).max(1);
        let now = Instant::now();
        Limiter {
            adaptive: fixed.is_none(),
            max: fixed.unwrap_or(max).max(1),
            state: Mutex::new(State {
                limit,
                in_flight: 0,
                not_before: None,
                window_start: now,
                saturated: false,
                back_pressure: false,
                rtt_sum: 0.0,
                rtt_count: 0,
                mean: None,
                deviation: 0.0,
                history: vec![(0.0, limit)],
            }),
            freed: Notify::new(),
            started: now,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Every change of the limit: (seconds since the sink opened, limit).
    pub fn history(&self) -> Vec<(f64, usize)> {
        self.lock().history.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a free slot (and for any `Retry-After` to pass).
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let wait = {
                let mut s = self.lock();
                match s.not_before {
                    Some(t) if t > Instant::now() => Some(t),
                    _ => {
                        if s.in_flight < s.limit {
                            s.in_flight += 1;
                            if s.in_flight >= s.limit {
                                s.saturated = true;
                            }
                            return Permit {
                                limiter: self.clone(),
                                sent: Some(Instant::now()),
                            };
                        }
                        s.saturated = true;
                        None
                    }
                }
            };
            match wait {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => {
                    let freed = self.freed.notified();
                    // A slot may have been freed between the check and here.
                    tokio::select! {
                        _ = freed => {}
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            }
        }
    }

    /// Holds every new request back until `after` has passed (`Retry-After`).
    pub fn hold_off(&self, after: Duration) {
        let until = Instant::now() + after;
        let mut s = self.lock();
        if s.not_before.is_none_or(|t| t < until) {
            s.not_before = Some(until);
        }
    }

    fn finish(&self, sent: Instant, outcome: Outcome) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if self.adaptive {
            match outcome {
                Outcome::Ok => {
                    s.rtt_sum += sent.elapsed().as_secs_f64();
                    s.rtt_count += 1;
                }
                Outcome::BackPressure => s.back_pressure = true,
                Outcome::Failed => {}
            }
            let window = s
                .mean
                .map_or(MIN_WINDOW, |m| Duration::from_secs_f64(m).max(MIN_WINDOW));
            if s.window_start.elapsed() >= window && (s.rtt_count > 0 || s.back_pressure) {
                self.revise(&mut s);
            }
        }
        drop(s);
        self.freed.notify_one();
    }

    /// End of a window: grow, shrink or keep the limit.
    fn revise(&self, s: &mut State) {
        let current = (s.rtt_count > 0).then(|| s.rtt_sum / s.rtt_count as f64);
        let slow = match (current, s.mean) {
            (Some(c), Some(m)) => c > m + (DEVIATIONS * s.deviation).max(m * 0.25),
            _ => false,
        };
        let old = s.limit;
        if s.back_pressure || slow {
            s.limit = ((s.limit as f64 * 0.9).floor() as usize).max(1);
        } else if s.saturated
            && current.is_some_and(|c| s.mean.is_none_or(|m| c <= m + s.deviation))
            && s.limit < self.max
        {
            s.limit += 1;
        }
        if let Some(c) = current
            && !s.back_pressure
        {
            match s.mean {
                None => s.mean = Some(c),
                Some(m) => {
                    s.deviation = (1.0 - ALPHA) * s.deviation + ALPHA * (c - m).abs();
                    s.mean = Some((1.0 - ALPHA) * m + ALPHA * c);
                }
            }
        }
        if s.limit != old {
            let at = self.started.elapsed().as_secs_f64();
            s.history.push((at, s.limit));
            tracing::debug!(limit = s.limit, previous = old, "bulk concurrency limit");
        }
        s.window_start = Instant::now();
        s.saturated = s.in_flight >= s.limit;
        s.back_pressure = false;
        s.rtt_sum = 0.0;
        s.rtt_count = 0;
    }
}

impl Permit {
    /// Releases the slot, telling the limiter how the request went.
    pub fn done(mut self, outcome: Outcome) {
        self.release(outcome);
    }

    fn release(&mut self, outcome: Outcome) {
        if let Some(sent) = self.sent.take() {
            self.limiter.finish(sent, outcome);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.release(Outcome::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the limiter against a server that serves `n` requests at once
    /// and pushes back above that, and returns the limits seen once settled.
    async fn settle(n: usize) -> Vec<usize> {
        let limiter = Arc::new(Limiter::new(None, 64));
        let mut seen = Vec::new();
        let active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for round in 0..4000 {
            let l = limiter.clone();
            let active = active.clone();
            // Keep the limiter saturated, as a loaded sink does.
            while tasks.len() >= 64 {
                tasks.join_next().await;
            }
            tasks.spawn(async move {
                let permit = l.acquire().await;
                let now = active.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let outcome = if now > n {
                    Outcome::BackPressure
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Outcome::Ok
                };
                active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                permit.done(outcome);
            });
            if round > 2000 && round % 50 == 0 {
                seen.push(limiter.limit());
            }
        }
        while tasks.join_next().await.is_some() {}
        seen
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_limit_settles_near_what_the_server_allows() {
        for n in [4usize, 10] {
            let seen = settle(n).await;
            let mean = seen.iter().sum::<usize>() as f64 / seen.len() as f64;
            assert!(
                (mean - n as f64).abs() <= n as f64 * 0.2 + 0.5,
                "server allows {n}: limit averaged {mean:.1} ({seen:?})"
            );
        }
    }

    #[tokio::test]
    async fn a_fixed_limit_never_moves() {
        let limiter = Arc::new(Limiter::new(Some(3), 64));
        for _ in 0..10 {
            let p = limiter.acquire().await;
            p.done(Outcome::BackPressure);
        }
        assert_eq!(limiter.limit(), 3);
    }

    #[tokio::test]
    async fn retry_after_holds_new_requests_back() {
        let limiter = Arc::new(Limiter::new(Some(2), 64));
        limiter.hold_off(Duration::from_millis(150));
        let t = Instant::now();
        limiter.acquire().await.done(Outcome::Ok);
        assert!(t.elapsed() >= Duration::from_millis(140), "{:?}", t.elapsed());
    }
}
