//! One narrow trait per side effect the agent has in the cloud, and the values and the error
//! they pass. The service adapters implement them; nothing here depends on the adapters.

use std::net::{Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;

use crate::decide::{LifecycleState, MetricsBatch, StopFacts};

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{service} {call} failed: {reason}")]
    Call {
        service: &'static str,
        call: &'static str,
        /// The service's error code (`AccessDenied`, `Throttling`...), when it answered one.
        code: Option<String>,
        reason: String,
    },
    #[error("instance metadata {path} failed: {reason}")]
    Metadata { path: String, reason: String },
    #[error("{what} did not happen within {seconds} s")]
    Timeout { what: String, seconds: u64 },
    #[error("{0}")]
    Invalid(String),
}

/// Error codes that retrying cannot fix: the caller is not allowed. The fix is a permission.
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
];

/// Error codes that retrying cannot fix: the request names something wrong or missing. The fix
/// is in the config (or the stack's parameters that wrote it).
const INVALID: &[&str] = &[
    "ValidationError",
    "ValidationException",
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "InvalidInput",
    "MissingParameter",
    "NoSuchHostedZone",
    "NotFound",
    "NotFoundException",
    "ParameterNotFound",
    "ResourceNotFound",
    "ResourceNotFoundException",
];

impl AwsError {
    /// `Some(fix)` when the error is permanent: AWS refused the call for a reason that only an
    /// operator can change (a permission, a name in the config), so retrying at the usual pace
    /// only repeats it. `None` for everything else (throttling, 5xx, timeouts, a network that
    /// is down), which is retried with the usual backoff.
    pub fn permanent(&self) -> Option<String> {
        let Self::Call {
            service,
            call,
            code: Some(code),
            ..
        } = self
        else {
            return None;
        };
        let code = code.as_str();
        if DENIED.contains(&code) {
            return Some(format!(
                "AWS denies {}:{call} ({code}): allow it to the instance's role (the stack's \
                 InstanceRole has it; a changed policy, a permissions boundary or an SCP may deny it).",
                iam_prefix(service)
            ));
        }
        INVALID.contains(&code).then(|| {
            format!(
                "AWS rejects {}:{call} ({code}): check {}.",
                iam_prefix(service),
                config_hint(service)
            )
        })
    }
}

impl crate::retry::Failure for AwsError {
    fn permanent(&self) -> Option<String> {
        AwsError::permanent(self)
    }
}

/// The IAM action prefix of a service (CloudWatch signs as `monitoring`).
fn iam_prefix(service: &str) -> &str {
    match service {
        "monitoring" => "cloudwatch",
        s => s,
    }
}

/// Where the names a service's calls use come from.
fn config_hint(service: &str) -> &'static str {
    match service {
        "route53" => {
            "dns.hosted_zone_id and dns.record_name in the agent's config (the stack's HostedZoneId and the server's name)"
        }
        "autoscaling" => {
            "scaling.auto_scaling_group and the lifecycle hook names in the agent's config (the stack writes them)"
        }
        "cloudwatch" | "monitoring" => "metrics.namespace in the agent's config",
        "sns" => "alerts.sns_topic_arn in the agent's config (the topic and its region)",
        "ssm" => {
            "the webhook's url_parameter in the agent's config (its name, and that it is in this region)"
        }
        "logs" => "decision_log.log_group in the agent's config (the group, in this region)",
        _ => "the agent's config",
    }
}

/// An SDK error as an [`AwsError::Call`], with the service's error code when it gave one.
pub fn call_error<E>(service: &'static str, call: &'static str, e: &E) -> AwsError
where
    // Every SDK crate re-exports the same smithy trait and wrapper; any one path names them.
    E: std::error::Error + aws_sdk_sns::error::ProvideErrorMetadata + 'static,
{
    AwsError::Call {
        service,
        call,
        code: e.code().map(str::to_string),
        reason: aws_sdk_sns::error::DisplayErrorContext(e).to_string(),
    }
}

/// Who and where this instance is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub instance_id: String,
    pub region: String,
    pub public_ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// The instance metadata service (IMDSv2).
#[async_trait]
pub trait InstanceMetadata: Send + Sync + std::fmt::Debug {
    async fn identity(&self) -> Result<Identity, AwsError>;
    /// `autoscaling/target-lifecycle-state`; [`LifecycleState::Standalone`] outside a group.
    async fn lifecycle_state(&self) -> Result<LifecycleState, AwsError>;
    /// Whether `spot/instance-action` announces an interruption.
    async fn spot_interruption(&self) -> Result<bool, AwsError>;
}

/// The outcome of a guarded DNS revert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevertOutcome {
    Reverted,
    /// The record no longer holds our address (a newer instance took it): left alone.
    NotOurs {
        current: Option<String>,
    },
}

/// The server's Route53 record.
#[async_trait]
pub trait DnsRecord: Send + Sync + std::fmt::Debug {
    /// UPSERTs the record(s) to this instance's address and waits for INSYNC (bounded).
    /// Returns the address written.
    async fn point_here(&self) -> Result<String, AwsError>;
    /// Sets the record back to the placeholder, only if it still holds our address, in one
    /// atomic change batch.
    async fn revert(&self) -> Result<RevertOutcome, AwsError>;
}

/// The Auto Scaling group this instance belongs to.
#[async_trait]
pub trait Capacity: Send + Sync + std::fmt::Debug {
    async fn scale_to_zero(&self) -> Result<(), AwsError>;
    /// Completes the termination hook (CONTINUE).
    async fn complete_lifecycle(&self) -> Result<(), AwsError>;
    /// Completes the launching hook (CONTINUE): into the warm pool, or into service.
    async fn complete_launch(&self) -> Result<(), AwsError>;
    async fn heartbeat(&self) -> Result<(), AwsError>;
    /// The wake budget's ledger, kept on the group where the wake function reads it in the call
    /// it makes anyway: records a wake nobody joined, ending at `at` (Unix seconds), and returns
    /// how many the last 24 hours hold, this one included.
    async fn record_unused_wake(&self, at: u64) -> Result<u32, AwsError>;
    /// A wake someone joined: the ledger starts again.
    async fn clear_unused_wakes(&self) -> Result<(), AwsError>;
    /// Why the agent scaled the server to zero, kept on the group where the operator's `status`
    /// reads it after the instance is gone: `at` (Unix seconds), the reason's kind, the players
    /// then and the uptime, and the reason's text.
    async fn record_stop(
        &self,
        at: u64,
        reason: &str,
        facts: StopFacts,
        detail: &str,
    ) -> Result<(), AwsError>;
    /// How a wake ended, kept on the group among the last day's for the operator's `status`:
    /// when (Unix seconds), how many minutes the instance was up, and whether a player came.
    async fn record_wake_outcome(
        &self,
        at: u64,
        minutes: u64,
        joined: bool,
    ) -> Result<(), AwsError>;
    /// That the game is up for players (the moment of the `online` notification), kept on the
    /// group: `status` tells "up" from "waking" by it, without touching the instance.
    async fn record_online(&self, at: u64) -> Result<(), AwsError>;
    /// When the game was last recorded up (`record_online`'s `at`), if ever: a restarted agent
    /// does not announce a game that was announced in this boot. `None` by default (no record).
    async fn online_at(&self) -> Result<Option<u64>, AwsError> {
        Ok(None)
    }
}

/// CloudWatch custom metrics.
#[async_trait]
pub trait Metrics: Send + Sync + std::fmt::Debug {
    /// Publishes one interval's metrics in one PutMetricData call.
    async fn publish(&self, batch: &MetricsBatch) -> Result<(), AwsError>;
}

/// An alert for a person on a phone: a short subject and a readable body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertMessage {
    pub subject: String,
    pub body: String,
}

/// A secret value (a webhook URL). Its `Debug` never shows it; only [`Secret::expose`] does.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Secrets kept in SSM Parameter Store (SecureString).
#[async_trait]
pub trait Secrets: Send + Sync + std::fmt::Debug {
    /// The decrypted value of a parameter.
    async fn secret(&self, name: &str) -> Result<Secret, AwsError>;
}

/// SNS alerts.
#[async_trait]
pub trait Alerts: Send + Sync + std::fmt::Debug {
    async fn send(&self, alert: &AlertMessage) -> Result<(), AwsError>;
}

/// One of the agent's decision lines as it is kept: when it was logged, and its text
/// (`LEVEL event: message key=value ...`; `crate::logship` makes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLine {
    pub at: std::time::SystemTime,
    pub text: String,
}

/// The agent's decision lines, kept off the instance (CloudWatch Logs).
#[async_trait]
pub trait DecisionLog: Send + Sync + std::fmt::Debug {
    /// Sends lines, oldest first, in one call.
    async fn put(&self, lines: &[DecisionLine]) -> Result<(), AwsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(service: &'static str, call: &'static str, code: Option<&str>) -> AwsError {
        AwsError::Call {
            service,
            call,
            code: code.map(str::to_string),
            reason: "r".into(),
        }
    }

    #[test]
    fn denied_and_invalid_calls_are_permanent_and_name_the_fix() {
        let fix = call("autoscaling", "SetDesiredCapacity", Some("AccessDenied"))
            .permanent()
            .unwrap();
        assert!(fix.contains("autoscaling:SetDesiredCapacity"), "{fix}");
        assert!(fix.contains("instance's role"), "{fix}");
        let fix = call("cloudwatch", "PutMetricData", Some("AccessDeniedException"))
            .permanent()
            .unwrap();
        assert!(fix.contains("cloudwatch:PutMetricData"), "{fix}");
        let fix = call(
            "route53",
            "ChangeResourceRecordSets",
            Some("NoSuchHostedZone"),
        )
        .permanent()
        .unwrap();
        assert!(fix.contains("dns.hosted_zone_id"), "{fix}");
        let fix = call("ssm", "GetParameter", Some("ParameterNotFound"))
            .permanent()
            .unwrap();
        assert!(fix.contains("url_parameter"), "{fix}");
    }

    #[test]
    fn throttling_server_errors_and_the_network_are_transient() {
        for code in [
            Some("Throttling"),
            Some("ThrottlingException"),
            Some("ServiceUnavailable"),
            Some("InternalFailure"),
            Some("PriorRequestNotComplete"),
            Some("ExpiredToken"),
            None,
        ] {
            assert_eq!(
                call("route53", "GetChange", code).permanent(),
                None,
                "{code:?}"
            );
        }
        let timeout = AwsError::Timeout {
            what: "x".into(),
            seconds: 1,
        };
        assert_eq!(timeout.permanent(), None);
    }
}
