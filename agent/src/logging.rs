//! Log output: text on a terminal, one JSON object per line, or journald.
//!
//! Every decision and side effect carries an `event` field (`agent_started`, `sample`,
//! `scale_in_requested`, ...), so the JSON lines can be read back by tests and benchmarks.

use std::fmt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// Where and how logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
    Journald,
}

impl LogFormat {
    /// journald when running under systemd (`JOURNAL_STREAM` is set), text otherwise.
    pub fn default_for_env() -> Self {
        if std::env::var_os("JOURNAL_STREAM").is_some() {
            Self::Journald
        } else {
            Self::Text
        }
    }
}

/// RFC 3339 in UTC with milliseconds, for example `2026-11-22T10:00:01.123Z`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rfc3339Millis;

impl FormatTime for Rfc3339Millis {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write!(
            w,
            "{}",
            humantime::format_rfc3339_millis(std::time::SystemTime::now())
        )
    }
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber. Returns a note when journald was asked for but is not
/// reachable (then text is used).
pub fn init(format: LogFormat) -> Option<String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Every output also copies the decision lines for `[decision_log]` (crate::logship).
    let base = tracing_subscriber::registry()
        .with(filter())
        .with(crate::logship::Layer);
    match format {
        LogFormat::Json => {
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_target(false)
                .with_timer(Rfc3339Millis)
                .with_writer(std::io::stderr);
            let _ = base.with(layer).try_init();
            None
        }
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => {
                let _ = base
                    .with(layer.with_syslog_identifier("container-manager-agent".into()))
                    .try_init();
                None
            }
            Err(e) => {
                let _ = base.with(text_layer()).try_init();
                Some(format!("journald is not reachable ({e}); logging as text"))
            }
        },
        LogFormat::Text => {
            let _ = base.with(text_layer()).try_init();
            None
        }
    }
}

fn text_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_timer(Rfc3339Millis)
        .with_writer(std::io::stderr)
}
