//! The one retry layer, in the style of the AWS SDKs' "standard" mode.
//!
//! At most `max_retries` attempts in total per request. Only errors that can heal
//! are retried ([`crate::Error::is_retryable`]: timeouts, throttling, 5xx,
//! connection failures); everything else (NoSuchBucket, AccessDenied, bad input,
//! local disk errors) ends the call at once. Backoff is full jitter, base 50 ms,
//! 1 s for throttling (503 SlowDown, 429) as in the SDKs' standard mode, capped at
//! 20 s; the first retry after a broken connection goes at once (the usual cause is
//! a pooled connection the server had closed, which a new one heals). A client-wide retry
//! budget (a token bucket) makes a storm of failures fail fast instead of
//! multiplying traffic. The SDK's own retries are disabled so there is no second loop.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result, Wire};

/// Retry settings, derived from the config.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub throttle_base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    pub fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            base: Duration::from_millis(50),
            throttle_base: Duration::from_secs(1),
            cap: Duration::from_secs(20),
        }
    }

    /// Full-jitter delay before attempt `attempt + 1` (attempt counts from 1).
    pub fn delay(&self, attempt: u32, kind: ErrorKind, rand01: f64) -> Duration {
        let base = if kind == ErrorKind::Throttled {
            self.throttle_base
        } else {
            self.base
        };
        let exp = base.saturating_mul(1u32 << (attempt - 1).min(16));
        exp.min(self.cap).mul_f64(rand01.clamp(0.0, 1.0))
    }

    /// The delay after `err`, the `attempt`th failure of a call: none before the
    /// first retry of a broken connection, else [`RetryPolicy::delay`].
    fn backoff(&self, attempt: u32, err: &Error, rand01: f64) -> Duration {
        if attempt == 1 && err.wire() == Some(Wire::Broken) {
            return Duration::ZERO;
        }
        self.delay(attempt, err.kind(), rand01)
    }
}

/// Client-wide retry budget: retries spend tokens, successes earn a little back.
/// When the bucket is empty, errors are returned without retrying.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    tokens: AtomicU32,
    capacity: u32,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
}

const RETRY_COST: u32 = 5;
const TIMEOUT_COST: u32 = 10;
const SUCCESS_REFUND: u32 = 1;

impl RetryBudget {
    pub fn new(capacity: u32) -> RetryBudget {
        RetryBudget {
            tokens: AtomicU32::new(capacity),
            capacity,
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    fn try_spend(&self, kind: ErrorKind) -> bool {
        let cost = if kind == ErrorKind::Timeout {
            TIMEOUT_COST
        } else {
            RETRY_COST
        };
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(cost))
            .is_ok()
    }

    fn refund(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < self.capacity).then(|| (t + SUCCESS_REFUND).min(self.capacity))
            });
    }

    #[cfg(test)]
    pub fn available(&self) -> u32 {
        self.tokens.load(Ordering::Acquire)
    }
}

/// Runs `f` (one attempt per call, given the attempt number from 1) until it
/// succeeds, fails with an error that cannot heal, or attempts run out.
/// The returned error carries attempts and elapsed; `Ok` carries attempts made.
pub(crate) async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    budget: &RetryBudget,
    mut f: F,
) -> Result<(T, u32)>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut attempt = 1;
    loop {
        match f(attempt).await {
            Ok(v) => {
                budget.refund();
                return Ok((v, attempt));
            }
            Err(e) => {
                if e.kind() == ErrorKind::Throttled {
                    budget.throttled.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("stor_throttled_total").increment(1);
                }
                let give_up = !e.is_retryable()
                    || attempt >= policy.max_attempts
                    || !budget.try_spend(e.kind());
                if give_up {
                    return Err(e.with_attempts(attempt, start.elapsed()));
                }
                let delay = policy.backoff(attempt, &e, rand::random::<f64>());
                tracing::debug!(
                    attempt,
                    kind = %e.kind(),
                    delay_ms = delay.as_millis() as u64,
                    "retrying after: {e}"
                );
                budget.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("stor_retries_total", "kind" => e.kind().to_string())
                    .increment(1);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Mutex;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let p = RetryPolicy::new(5);
        assert_eq!(
            p.delay(1, ErrorKind::Transient, 1.0),
            Duration::from_millis(50)
        );
        assert_eq!(
            p.delay(2, ErrorKind::Transient, 1.0),
            Duration::from_millis(100)
        );
        // Throttling: the SDKs' standard mode, base 1 s, capped at 20 s.
        assert_eq!(
            p.delay(1, ErrorKind::Throttled, 1.0),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(2, ErrorKind::Throttled, 1.0),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(30, ErrorKind::Throttled, 1.0),
            Duration::from_secs(20)
        );
        assert_eq!(p.delay(3, ErrorKind::Transient, 0.0), Duration::ZERO);
        assert_eq!(
            p.delay(3, ErrorKind::Transient, 0.5),
            Duration::from_millis(100)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_up_to_max_attempts() {
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        let calls = AtomicU32::new(0);
        let err = with_retry(&p, &b, |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::s3(Some("InternalError"), Some(500), None))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(err.attempts(), 3);
        assert_eq!(b.retries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_errors_that_cannot_heal() {
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        for code in [
            "NoSuchBucket",
            "AccessDenied",
            "InvalidBucketName",
            "NoSuchKey",
        ] {
            let calls = AtomicU32::new(0);
            let err = with_retry(&p, &b, |_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::s3(Some(code), Some(400), None))
            })
            .await
            .unwrap_err();
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{code}");
            assert_eq!(err.attempts(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn succeeds_after_a_transient_failure() {
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        let (v, attempts) = with_retry(&p, &b, |n| async move {
            if n == 1 {
                Err(Error::s3(Some("SlowDown"), Some(503), None))
            } else {
                Ok(42)
            }
        })
        .await
        .unwrap();
        assert_eq!((v, attempts), (42, 2));
        assert_eq!(b.throttled.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_budget_fails_fast() {
        let p = RetryPolicy::new(10);
        let b = RetryBudget::new(12); // two retries' worth
        let calls = AtomicU32::new(0);
        let err = with_retry(&p, &b, |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::s3(Some("SlowDown"), Some(503), None))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(err.kind(), ErrorKind::Throttled);
        assert_eq!(b.available(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_is_retried_at_once_and_counts() {
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        let reset =
            || Error::new(ErrorKind::Transient, "connection reset by peer").with_wire(Wire::Broken);
        for _ in 0..20 {
            let at = Mutex::new(Vec::new());
            let (_, attempts) = with_retry(&p, &b, |n| {
                at.lock().unwrap().push(Instant::now());
                async move {
                    if n == 1 {
                        Err(reset())
                    } else {
                        Ok(())
                    }
                }
            })
            .await
            .unwrap();
            assert_eq!(attempts, 2);
            let at = at.into_inner().unwrap();
            assert_eq!(at[0], at[1], "no delay before the retry of a reset");
        }
        // Resets are ordinary failures: max_retries bounds them.
        let err = with_retry(&p, &b, |_| async { Err::<(), _>(reset()) })
            .await
            .unwrap_err();
        assert_eq!(err.attempts(), 3);
    }
}
