//! The agent's decision lines in CloudWatch Logs (`[decision_log]`): one stream per instance,
//! named after its id, in the stack's group. The stream is created on the first call (an
//! existing one is used as it is); PutLogEvents needs no sequence token since 2023.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use tokio::sync::OnceCell;

use super::traits::{AwsError, DecisionLine as Line, DecisionLog, call_error};

const SERVICE: &str = "logs";

#[derive(Debug)]
pub struct CloudWatchLogs {
    client: Client,
    group: String,
    stream: String,
    created: OnceCell<()>,
}

impl CloudWatchLogs {
    pub fn new(client: Client, group: String, stream: String) -> Self {
        Self {
            client,
            group,
            stream,
            created: OnceCell::new(),
        }
    }

    async fn create_stream(&self) -> Result<(), AwsError> {
        match self
            .client
            .create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(call_error(SERVICE, "CreateLogStream", &e)),
        }
    }
}

/// Milliseconds since the epoch, as CloudWatch Logs wants a time.
fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[async_trait]
impl DecisionLog for CloudWatchLogs {
    async fn put(&self, lines: &[Line]) -> Result<(), AwsError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.created
            .get_or_try_init(|| self.create_stream())
            .await?;
        let mut events = Vec::with_capacity(lines.len());
        for l in lines {
            events.push(
                InputLogEvent::builder()
                    .timestamp(millis(l.at))
                    .message(&l.text)
                    .build()
                    .map_err(|e| AwsError::Invalid(format!("a log event: {e}")))?,
            );
        }
        // The service wants the events in time order; the queue keeps them in logging order,
        // which a clock step could disorder.
        events.sort_by_key(InputLogEvent::timestamp);
        let out = self
            .client
            .put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .set_log_events(Some(events))
            .send()
            .await
            .map_err(|e| call_error(SERVICE, "PutLogEvents", &e))?;
        if let Some(r) = out.rejected_log_events_info() {
            tracing::debug!(rejected = ?r, "CloudWatch Logs rejected some decision lines (too old or too new).");
        }
        Ok(())
    }
}
