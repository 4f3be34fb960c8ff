//! Notifications: one message model ([`message`]) and several sinks (SNS, and webhooks for
//! Discord, Slack or any JSON receiver in [`webhook`]).
//!
//! Sending runs apart from the run loop. [`Notifier::notify`] never waits: it hands the event
//! to the dispatcher task, which builds the message once and queues it for each sink that
//! wants the event. Each sink has its own worker and a bounded queue, so a slow or hanging
//! endpoint costs nothing but its own bounded attempts ([`Delivery`]): a decision, a save, a
//! scale-in or a lifecycle completion never waits for a notification. A message that cannot
//! be delivered is dropped with a WARN line, never queued without bound.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::aws::{AlertMessage, Alerts};
use crate::decide::{Alert, EventKind};

pub mod http;
pub mod message;
pub mod webhook;

pub use message::{Context, Message};

/// Why one attempt to send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth another attempt, after `after` if the receiver said so (HTTP 429).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Another attempt would fail the same way (HTTP 400, no URL): drop the message.
    Drop { reason: String },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retry { reason, .. } | Self::Drop { reason } => f.write_str(reason),
        }
    }
}

/// Somewhere notifications go. `send` is one attempt; the worker retries.
#[async_trait]
pub trait Sink: Send + Sync + fmt::Debug {
    /// A name for log lines, never the URL (`sns`, `discord[0]`).
    fn label(&self) -> String;
    fn wants(&self, kind: EventKind) -> bool;
    async fn send(&self, message: &Message) -> Result<(), SendError>;
    /// How hard this sink's messages are tried; the default is the notifier's.
    fn delivery(&self, default: &Delivery) -> Delivery {
        default.clone()
    }
}

/// The SNS topic as a sink: a subject and a plain-text body, for e-mail and SMS.
#[derive(Debug)]
pub struct SnsSink {
    alerts: Arc<dyn Alerts>,
    events: Vec<EventKind>,
}

impl SnsSink {
    pub fn new(alerts: Arc<dyn Alerts>, events: Vec<EventKind>) -> Self {
        Self { alerts, events }
    }
}

#[async_trait]
impl Sink for SnsSink {
    fn label(&self) -> String {
        "sns".into()
    }

    fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }

    /// The operator's channel rides out an AWS outage: more attempts (about 2 minutes in all),
    /// still bounded.
    fn delivery(&self, default: &Delivery) -> Delivery {
        Delivery {
            attempts: default.attempts.max(8),
            ..default.clone()
        }
    }

    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let (subject, body) = message.sns();
        self.alerts
            .send(&AlertMessage { subject, body })
            .await
            .map_err(|e| SendError::Retry {
                reason: e.to_string(),
                after: None,
            })
    }
}

/// The longest wait between two attempts (without a receiver's own `retry_after`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How hard each message is tried.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Attempts per message.
    pub attempts: u32,
    /// Each attempt is bounded by this.
    pub attempt_timeout: Duration,
    /// The wait after the first failed attempt; doubled after each.
    pub backoff: Duration,
    /// A receiver asking for a longer wait than this (HTTP 429) gets the message dropped.
    pub max_wait: Duration,
    /// Messages waiting per sink; more are dropped.
    pub queue: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            attempts: 4,
            attempt_timeout: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
            queue: 16,
        }
    }
}

/// What the dispatcher is set up with.
#[derive(Debug, Clone)]
pub struct Options {
    pub context: Context,
    /// At most one `players` notification per this long; the latest count wins.
    pub players_every: Duration,
    pub delivery: Delivery,
    /// Log what would be sent instead of sending.
    pub dry_run: bool,
}

/// The handle the run loop holds. Cheap to clone; [`Notifier::notify`] never waits.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Alert>,
}

/// The dispatcher and its sink workers; [`Running::finish`] lets queued messages go out
/// within a bound.
#[derive(Debug)]
pub struct Running {
    close: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the dispatcher and one worker per sink.
pub fn start(sinks: Vec<Arc<dyn Sink>>, options: Options) -> (Notifier, Running) {
    let (tx, rx) = mpsc::channel(64);
    let close = CancellationToken::new();
    let task = tokio::spawn(dispatch(rx, sinks, options, close.clone()));
    (Notifier { tx }, Running { close, task })
}

impl Notifier {
    /// Hands an event to the dispatcher; never waits. A full queue drops it with a WARN.
    pub fn notify(&self, alert: Alert) {
        let kind = alert.kind().as_str();
        if let Err(e) = self.tx.try_send(alert) {
            warn!(
                event = "alert_dropped",
                alert = kind,
                reason = %e,
                "Notification dropped: the notifier is not keeping up."
            );
        }
    }
}

impl Running {
    /// Stops taking new events, sends what is queued, and gives up after `within`.
    pub async fn finish(self, within: Duration) {
        self.close.cancel();
        let mut task = self.task;
        if timeout(within, &mut task).await.is_err() {
            warn!(
                event = "alert_dropped",
                "Notifications still being sent at the agent's end were dropped."
            );
            task.abort();
        }
    }
}

/// A sink and its worker's queue.
type Queue = (Arc<dyn Sink>, mpsc::Sender<Arc<Message>>);

async fn dispatch(
    mut rx: mpsc::Receiver<Alert>,
    sinks: Vec<Arc<dyn Sink>>,
    options: Options,
    close: CancellationToken,
) {
    let mut workers = JoinSet::new();
    let queues: Vec<Queue> = sinks
        .into_iter()
        .map(|sink| {
            let (tx, rx) = mpsc::channel(options.delivery.queue.max(1));
            workers.spawn(worker(sink.clone(), rx, sink.delivery(&options.delivery)));
            (sink, tx)
        })
        .collect();
    let mut players_sent: Option<Instant> = None;
    let mut players_pending: Option<Alert> = None;
    loop {
        let held_until = players_pending
            .as_ref()
            .and(players_sent)
            .map(|t| t + options.players_every);
        let alert = tokio::select! {
            biased;
            () = close.cancelled() => break,
            a = rx.recv() => match a {
                Some(a) => a,
                None => break,
            },
            () = async { match held_until { Some(t) => sleep_until(t).await, None => std::future::pending().await } } => {
                match players_pending.take() {
                    Some(a) => a,
                    None => continue,
                }
            }
        };
        if let Alert::Players { .. } = alert {
            let now = Instant::now();
            if players_sent.is_some_and(|t| now < t + options.players_every) {
                // Held: only the latest count goes out when the window ends.
                players_pending = Some(alert);
                continue;
            }
            players_sent = Some(now);
        }
        route(&alert, &queues, &options);
    }
    // Closing: what is already in the channel still goes out; held player counts do not.
    while let Ok(alert) = rx.try_recv() {
        if !matches!(alert, Alert::Players { .. }) {
            route(&alert, &queues, &options);
        }
    }
    drop(queues);
    while workers.join_next().await.is_some() {}
}

fn route(alert: &Alert, queues: &[Queue], options: &Options) {
    let message = Arc::new(Message::new(alert, &options.context));
    let kind = message.kind.as_str();
    let mut wanted = false;
    for (sink, tx) in queues.iter().filter(|(s, _)| s.wants(message.kind)) {
        wanted = true;
        let target = sink.label();
        if options.dry_run {
            info!(event = "alert_sent", dry_run = true, to = %target, alert = kind, subject = %message.title, "Would send a notification.");
            continue;
        }
        if tx.try_send(message.clone()).is_err() {
            warn!(event = "alert_dropped", to = %target, alert = kind, subject = %message.title, "Notification dropped: this target's queue is full.");
        }
    }
    if !wanted {
        info!(alert = kind, subject = %message.title, "No notification target wants this event; only logged.");
    }
}

async fn worker(sink: Arc<dyn Sink>, mut rx: mpsc::Receiver<Arc<Message>>, delivery: Delivery) {
    while let Some(message) = rx.recv().await {
        deliver(sink.as_ref(), &message, &delivery).await;
    }
}

/// Bounded attempts with backoff; a 429's wait is honoured up to `max_wait`.
pub async fn deliver(sink: &dyn Sink, message: &Message, delivery: &Delivery) -> bool {
    let target = sink.label();
    let kind = message.kind.as_str();
    let mut wait = delivery.backoff;
    for attempt in 1..=delivery.attempts.max(1) {
        let (reason, asked) = match timeout(delivery.attempt_timeout, sink.send(message)).await {
            Ok(Ok(())) => {
                info!(event = "alert_sent", to = %target, alert = kind, subject = %message.title, attempt, "Notification sent.");
                return true;
            }
            Ok(Err(SendError::Drop { reason })) => {
                warn!(event = "alert_dropped", to = %target, alert = kind, subject = %message.title, error = %reason, "Notification dropped.");
                return false;
            }
            Ok(Err(SendError::Retry { reason, after })) => (reason, after),
            Err(_) => (
                format!("no answer within {:?}", delivery.attempt_timeout),
                None,
            ),
        };
        if attempt >= delivery.attempts {
            warn!(event = "alert_dropped", to = %target, alert = kind, subject = %message.title, attempt, error = %reason, "Notification dropped after its last attempt.");
            return false;
        }
        let pause = match asked {
            Some(a) if a > delivery.max_wait => {
                warn!(event = "alert_dropped", to = %target, alert = kind, subject = %message.title, retry_after_ms = millis(a), "Notification dropped: the receiver asks to wait longer than {:?}.", delivery.max_wait);
                return false;
            }
            Some(a) => a,
            None => wait,
        };
        warn!(to = %target, alert = kind, attempt, error = %reason, retry_in_ms = millis(pause), "Notification failed; retrying.");
        sleep(pause).await;
        wait = wait.saturating_mul(2).min(MAX_BACKOFF);
    }
    false
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A sink that records what it got and answers from a script.
    #[derive(Debug)]
    struct Scripted {
        label: &'static str,
        answers: Mutex<Vec<Result<(), SendError>>>,
        hang: bool,
        got: Mutex<Vec<(Instant, String)>>,
    }

    impl Scripted {
        fn new(label: &'static str, answers: Vec<Result<(), SendError>>) -> Arc<Self> {
            Arc::new(Self {
                label,
                answers: Mutex::new(answers),
                hang: false,
                got: Mutex::new(vec![]),
            })
        }

        fn titles(&self) -> Vec<String> {
            self.got
                .lock()
                .unwrap()
                .iter()
                .map(|(_, t)| t.clone())
                .collect()
        }
    }

    #[async_trait]
    impl Sink for Scripted {
        fn label(&self) -> String {
            self.label.into()
        }
        fn wants(&self, _: EventKind) -> bool {
            true
        }
        async fn send(&self, m: &Message) -> Result<(), SendError> {
            self.got
                .lock()
                .unwrap()
                .push((Instant::now(), m.title.clone()));
            if self.hang {
                std::future::pending::<()>().await;
            }
            let mut a = self.answers.lock().unwrap();
            if a.is_empty() { Ok(()) } else { a.remove(0) }
        }
    }

    fn options() -> Options {
        Options {
            context: Context {
                server: "mc".into(),
                addresses: vec![],
            },
            players_every: Duration::from_secs(300),
            delivery: Delivery::default(),
            dry_run: false,
        }
    }

    fn players(n: u32) -> Alert {
        Alert::Players { online: n, max: 10 }
    }

    #[tokio::test(start_paused = true)]
    async fn players_are_rate_limited_and_the_latest_count_wins() {
        let sink = Scripted::new("s", vec![]);
        let (n, running) = start(vec![sink.clone()], options());
        n.notify(players(1));
        tokio::time::sleep(Duration::from_secs(10)).await;
        n.notify(players(2));
        n.notify(players(3));
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(sink.titles(), vec!["mc: 1 player online"]);
        tokio::time::sleep(Duration::from_secs(200)).await;
        assert_eq!(
            sink.titles(),
            vec!["mc: 1 player online", "mc: 3 players online"]
        );
        let got = sink.got.lock().unwrap().clone();
        assert!(got[1].0 - got[0].0 >= Duration::from_secs(300));
        drop(got);
        running.finish(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_honoured_and_attempts_are_bounded() {
        let limited = Scripted::new(
            "limited",
            vec![Err(SendError::Retry {
                reason: "HTTP 429".into(),
                after: Some(Duration::from_secs(7)),
            })],
        );
        let failing = Scripted::new(
            "failing",
            (0..10)
                .map(|_| {
                    Err(SendError::Retry {
                        reason: "HTTP 500".into(),
                        after: None,
                    })
                })
                .collect(),
        );
        let (n, running) = start(vec![limited.clone(), failing.clone()], options());
        n.notify(Alert::NeedsOperator(crate::decide::Problem::NoMetadata));
        tokio::time::sleep(Duration::from_secs(120)).await;
        let l = limited.got.lock().unwrap().clone();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].0 - l[0].0, Duration::from_secs(7));
        assert_eq!(
            failing.got.lock().unwrap().len(),
            4,
            "4 attempts, then dropped"
        );
        running.finish(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_sink_delays_neither_the_caller_nor_the_other_sinks() {
        let hanging = Arc::new(Scripted {
            label: "hanging",
            answers: Mutex::new(vec![]),
            hang: true,
            got: Mutex::new(vec![]),
        });
        let fine = Scripted::new("fine", vec![]);
        let (n, running) = start(vec![hanging.clone(), fine.clone()], options());
        let t0 = Instant::now();
        for i in 0..100 {
            n.notify(Alert::MaxUptime {
                uptime: Duration::from_secs(3600 * (i + 1)),
                scaling_in: false,
                unconfirmed_for: None,
            });
        }
        assert_eq!(Instant::now(), t0, "notify never waits");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(fine.titles().len() >= 16, "{}", fine.titles().len());
        // Each attempt to the hanging sink is bounded; its queue is bounded too.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(hanging.got.lock().unwrap().len() >= 2);
        running.finish(Duration::from_secs(2)).await;
        assert!(Instant::now() - t0 <= Duration::from_secs(63));
    }

    #[tokio::test(start_paused = true)]
    async fn dry_run_sends_nothing() {
        let sink = Scripted::new("s", vec![]);
        let (n, running) = start(
            vec![sink.clone()],
            Options {
                dry_run: true,
                ..options()
            },
        );
        n.notify(Alert::Online {
            uptime: Duration::from_secs(5),
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        running.finish(Duration::from_secs(1)).await;
        assert!(sink.titles().is_empty());
    }
}
