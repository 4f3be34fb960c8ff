//! Retrying a call: capped exponential backoff, a bound per attempt, and cancellation. Used
//! by the run loop's executor and by the AWS adapters at boot.

use std::fmt;
use std::time::Duration;

use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

/// Each attempt of an AWS or Docker call is bounded by this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Capped exponential backoff: 0.5 s, 1 s, 2 s ... up to 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.min(10));
    Duration::from_millis(ms.min(30_000))
}

/// Retries `call` until it succeeds, `max_attempts` is reached, or `cancel` fires.
/// `on_failure` sees each failure with its attempt number (1-based). Each attempt is bounded
/// by [`CALL_TIMEOUT`].
pub async fn retry<T, E, F, Fut>(
    what: &str,
    max_attempts: Option<u32>,
    cancel: &CancellationToken,
    on_failure: impl FnMut(u32, &str),
    call: F,
) -> Option<T>
where
    E: fmt::Display,
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
    mut on_failure: impl FnMut(u32, &str),
    mut call: F,
) -> Option<T>
where
    E: fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        let outcome = tokio::select! {
            () = cancel.cancelled() => return None,
            r = timeout(per_attempt, call()) => r,
        };
        let reason = match outcome {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {per_attempt:?}"),
        };
        attempt += 1;
        on_failure(attempt, &reason);
        let wait = backoff(attempt - 1);
        warn!(what, attempt, error = %reason, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "Call failed; retrying.");
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
