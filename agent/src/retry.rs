//! Retrying a call: capped exponential backoff, a bound per attempt, and cancellation. Used
//! by the run loop's executor and by the AWS adapters at boot.
//!
//! Errors come in two kinds ([`Failure::permanent`]). A transient one (throttling, a 5xx, a
//! timeout, a network that is down) is retried with the capped backoff. A permanent one (AWS
//! denies the call, or rejects a name from the config) cannot be fixed by retrying: a bounded
//! retry gives up at once, and an unbounded one (a call that must happen) tries again only
//! every [`PERMANENT_RETRY`], so that the operator's fix is picked up without a restart.

use std::fmt;
use std::time::Duration;

use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

/// Each attempt of an AWS or Docker call is bounded by this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a must-happen call that failed permanently waits before its next attempt.
pub const PERMANENT_RETRY: Duration = Duration::from_secs(300);

/// An error as the retry loop sees it.
pub trait Failure: fmt::Display {
    /// `Some(fix)`, what the operator must change, when retrying cannot help.
    fn permanent(&self) -> Option<String> {
        None
    }
}

/// One failed attempt, as `on_failure` sees it.
#[derive(Debug, Clone, Copy)]
pub struct Failed<'a> {
    /// 1-based.
    pub attempt: u32,
    pub reason: &'a str,
    /// What the operator must change, for a permanent error.
    pub fix: Option<&'a str>,
}

/// Capped exponential backoff: 0.5 s, 1 s, 2 s ... up to 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.min(10));
    Duration::from_millis(ms.min(30_000))
}

/// Retries `call` until it succeeds, `max_attempts` is reached, or `cancel` fires; a bounded
/// retry also ends at the first permanent error. `on_failure` sees each failure. Each attempt
/// is bounded by [`CALL_TIMEOUT`].
pub async fn retry<T, E, F, Fut>(
    what: &str,
    max_attempts: Option<u32>,
    cancel: &CancellationToken,
    on_failure: impl FnMut(&Failed<'_>),
    call: F,
) -> Option<T>
where
    E: Failure,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_within(what, CALL_TIMEOUT, max_attempts, cancel, on_failure, call).await
}

/// [`retry`] with another bound per attempt, for calls that legitimately take long (the
/// graceful stop waits for the game to save and exit).
pub async fn retry_within<T, E, F, Fut>(
    what: &str,
    per_attempt: Duration,
    max_attempts: Option<u32>,
    cancel: &CancellationToken,
    mut on_failure: impl FnMut(&Failed<'_>),
    mut call: F,
) -> Option<T>
where
    E: Failure,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        let outcome = tokio::select! {
            () = cancel.cancelled() => return None,
            r = timeout(per_attempt, call()) => r,
        };
        let (reason, fix) = match outcome {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => (e.to_string(), e.permanent()),
            Err(_) => (format!("no answer within {per_attempt:?}"), None),
        };
        attempt += 1;
        on_failure(&Failed {
            attempt,
            reason: &reason,
            fix: fix.as_deref(),
        });
        let wait = match &fix {
            Some(fix) if max_attempts.is_some() => {
                error!(what, attempt, error = %reason, fix = %fix, "Call refused; retrying cannot fix it, giving up.");
                return None;
            }
            Some(fix) => {
                let wait = PERMANENT_RETRY;
                error!(what, attempt, error = %reason, fix = %fix, retry_in_s = wait.as_secs(), "Call refused; retrying cannot fix it, trying again slowly.");
                wait
            }
            None => {
                let wait = backoff(attempt - 1);
                warn!(what, attempt, error = %reason, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "Call failed; retrying.");
                wait
            }
        };
        if max_attempts.is_some_and(|m| attempt >= m) {
            error!(what, attempt, error = %reason, "Giving up.");
            return None;
        }
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct E(Option<&'static str>);

    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(if self.0.is_some() {
                "denied"
            } else {
                "throttled"
            })
        }
    }

    impl Failure for E {
        fn permanent(&self) -> Option<String> {
            self.0.map(str::to_string)
        }
    }

    /// Calls `retry` for `run` of virtual time with a call that always fails with `err`, and
    /// returns how many attempts were made and the failures `on_failure` saw.
    async fn attempts(
        err: Option<&'static str>,
        max: Option<u32>,
        run: Duration,
    ) -> (u32, Vec<(u32, Option<String>)>) {
        let calls = AtomicU32::new(0);
        let mut seen = vec![];
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            sleep(run).await;
            c2.cancel();
        });
        let r: Option<()> = retry(
            "test",
            max,
            &cancel,
            |f| seen.push((f.attempt, f.fix.map(str::to_string))),
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { Err::<(), _>(E(err)) }
            },
        )
        .await;
        assert!(r.is_none());
        (calls.load(Ordering::SeqCst), seen)
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_is_retried_every_five_minutes_not_with_the_backoff() {
        let (n, seen) = attempts(Some("allow x:Y"), None, Duration::from_secs(3599)).await;
        // At 0, 5, 10 ... 55 minutes: 12 attempts in the hour.
        assert_eq!(n, 12);
        assert!(
            seen.iter()
                .all(|(_, fix)| fix.as_deref() == Some("allow x:Y"))
        );
        // A transient one keeps the backoff: 0.5 s, 1 s ... capped at 30 s, so many more.
        let (n, seen) = attempts(None, None, Duration::from_secs(3599)).await;
        assert!(n > 100, "{n}");
        assert!(seen.iter().all(|(_, fix)| fix.is_none()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounded_retry_gives_up_at_the_first_permanent_error() {
        let (n, _) = attempts(Some("allow x:Y"), Some(5), Duration::from_secs(3600)).await;
        assert_eq!(n, 1);
        let (n, _) = attempts(None, Some(5), Duration::from_secs(3600)).await;
        assert_eq!(n, 5);
    }
}
