//! The agent's decision lines, kept off the instance (issue 35): the journal goes with the
//! instance's root volume, so the lines that say what the agent decided and why are also sent
//! to a CloudWatch Logs group (`[decision_log]`), where `cloud/cm logs` reads them.
//!
//! - [`Layer`] is a tracing layer installed with the log output. It copies the lines worth
//!   keeping into one bounded queue: every line of this crate with an `event` field at INFO
//!   (the decisions and what was done), except the ones logged on every sample
//!   ([`EVERY_SAMPLE`]), and every warning and error of this crate. It never blocks and never
//!   allocates more than [`QUEUE_MAX`] lines: past that, the oldest are dropped and counted.
//! - [`start`] runs the shipper: every interval it sends what was gathered in one call
//!   ([`DecisionLog::put`]); a failed call keeps the lines for the next one. [`Shipper::finish`]
//!   sends what is left at the agent's end, within a bound.
//! - Without `[decision_log]`, [`Kept::discard`] closes the queue: nothing is kept.
//!
//! The shipper's own warnings are not copied (they would feed themselves).

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber, warn};

use crate::aws::{AwsError, DecisionLog};

/// One line as it is kept (the adapters' side, `crate::aws`, defines it).
pub use crate::aws::DecisionLine as Line;

/// At most this many lines wait to be sent; past that the oldest are dropped (an hour of a
/// busy agent that cannot reach CloudWatch is about 200).
pub const QUEUE_MAX: usize = 5_000;

/// A line longer than this is cut (a crash's log tail is in its own alert).
pub const LINE_MAX: usize = 2_048;

/// The events logged on every sample or metrics interval: the journal has them, the decisions
/// they lead to are kept.
pub const EVERY_SAMPLE: &[&str] = &[
    "sample",
    "idle_countdown",
    "metrics_published",
    "lifecycle_heartbeat",
];

/// The crate whose lines are kept (the SDK's and hyper's are not).
const CRATE: &str = env!("CARGO_CRATE_NAME");

#[derive(Debug)]
struct Queue {
    lines: VecDeque<Line>,
    dropped: u64,
    /// `false` once it is known that nothing will send the lines.
    open: bool,
}

/// The lines waiting to be sent: one per process ([`KEPT`]), filled by [`Layer`] and emptied by
/// the shipper.
#[derive(Debug)]
pub struct Kept(Mutex<Queue>);

/// The process's queue, the one [`Layer`] fills.
pub static KEPT: Kept = Kept::new();

impl Kept {
    pub const fn new() -> Self {
        Self(Mutex::new(Queue {
            lines: VecDeque::new(),
            dropped: 0,
            open: true,
        }))
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves a queue that is still a valid queue.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_open(&self) -> bool {
        self.queue().open
    }

    /// Adds a line; past [`QUEUE_MAX`] the oldest is dropped and counted.
    pub fn push(&self, line: Line) {
        let mut q = self.queue();
        if !q.open {
            return;
        }
        if q.lines.len() >= QUEUE_MAX {
            q.lines.pop_front();
            q.dropped += 1;
        }
        q.lines.push_back(line);
    }

    /// Takes everything waiting, and how many lines were dropped since the last take.
    fn take(&self) -> (Vec<Line>, u64) {
        let mut q = self.queue();
        let dropped = std::mem::take(&mut q.dropped);
        (q.lines.drain(..).collect(), dropped)
    }

    /// Puts lines that could not be sent back in front of the queue, within its bound.
    fn put_back(&self, lines: Vec<Line>) {
        let mut q = self.queue();
        let room = QUEUE_MAX.saturating_sub(q.lines.len());
        let skip = lines.len().saturating_sub(room);
        q.dropped += skip as u64;
        for line in lines.into_iter().skip(skip).rev() {
            q.lines.push_front(line);
        }
    }

    /// Nothing will send the lines (no `[decision_log]`, or the shipper has ended): stop
    /// keeping them.
    pub fn discard(&self) {
        let mut q = self.queue();
        q.open = false;
        q.lines = VecDeque::new();
        q.dropped = 0;
    }

    /// How many lines wait.
    pub fn len(&self) -> usize {
        self.queue().lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Kept {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a line is kept, from its level, target and `event` field.
pub fn wanted(level: Level, target: &str, event: Option<&str>) -> bool {
    // On every event: no allocation.
    let ours = target
        .strip_prefix(CRATE)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
    if !ours || target.starts_with(module_path!()) {
        return false;
    }
    level <= Level::WARN
        || (level == Level::INFO && event.is_some_and(|e| !EVERY_SAMPLE.contains(&e)))
}

/// The tracing layer that copies the kept lines into the queue.
#[derive(Debug, Default, Clone, Copy)]
pub struct Layer;

impl<S: Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::INFO || !KEPT.is_open() {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if !wanted(*meta.level(), meta.target(), fields.event.as_deref()) {
            return;
        }
        KEPT.push(Line {
            at: SystemTime::now(),
            text: fields.text(*meta.level()),
        });
    }
}

#[derive(Debug, Default)]
struct Fields {
    event: Option<String>,
    message: String,
    rest: String,
}

impl Fields {
    fn text(self, level: Level) -> String {
        let mut out = format!("{level}");
        if let Some(e) = &self.event {
            let _ = write!(out, " {e}:");
        }
        let _ = write!(out, " {}{}", self.message, self.rest);
        if out.len() > LINE_MAX {
            let mut cut = LINE_MAX;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
        }
        out
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "event" => self.event = Some(value.to_string()),
            "message" => self.message = value.to_string(),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "event" => self.event = Some(format!("{value:?}")),
            "message" => self.message = format!("{value:?}"),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

/// The running shipper.
#[derive(Debug)]
pub struct Shipper {
    stop: oneshot::Sender<Duration>,
    task: JoinHandle<()>,
}

/// Starts sending the lines kept in `kept` (the process's: [`KEPT`]) to `log` every `interval`.
pub fn start(kept: &'static Kept, log: Arc<dyn DecisionLog>, interval: Duration) -> Shipper {
    let (stop, mut stopped) = oneshot::channel::<Duration>();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failing = Failing::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if failing.waiting(Instant::now()) {
                        continue;
                    }
                    let result = send(kept, log.as_ref()).await;
                    failing.after(result, Instant::now(), interval);
                }
                bound = &mut stopped => {
                    // The end: what is left goes out within the bound, failure or not.
                    let bound = bound.unwrap_or(Duration::ZERO);
                    if tokio::time::timeout(bound, send(kept, log.as_ref())).await.is_err() {
                        warn!(bound_s = bound.as_secs(), "The last decision lines were not sent in time; the journal keeps them.");
                    }
                    kept.discard();
                    return;
                }
            }
        }
    });
    Shipper { stop, task }
}

impl Shipper {
    /// Sends what is left, within `bound`, and stops.
    pub async fn finish(self, bound: Duration) {
        let _ = self.stop.send(bound);
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!(error = %e, "The decision-line shipper panicked.");
        }
    }
}

/// After a failure, calls wait: the interval doubled per failure in a row, up to 5 minutes.
#[derive(Debug, Default)]
struct Failing {
    in_a_row: u32,
    until: Option<Instant>,
    told: bool,
}

const MAX_WAIT: Duration = Duration::from_secs(300);

impl Failing {
    fn waiting(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    fn after(&mut self, result: Result<usize, AwsError>, now: Instant, interval: Duration) {
        match result {
            Ok(_) => {
                if self.in_a_row > 0 {
                    tracing::info!(
                        failed_calls = self.in_a_row,
                        "The decision lines are reaching CloudWatch Logs again."
                    );
                }
                *self = Self::default();
            }
            Err(e) => {
                self.in_a_row += 1;
                let wait = interval
                    .saturating_mul(1 << self.in_a_row.min(10))
                    .min(MAX_WAIT);
                self.until = Some(now + wait);
                // Said once per run of failures; the lines wait in the queue meanwhile.
                if !self.told {
                    self.told = true;
                    let fix = e.permanent().unwrap_or_default();
                    warn!(error = %e, retry_in_s = wait.as_secs(), "Cannot send the decision lines to CloudWatch Logs; they wait (the journal has them). {fix}");
                }
            }
        }
    }
}

/// Sends everything waiting, in calls of at most [`BATCH`] lines. The lines of a failed call
/// (and the ones after it) go back in the queue. Returns how many were sent.
async fn send(kept: &Kept, log: &dyn DecisionLog) -> Result<usize, AwsError> {
    let (mut lines, dropped) = kept.take();
    if dropped > 0 {
        let at = lines.first().map_or_else(SystemTime::now, |l| l.at);
        lines.insert(
            0,
            Line {
                at,
                text: format!("WARN {dropped} decision line(s) were dropped here: more waited than the queue holds ({QUEUE_MAX})"),
            },
        );
    }
    let mut sent = 0;
    while !lines.is_empty() {
        let rest = lines.split_off(lines.len().min(BATCH));
        match log.put(&lines).await {
            Ok(()) => sent += lines.len(),
            Err(e) => {
                lines.extend(rest);
                kept.put_back(lines);
                return Err(e);
            }
        }
        lines = rest;
    }
    Ok(sent)
}

/// Lines per PutLogEvents call (the service takes up to 10,000 events and 1 MiB; 500 lines of
/// at most [`LINE_MAX`] bytes stay under both).
pub const BATCH: usize = 400;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_warnings_and_errors_are_kept_samples_and_other_crates_are_not() {
        let ours = format!("{CRATE}::run::executor");
        assert!(wanted(Level::INFO, &ours, Some("scale_in_requested")));
        assert!(wanted(Level::INFO, CRATE, Some("agent_started")));
        assert!(wanted(Level::WARN, &ours, None));
        assert!(wanted(Level::ERROR, &ours, None));
        assert!(
            !wanted(Level::INFO, &ours, None),
            "an INFO without an event"
        );
        for every in EVERY_SAMPLE {
            assert!(!wanted(Level::INFO, &ours, Some(every)), "{every}");
        }
        assert!(
            wanted(Level::WARN, &ours, Some("sample")),
            "a sample that could not count"
        );
        assert!(!wanted(Level::DEBUG, &ours, Some("scale_in_requested")));
        assert!(!wanted(Level::WARN, "aws_smithy_runtime::client", None));
        assert!(!wanted(Level::WARN, "hyper_util", None));
        assert!(
            !wanted(Level::WARN, module_path!(), None),
            "the shipper's own"
        );
        assert!(!wanted(Level::WARN, &format!("{CRATE}x"), None));
    }

    #[test]
    fn a_line_reads_level_event_message_then_fields_and_is_cut_at_the_bound() {
        let f = Fields {
            event: Some("scale_in_requested".into()),
            message: "Scaling in.".into(),
            rest: " reason=idle players=0".into(),
        };
        assert_eq!(
            f.text(Level::INFO),
            "INFO scale_in_requested: Scaling in. reason=idle players=0"
        );
        let long = Fields {
            message: "é".repeat(LINE_MAX),
            ..Fields::default()
        };
        let t = long.text(Level::WARN);
        assert!(
            t.len() <= LINE_MAX + '…'.len_utf8() && t.ends_with('…'),
            "{}",
            t.len()
        );
    }

    /// A fake CloudWatch Logs that fails its first `fail` calls and records the rest.
    #[derive(Debug, Default)]
    struct Fake {
        fail: std::sync::atomic::AtomicUsize,
        calls: Mutex<Vec<Vec<String>>>,
    }

    #[async_trait::async_trait]
    impl DecisionLog for Fake {
        async fn put(&self, lines: &[Line]) -> Result<(), AwsError> {
            use std::sync::atomic::Ordering;
            if self.fail.load(Ordering::SeqCst) > 0 {
                self.fail.fetch_sub(1, Ordering::SeqCst);
                return Err(AwsError::Invalid("down".into()));
            }
            let texts = lines.iter().map(|l| l.text.clone()).collect();
            self.calls.lock().unwrap().push(texts);
            Ok(())
        }
    }

    fn line(i: usize) -> Line {
        Line {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(i as u64),
            text: format!("INFO e: {i}"),
        }
    }

    #[tokio::test]
    async fn a_failed_call_keeps_the_lines_in_order_and_an_overflow_is_told() {
        let kept = Kept::new();
        for i in 0..(BATCH + 5) {
            kept.push(line(i));
        }
        let log = Fake::default();
        log.fail.store(1, std::sync::atomic::Ordering::SeqCst);
        assert!(send(&kept, &log).await.is_err());
        assert_eq!(kept.len(), BATCH + 5, "nothing lost");
        kept.push(line(BATCH + 5));
        assert_eq!(send(&kept, &log).await.unwrap(), BATCH + 6);
        let calls = log.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2, "in batches of {BATCH}");
        let all: Vec<String> = calls.concat();
        let want: Vec<String> = (0..BATCH + 6).map(|i| line(i).text).collect();
        assert_eq!(all, want, "every line once, in order");
        assert!(kept.is_empty());

        // More than the queue holds: the oldest go, and the first line sent says how many.
        for i in 0..QUEUE_MAX + 3 {
            kept.push(line(i));
        }
        assert_eq!(kept.len(), QUEUE_MAX);
        log.calls.lock().unwrap().clear();
        send(&kept, &log).await.unwrap();
        let all = log.calls.lock().unwrap().concat();
        assert!(
            all[0].contains("3 decision line(s) were dropped"),
            "{}",
            all[0]
        );
        assert_eq!(all[1], line(3).text);
        assert_eq!(all.len(), QUEUE_MAX + 1);

        // Closed: nothing is kept.
        kept.discard();
        kept.push(line(0));
        assert!(kept.is_empty());
    }

    #[tokio::test]
    async fn the_shipper_sends_on_its_interval_and_what_is_left_at_the_end() {
        let kept: &'static Kept = Box::leak(Box::new(Kept::new()));
        let log = Arc::new(Fake::default());
        kept.push(line(1));
        let shipper = start(kept, log.clone(), Duration::from_millis(50));
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.calls.lock().unwrap().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        kept.push(line(2));
        shipper.finish(Duration::from_secs(2)).await;
        let all = log.calls.lock().unwrap().concat();
        assert_eq!(all, vec![line(1).text, line(2).text]);
        kept.push(line(3));
        assert!(kept.is_empty(), "after the end nothing is kept");
    }

    #[test]
    fn failures_wait_longer_each_time_up_to_five_minutes_and_a_success_resets() {
        let now = Instant::now();
        let mut f = Failing::default();
        let err = || AwsError::Invalid("down".into());
        f.after(Err(err()), now, Duration::from_secs(5));
        assert!(f.waiting(now + Duration::from_secs(9)));
        assert!(!f.waiting(now + Duration::from_secs(10)));
        for _ in 0..20 {
            f.after(Err(err()), now, Duration::from_secs(5));
        }
        assert!(f.waiting(now + Duration::from_secs(299)));
        assert!(!f.waiting(now + MAX_WAIT));
        f.after(Ok(1), now, Duration::from_secs(5));
        assert!(!f.waiting(now) && f.in_a_row == 0);
    }
}
