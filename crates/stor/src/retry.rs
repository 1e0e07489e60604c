//! The one retry layer, in the style of the AWS SDKs' "standard" mode, with an
//! endpoint gate that rides out a server restart.
//!
//! Failures are of three sorts, treated three ways:
//!
//! - **The server answered with an error that can heal, or the connection broke**
//!   ([`crate::Error::is_retryable`]: 5xx, throttling, timeouts, resets): at most
//!   `max_retries` attempts in total, with full-jitter exponential backoff — base
//!   50 ms, 1 s for throttling (503 SlowDown, 429), capped at 20 s. The first retry
//!   after a broken connection goes at once: the usual cause is a pooled connection
//!   the server had closed, and a new connection heals it.
//! - **The endpoint cannot be reached** (connection refused, DNS, no route, connect
//!   timeout; nothing reached the server): a server restarting or failing over,
//!   which takes seconds (a SIGKILLed SeaweedFS refuses connections for 14–22 s
//!   here). Not limited by `max_retries`: retried until the endpoint answers, the
//!   operation's timeout fires, or the retry budget runs dry. The client-wide
//!   [`EndpointGate`] closes at the first such failure; while it is closed one
//!   request at a time probes the endpoint, on a full-jitter schedule (200 ms
//!   doubling, capped at 4 s), each probe paid from the retry budget, and the others
//!   wait without sending anything or spending budget. The first answer reopens it
//!   and wakes them all. So 50 transfers in flight through a 20 s restart cost about
//!   a dozen probes, not 50 × N requests.
//! - **Everything else** (NoSuchBucket, AccessDenied, bad input, local disk errors):
//!   ends the call at once.
//!
//! A client-wide retry budget (a token bucket: a retry costs 5, one after a timeout
//! 10, a success earns 1 back) makes a storm of failures fail fast instead of
//! multiplying traffic. The SDK's own retries are disabled so there is no second
//! loop.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result, Wire};

/// Retry settings, derived from the config.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub throttle_base: Duration,
    pub cap: Duration,
    /// First probe delay of an unreachable endpoint, doubling per probe…
    pub probe_base: Duration,
    /// …up to this: how late a restarted server is noticed, at worst.
    pub probe_cap: Duration,
}

impl RetryPolicy {
    pub fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            base: Duration::from_millis(50),
            throttle_base: Duration::from_secs(1),
            cap: Duration::from_secs(20),
            probe_base: Duration::from_millis(200),
            probe_cap: Duration::from_secs(4),
        }
    }

    /// Full-jitter delay before attempt `attempt + 1` (attempt counts from 1).
    pub fn delay(&self, attempt: u32, kind: ErrorKind, rand01: f64) -> Duration {
        let base = if kind == ErrorKind::Throttled {
            self.throttle_base
        } else {
            self.base
        };
        jittered(base, attempt - 1, self.cap, rand01)
    }

    /// The delay after `err`, the `counted`th failure of a call: none before the
    /// first retry of a broken connection, else [`RetryPolicy::delay`].
    fn backoff(&self, counted: u32, err: &Error, rand01: f64) -> Duration {
        if counted == 1 && err.wire() == Some(Wire::Broken) {
            return Duration::ZERO;
        }
        self.delay(counted, err.kind(), rand01)
    }

    /// Full-jitter delay before the next probe of an unreachable endpoint, after
    /// `probes` probes.
    pub fn probe_delay(&self, probes: u32, rand01: f64) -> Duration {
        jittered(self.probe_base, probes, self.probe_cap, rand01)
    }
}

/// `min(cap, base × 2^doublings) × rand01`.
fn jittered(base: Duration, doublings: u32, cap: Duration, rand01: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << doublings.min(16));
    exp.min(cap).mul_f64(rand01.clamp(0.0, 1.0))
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

/// After the endpoint answers again, its 5xx answers count as start-up for this
/// long (see [`EndpointGate::observe`]).
const STARTUP_WINDOW: Duration = Duration::from_secs(10);

/// Whether the endpoint answers, shared by every request of one client: a circuit
/// breaker that closes when the endpoint cannot be reached, lets one request at a
/// time probe it while closed, and reopens at the first answer.
pub(crate) struct EndpointGate {
    /// The endpoint as logged: never credentials.
    endpoint: String,
    /// The probe schedule.
    policy: RetryPolicy,
    /// Fast path: false while the endpoint answers, the rule.
    closed: AtomicBool,
    state: Mutex<GateState>,
    /// Wakes waiters when the gate reopens or the probe turn is free.
    changed: Notify,
}

#[derive(Default)]
struct GateState {
    outage: Option<Outage>,
    /// Outages so far: names the one a probe turn belongs to.
    outages: u64,
    /// When the endpoint first answered (anything) after it could not be reached.
    answered_at: Option<Instant>,
    /// A WARN went out for this outage; the INFO on reopening is owed.
    warned: bool,
}

struct Outage {
    id: u64,
    since: Instant,
    reason: &'static str,
    /// A request holds the probe turn.
    probing: bool,
    probes: u32,
    next_probe: Instant,
}

/// What an attempt's outcome says about the endpoint.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// It is down or still starting: the attempt does not count against
    /// `max_retries`; the call waits at the gate.
    Outage,
    /// Anything else: the ordinary rules apply.
    Other,
}

impl EndpointGate {
    pub fn new(endpoint: String, policy: &RetryPolicy) -> EndpointGate {
        EndpointGate {
            endpoint,
            policy: policy.clone(),
            closed: AtomicBool::new(false),
            state: Mutex::new(GateState::default()),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The endpoint as logged (no credentials).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Why the endpoint is unavailable and since how long, while it is.
    pub fn outage(&self) -> Option<(&'static str, Duration)> {
        if !self.closed.load(Ordering::Acquire) {
            return None;
        }
        self.lock()
            .outage
            .as_ref()
            .map(|o| (o.reason, o.since.elapsed()))
    }

    /// Waits until this call may send: at once while the endpoint answers; while
    /// it does not, until it answers again (`None`) or the probe turn is this
    /// call's (`Some`).
    async fn enter(&self) -> Option<Probe<'_>> {
        loop {
            if !self.closed.load(Ordering::Acquire) {
                return None;
            }
            // Registered before the state is read, so no wake-up is missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                match st.outage.as_mut() {
                    None => return None,
                    Some(o) if !o.probing => {
                        o.probing = true;
                        return Some(Probe {
                            gate: self,
                            outage: o.id,
                            at: o.next_probe,
                            sent: false,
                        });
                    }
                    Some(_) => {}
                }
            }
            notified.await;
        }
    }

    /// Reads an attempt's outcome: any answer reopens the gate, a failure to
    /// connect closes it.
    ///
    /// A 5xx is the exception. Servers answer before they are ready: the S3 port
    /// of a restarted SeaweedFS opens when its filer is up, and its GETs answer
    /// 500 InternalError for a moment more, until the volumes are back (MinIO
    /// answers 503 until initialized). Such answers within [`STARTUP_WINDOW`] of
    /// the endpoint's first answer after it could not be reached are the outage
    /// still ending: they keep (or quietly put) the gate closed, so they are probed
    /// one at a time on the probe schedule, paid from the budget, instead of
    /// burning every waiting call's `max_retries` within a few hundred
    /// milliseconds. An answer that is not a 5xx ends that at once; after the
    /// window a 5xx is an ordinary retryable error again, so a server that stays
    /// broken fails calls in `max_retries` attempts as usual.
    fn observe<T>(&self, res: &Result<T>) -> Seen {
        let err = match res {
            Ok(_) if !self.closed.load(Ordering::Acquire) => return Seen::Other,
            Ok(_) => {
                self.reopen();
                return Seen::Other;
            }
            Err(e) => e,
        };
        if let Some(Wire::Unreachable(reason)) = err.wire() {
            self.close(reason, false);
            return Seen::Outage;
        }
        let Some(status) = err.status() else {
            // Broken connections, timeouts, local errors: not an answer, and not
            // proof the endpoint is gone either.
            return Seen::Other;
        };
        if status >= 500 && err.is_retryable() {
            let starting = {
                let mut st = self.lock();
                if st.outage.is_some() && st.answered_at.is_none() {
                    st.answered_at = Some(Instant::now());
                }
                st.answered_at.is_some_and(|t| t.elapsed() < STARTUP_WINDOW)
            };
            if starting {
                self.close("answering 5xx while it starts", true);
                return Seen::Outage;
            }
        }
        self.reopen();
        Seen::Other
    }

    /// Closes the gate (a new outage unless one is on). `quiet` for a server that
    /// answers but is not ready yet: the WARN is for an endpoint that cannot be
    /// reached.
    fn close(&self, reason: &'static str, quiet: bool) {
        let mut st = self.lock();
        if !quiet {
            // Gone again: a later answer starts a new start-up window.
            st.answered_at = None;
        }
        match st.outage.as_mut() {
            Some(o) if !quiet => o.reason = reason,
            Some(_) => {}
            None => {
                let now = Instant::now();
                st.outages += 1;
                st.outage = Some(Outage {
                    id: st.outages,
                    since: now,
                    reason,
                    probing: false,
                    probes: 0,
                    next_probe: now + self.probe_delay(0),
                });
                self.closed.store(true, Ordering::Release);
            }
        }
        if !quiet && !st.warned {
            st.warned = true;
            tracing::warn!(
                "cannot reach {} ({reason}); retrying until it answers or the operation \
                 times out",
                self.endpoint
            );
        }
    }

    fn reopen(&self) {
        let mut st = self.lock();
        let Some(o) = st.outage.take() else { return };
        self.closed.store(false, Ordering::Release);
        st.answered_at.get_or_insert_with(Instant::now);
        if std::mem::take(&mut st.warned) {
            tracing::info!(
                "{} answers again after {:.1} s",
                self.endpoint,
                o.since.elapsed().as_secs_f64()
            );
        }
        drop(st);
        self.changed.notify_waiters();
    }

    fn probe_delay(&self, probes: u32) -> Duration {
        self.policy.probe_delay(probes, rand::random())
    }
}

/// The probe turn while the endpoint is down; handed on when dropped.
struct Probe<'a> {
    gate: &'a EndpointGate,
    /// The outage this turn belongs to.
    outage: u64,
    at: Instant,
    /// A probe went out (rather than the call giving up before sending).
    sent: bool,
}

impl Probe<'_> {
    /// Sleeps until the probe is due, or the gate reopens.
    async fn wait_turn(&self) {
        let notified = self.gate.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.gate.closed.load(Ordering::Acquire) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(self.at) => {}
            _ = notified => {}
        }
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        let mut st = self.gate.lock();
        if let Some(o) = st.outage.as_mut().filter(|o| o.id == self.outage) {
            o.probing = false;
            if self.sent {
                o.probes += 1;
                o.next_probe = Instant::now() + self.gate.probe_delay(o.probes);
            }
        }
        drop(st);
        self.gate.changed.notify_waiters();
    }
}

/// Runs `f` (one attempt per call, given the attempt number from 1) until it
/// succeeds, fails with an error that cannot heal, attempts that count run out,
/// or the budget does. Attempts are sent only through the gate. The returned
/// error carries attempts and elapsed; `Ok` carries attempts made.
pub(crate) async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    budget: &RetryBudget,
    gate: &EndpointGate,
    mut f: F,
) -> Result<(T, u32)>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    // Attempts sent, and failed ones that count against `max_attempts`.
    let (mut sent, mut counted) = (0u32, 0u32);
    // The last failure, and whether the retry after it is paid for already.
    let mut last: Option<Error> = None;
    let mut paid = false;
    loop {
        let mut probe = gate.enter().await;
        if let Some(p) = probe.as_mut() {
            p.wait_turn().await;
            // Probing a dead endpoint is a retry like any other, paid from the
            // budget when it goes out (a call's first attempt never is, as in the
            // SDKs; nor is sending after the gate reopened meanwhile).
            if let Some(e) = last.as_ref().filter(|_| !paid && gate.is_closed()) {
                if !budget.try_spend(e.kind()) {
                    let e = last.take().expect("checked above");
                    return Err(e.with_attempts(sent, start.elapsed()));
                }
            }
            p.sent = true;
        }
        if let Some(e) = &last {
            budget.retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("stor_retries_total", "kind" => e.kind().to_string()).increment(1);
        }
        sent += 1;
        paid = false;
        let res = f(sent).await;
        let seen = gate.observe(&res);
        drop(probe);
        let e = match res {
            Ok(v) => {
                budget.refund();
                return Ok((v, sent));
            }
            Err(e) => e,
        };
        if e.kind() == ErrorKind::Throttled {
            budget.throttled.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("stor_throttled_total").increment(1);
        }
        if seen == Seen::Outage {
            tracing::debug!(attempt = sent, kind = %e.kind(), "endpoint down: {e}");
            last = Some(e);
            continue;
        }
        counted += 1;
        let give_up =
            !e.is_retryable() || counted >= policy.max_attempts || !budget.try_spend(e.kind());
        if give_up {
            return Err(e.with_attempts(sent, start.elapsed()));
        }
        let delay = policy.backoff(counted, &e, rand::random::<f64>());
        tracing::debug!(
            attempt = sent,
            kind = %e.kind(),
            delay_ms = delay.as_millis() as u64,
            "retrying after: {e}"
        );
        tokio::time::sleep(delay).await;
        last = Some(e);
        paid = true;
    }
}

/// The endpoint as the gate logs it: the configured URL without any user:password
/// part, or what the backend is.
pub(crate) fn endpoint_label(endpoint_url: Option<&str>, scheme: &str) -> String {
    let Some(url) = endpoint_url else {
        return match scheme {
            "s3" => "the S3 endpoint".to_owned(),
            other => format!("the {other} store"),
        };
    };
    let (prefix, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = match rest[..end].rfind('@') {
        Some(at) => &rest[at + 1..end],
        None => &rest[..end],
    };
    let path = rest[end..].split(['?', '#']).next().unwrap_or("");
    if prefix.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{prefix}://{host}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    fn gate() -> EndpointGate {
        EndpointGate::new("http://127.0.0.1:9000".into(), &RetryPolicy::new(3))
    }

    fn refused() -> Error {
        Error::new(ErrorKind::Transient, "cannot connect (connection refused)")
            .with_wire(Wire::Unreachable("connection refused"))
    }

    fn reset() -> Error {
        Error::new(ErrorKind::Transient, "connection reset by peer").with_wire(Wire::Broken)
    }

    /// An endpoint in virtual time: cannot be reached until `up_at` (refuses in
    /// 1 ms), then answers in 10 ms. Counts what is sent, and how many of the
    /// attempts after the first `wave` were in flight together while it was down.
    struct Server {
        up_at: Instant,
        wave: u32,
        sent: AtomicU32,
        sent_while_down: AtomicU32,
        probes_in_flight: AtomicU32,
        peak_probes: AtomicU32,
    }

    impl Server {
        fn down_for(d: Duration, wave: u32) -> Arc<Server> {
            Arc::new(Server {
                up_at: Instant::now() + d,
                wave,
                sent: AtomicU32::new(0),
                sent_while_down: AtomicU32::new(0),
                probes_in_flight: AtomicU32::new(0),
                peak_probes: AtomicU32::new(0),
            })
        }

        /// Attempts sent while down after the first wave.
        fn probes(&self) -> u32 {
            self.sent_while_down.load(Ordering::SeqCst) - self.wave
        }

        async fn call(&self) -> Result<()> {
            let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
            if Instant::now() >= self.up_at {
                tokio::time::sleep(Duration::from_millis(10)).await;
                return Ok(());
            }
            self.sent_while_down.fetch_add(1, Ordering::SeqCst);
            let probe = n > self.wave;
            if probe {
                let now = self.probes_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak_probes.fetch_max(now, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            if probe {
                self.probes_in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Err(refused())
        }
    }

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
        // Probes of a dead endpoint: 200 ms doubling, capped at 4 s.
        assert_eq!(p.probe_delay(0, 1.0), Duration::from_millis(200));
        assert_eq!(p.probe_delay(2, 1.0), Duration::from_millis(800));
        assert_eq!(p.probe_delay(40, 1.0), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_up_to_max_attempts() {
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        let calls = AtomicU32::new(0);
        let err = with_retry(&p, &b, &gate(), |_| async {
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
            let err = with_retry(&p, &b, &gate(), |_| async {
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
        let (v, attempts) = with_retry(&p, &b, &gate(), |n| async move {
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
        let err = with_retry(&p, &b, &gate(), |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::s3(Some("SlowDown"), Some(503), None))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(err.kind(), ErrorKind::Throttled);
        assert_eq!(b.available(), 2);
    }

    /// A server restart: refused for 20 s, far more attempts than `max_retries`,
    /// and the call succeeds once it answers, noticed within one probe interval.
    #[tokio::test(start_paused = true)]
    async fn connect_failures_are_retried_past_max_attempts_until_it_answers() {
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        let g = gate();
        let server = Server::down_for(Duration::from_secs(20), 1);
        let (_, attempts) = with_retry(&p, &b, &g, |_| server.call()).await.unwrap();
        assert!(attempts > 3, "{attempts} attempts");
        assert_eq!(attempts, server.sent.load(Ordering::SeqCst));
        assert!(
            server.up_at.elapsed() <= p.probe_cap + Duration::from_millis(20),
            "noticed {:?} after it came back",
            server.up_at.elapsed()
        );
        // It answers again: the gate is open.
        assert!(g.outage().is_none());
    }

    /// Never answering: the call keeps trying until the operation's deadline, not
    /// `max_retries`, and no faster than the probe schedule.
    #[tokio::test(start_paused = true)]
    async fn connect_failures_are_retried_until_the_deadline() {
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        let g = gate();
        let server = Server::down_for(Duration::from_secs(3600), 1);
        let res = tokio::time::timeout(
            Duration::from_secs(60),
            with_retry(&p, &b, &g, |_| server.call()),
        )
        .await;
        assert!(res.is_err(), "still retrying at the deadline: {res:?}");
        let sent = server.sent.load(Ordering::SeqCst);
        // 60 s of probes 200 ms doubling up to 4 s, full jitter: ~30 on average.
        assert!((4..=150).contains(&sent), "{sent} attempts in 60 s");
        assert_eq!(b.available(), 500 - 5 * (sent - 1));
        let (reason, since) = g.outage().unwrap();
        assert_eq!(reason, "connection refused");
        assert!(since > Duration::from_secs(59), "{since:?}");
    }

    /// 50 calls in flight when the endpoint goes away for 20 s: after the first
    /// wave fails, one request at a time probes it; the others send nothing and
    /// spend no budget; all succeed.
    #[tokio::test(start_paused = true)]
    async fn while_down_one_request_at_a_time_probes() {
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        let g = gate();
        let server = Server::down_for(Duration::from_secs(20), 50);
        let calls = (0..50).map(|_| with_retry(&p, &b, &g, |_| server.call()));
        let results = futures::future::join_all(calls).await;
        assert!(results.iter().all(|r| r.is_ok()));
        let probes = server.probes();
        assert!(
            (1..=40).contains(&probes),
            "{probes} probes in a 20 s outage"
        );
        assert_eq!(server.peak_probes.load(Ordering::SeqCst), 1);
        assert_eq!(
            b.available(),
            (500 + 50 - 5 * (probes + 1)).min(500),
            "only the probes, and the one that found it back, were paid for (50 \
             successes refund 1 each)"
        );
    }

    /// The first answer wakes every waiting call at once: none sits out its own
    /// backoff after the endpoint is back.
    #[tokio::test(start_paused = true)]
    async fn reopening_wakes_every_waiter() {
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        let g = gate();
        let server = Server::down_for(Duration::from_secs(20), 50);
        let finished = Mutex::new(Vec::new());
        let calls = (0..50).map(|_| async {
            with_retry(&p, &b, &g, |_| server.call()).await.unwrap();
            finished.lock().unwrap().push(Instant::now());
        });
        futures::future::join_all(calls).await;
        let finished = finished.into_inner().unwrap();
        let first = *finished.iter().min().unwrap();
        let last = *finished.iter().max().unwrap();
        // The prober's answer takes 10 ms; the others, woken by it, 10 ms more.
        assert!(
            last - first <= Duration::from_millis(10),
            "the last call finished {:?} after the first",
            last - first
        );
        // The wave, the probes, the one that found it back, and the 49 others once.
        assert_eq!(
            server.sent.load(Ordering::SeqCst),
            50 + server.probes() + 50
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_is_retried_at_once_and_counts() {
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        for _ in 0..20 {
            let at = Mutex::new(Vec::new());
            let (_, attempts) = with_retry(&p, &b, &gate(), |n| {
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
        let err = with_retry(&p, &b, &gate(), |_| async { Err::<(), _>(reset()) })
            .await
            .unwrap_err();
        assert_eq!(err.attempts(), 3);
    }

    /// The budget still protects a dead endpoint: one call stops when it is dry,
    /// and a crowd costs its first wave plus what the budget pays for.
    #[tokio::test(start_paused = true)]
    async fn the_budget_still_bounds_a_dead_endpoint() {
        let p = RetryPolicy::new(3);
        let (b, g) = (RetryBudget::new(50), gate()); // ten retries' worth
        let server = Server::down_for(Duration::from_secs(3600), 1);
        let err = with_retry(&p, &b, &g, |_| server.call()).await.unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        assert_eq!(err.attempts(), 11, "one attempt and ten paid probes");
        let (b, g) = (RetryBudget::new(50), gate());
        let server = Server::down_for(Duration::from_secs(3600), 50);
        let calls = (0..50).map(|_| with_retry(&p, &b, &g, |_| server.call()));
        let results = futures::future::join_all(calls).await;
        assert!(results.iter().all(|r| r.is_err()));
        assert_eq!(server.sent.load(Ordering::SeqCst), 50 + 10);
    }

    /// After the endpoint could not be reached, its 5xx answers are start-up
    /// (SeaweedFS answers 500 for a moment after its port opens): ridden out, not
    /// counted against max_retries. Outside that window a 5xx counts again.
    #[tokio::test(start_paused = true)]
    async fn start_up_5xx_after_an_outage_are_ridden_out() {
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        let g = gate();
        let (_, attempts) = with_retry(&p, &b, &g, |n| async move {
            match n {
                1..=3 => Err(refused()),
                4..=7 => Err(Error::s3(Some("InternalError"), Some(500), None)),
                8 => Err(Error::s3(Some("SlowDown"), Some(503), None)),
                _ => Ok(()),
            }
        })
        .await
        .unwrap();
        assert_eq!(attempts, 9);
        tokio::time::sleep(STARTUP_WINDOW).await;
        let err = with_retry(&p, &b, &g, |_| async {
            Err::<(), _>(Error::s3(Some("InternalError"), Some(500), None))
        })
        .await
        .unwrap_err();
        assert_eq!(err.attempts(), 3, "{err}");
        assert!(g.outage().is_none(), "a server that answers is up");
    }

    /// One WARN when the endpoint goes away, one INFO when it is back, however
    /// many calls saw it; the endpoint named without its credentials.
    #[tokio::test(start_paused = true)]
    async fn logs_the_outage_once_without_credentials() {
        #[derive(Clone, Default)]
        struct Log(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Log {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // With one subscriber in the process, tracing computes the interest of a
        // log line first reached on another thread (other tests run these too)
        // from that thread's subscriber, none, and caches "never". A second
        // registered subscriber makes it ask every one, this test's included.
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let log = Log::default();
        let writer = log.clone();
        let _guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_max_level(tracing::Level::INFO)
                .with_ansi(false)
                .finish(),
        );
        let p = RetryPolicy::new(3);
        let b = RetryBudget::new(500);
        let label = endpoint_label(Some("http://AKIASECRET:hush@127.0.0.1:9000/"), "s3");
        let g = EndpointGate::new(label, &p);
        let server = Server::down_for(Duration::from_secs(5), 10);
        let calls = (0..10).map(|_| with_retry(&p, &b, &g, |_| server.call()));
        futures::future::join_all(calls).await;
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("WARN"), "{text}");
        assert!(
            lines[0].contains(
                "cannot reach http://127.0.0.1:9000/ (connection refused); retrying until it \
                 answers or the operation times out"
            ),
            "{text}"
        );
        assert!(lines[1].contains("INFO"), "{text}");
        assert!(
            lines[1].contains("http://127.0.0.1:9000/ answers again after"),
            "{text}"
        );
        assert!(!text.contains("AKIA") && !text.contains("hush"), "{text}");
    }

    #[test]
    fn endpoint_labels_leave_credentials_out() {
        assert_eq!(
            endpoint_label(Some("https://user:pw@minio.local:9000/base?x=1"), "s3"),
            "https://minio.local:9000/base"
        );
        assert_eq!(
            endpoint_label(Some("http://127.0.0.1:8333"), "s3"),
            "http://127.0.0.1:8333"
        );
        assert_eq!(endpoint_label(None, "s3"), "the S3 endpoint");
    }
}
