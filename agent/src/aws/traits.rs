//! One narrow trait per side effect the agent has in the cloud, and the values and the error
//! they pass. The service adapters implement them; nothing here depends on the adapters.

use std::net::{Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;

use crate::decide::{LifecycleState, MetricsBatch};

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{service} {call} failed: {reason}")]
    Call {
        service: &'static str,
        call: &'static str,
        reason: String,
    },
    #[error("instance metadata {path} failed: {reason}")]
    Metadata { path: String, reason: String },
    #[error("{what} did not happen within {seconds} s")]
    Timeout { what: String, seconds: u64 },
    #[error("{0}")]
    Invalid(String),
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
    /// reads it after the instance is gone: `at` (Unix seconds), the reason's kind and its text.
    async fn record_stop(&self, at: u64, reason: &str, detail: &str) -> Result<(), AwsError>;
    /// That the game is up for players (the moment of the `online` notification), kept on the
    /// group: `status` tells "up" from "waking" by it, without touching the instance.
    async fn record_online(&self, at: u64) -> Result<(), AwsError>;
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
