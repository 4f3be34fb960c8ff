//! Instance metadata through IMDSv2, with `aws-config`'s IMDS client.
//!
//! The client fetches and caches the session token itself. Its endpoint is, in order: the
//! explicit one from [`super::BuildOptions`], `AWS_EC2_METADATA_SERVICE_ENDPOINT`, the
//! `ec2_metadata_service_endpoint` profile key, or `http://169.254.169.254`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::imds::Client;
use aws_config::imds::client::error::ImdsError;
use tracing::debug;

use super::traits::{AwsError, Identity, InstanceMetadata};
use crate::decide::LifecycleState;

/// IMDS is on the instance's own link: a healthy one answers in milliseconds. These bounds
/// keep a dead one from stalling the metadata poller.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(8);
const ATTEMPTS: u32 = 2;

const INSTANCE_ID: &str = "/latest/meta-data/instance-id";
const REGION: &str = "/latest/meta-data/placement/region";
const PUBLIC_IPV4: &str = "/latest/meta-data/public-ipv4";
const IPV6: &str = "/latest/meta-data/ipv6";
const LIFECYCLE: &str = "/latest/meta-data/autoscaling/target-lifecycle-state";
const SPOT_ACTION: &str = "/latest/meta-data/spot/instance-action";

/// Builds the IMDS client with the agent's timeouts. `endpoint` overrides the environment.
pub fn client(endpoint: Option<&str>) -> Result<Client, AwsError> {
    let mut builder = Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .max_attempts(ATTEMPTS);
    if let Some(url) = endpoint {
        builder = builder.endpoint(url).map_err(|e| AwsError::Metadata {
            path: url.to_string(),
            reason: format!("not a usable IMDS endpoint: {e}"),
        })?;
    }
    Ok(builder.build())
}

/// The instance metadata service.
#[derive(Debug, Clone)]
pub struct Imds {
    client: Client,
}

impl Imds {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The value at `path`, or `None` when IMDS answers 404 (the category does not apply).
    async fn get_optional(&self, path: &str) -> Result<Option<String>, AwsError> {
        match self.client.get(path).await {
            Ok(v) => Ok(Some(String::from(v).trim().to_string())),
            Err(ImdsError::ErrorResponse(r)) if r.response().status().as_u16() == 404 => {
                debug!(path, "IMDS has no value here (404).");
                Ok(None)
            }
            Err(e) => Err(AwsError::Metadata {
                path: path.to_string(),
                reason: error_chain(&e),
            }),
        }
    }

    async fn get_required(&self, path: &str) -> Result<String, AwsError> {
        self.get_optional(path)
            .await?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| AwsError::Metadata {
                path: path.to_string(),
                reason: "not found (404); is this an EC2 instance?".into(),
            })
    }
}

#[async_trait]
impl InstanceMetadata for Imds {
    async fn identity(&self) -> Result<Identity, AwsError> {
        let instance_id = self.get_required(INSTANCE_ID).await?;
        let region = self.get_required(REGION).await?;
        let public_ipv4 = match self.get_optional(PUBLIC_IPV4).await? {
            Some(s) => Some(parse_ip::<Ipv4Addr>(PUBLIC_IPV4, &s)?),
            None => None,
        };
        // `ipv6` lists the primary interface's first IPv6 address, when it has one.
        let ipv6 = match self.get_optional(IPV6).await? {
            Some(s) => Some(parse_ip::<Ipv6Addr>(IPV6, s.lines().next().unwrap_or(""))?),
            None => None,
        };
        Ok(Identity {
            instance_id,
            region,
            public_ipv4,
            ipv6,
        })
    }

    async fn lifecycle_state(&self) -> Result<LifecycleState, AwsError> {
        Ok(match self.get_optional(LIFECYCLE).await? {
            Some(s) => LifecycleState::from_imds(&s),
            None => LifecycleState::Standalone,
        })
    }

    async fn spot_interruption(&self) -> Result<bool, AwsError> {
        // 404 until EC2 schedules a stop, hibernation or termination; then a JSON document
        // with the action and its time.
        Ok(self
            .get_optional(SPOT_ACTION)
            .await?
            .is_some_and(|s| !s.is_empty()))
    }
}

fn parse_ip<T: std::str::FromStr>(path: &str, s: &str) -> Result<T, AwsError> {
    s.trim().parse().map_err(|_| AwsError::Metadata {
        path: path.to_string(),
        reason: format!("{s:?} is not an IP address"),
    })
}

/// An error with its sources, since IMDS errors put the useful part ("connection refused")
/// in the source chain.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
