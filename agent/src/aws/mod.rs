//! The cloud side: instance metadata, Route53, Auto Scaling, CloudWatch, SNS and CloudWatch Logs.
//!
//! One narrow trait per side effect ([`traits`]), and one thin adapter per service: [`imds`],
//! [`route53`], [`autoscaling`], [`cloudwatch`], [`sns`], [`ssm`] and [`logs`]. Every adapter takes its endpoint
//! from the SDK's standard environment (`AWS_ENDPOINT_URL`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`)
//! or from [`BuildOptions`], so tests point it at the emulator. The adapters speak the real
//! protocols (CloudWatch's rpc-v2-cbor included); the emulator's gaps are bridged on the test
//! side (`tests/shim/awsshim.py`), never here.
//!
//! ## Failures
//! Every SDK call is bounded ([`CONNECT_TIMEOUT`], [`ATTEMPT_TIMEOUT`], [`OPERATION_TIMEOUT`])
//! and the SDK retries at most once ([`SDK_ATTEMPTS`]): an unreachable endpoint gives an
//! `Err` within seconds, and the run loop retries with capped backoff until success or
//! shutdown. An error AWS answers with a code that retrying cannot fix (a denied permission, a
//! wrong name) is permanent ([`AwsError::permanent`]): it is told once with the fix and
//! retried slowly (`crate::retry`). No adapter decides anything: an error never leads to a
//! scale-in.
//!
//! ## Boot without instance metadata
//! [`build`] reads the instance's identity (id, region, addresses) from IMDS, retrying with
//! backoff for [`IDENTITY_BUDGET`]. If IMDS stays unreachable, the agent starts with the
//! metadata adapter only and logs an ERROR: without IMDS there is no instance id, no address
//! and, on EC2, no instance-profile credentials either, so no other adapter could work. The
//! agent then never touches DNS and never scales in (the safe direction: the instance keeps
//! running and costs money, but no one's game is stopped). The operator sees the ERROR in the
//! journal and restarts the agent once IMDS answers (`systemctl restart container-manager-agent`).

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use tokio::time::{Instant, sleep, timeout};
use tracing::{error, info, warn};

use crate::config::Config;

pub mod autoscaling;
pub mod cloudwatch;
pub mod imds;
pub mod logs;
pub mod route53;
pub mod sns;
pub mod ssm;
pub mod traits;

pub use traits::{
    AlertMessage, Alerts, AwsError, Capacity, DecisionLine, DecisionLog, DnsRecord, Identity,
    InstanceMetadata, Metrics, RevertOutcome, Secret, Secrets,
};

/// The cloud adapters the config asks for. A `None` is a feature that is off.
#[derive(Debug, Default)]
pub struct CloudAdapters {
    pub metadata: Option<Arc<dyn InstanceMetadata>>,
    pub dns: Option<Arc<dyn DnsRecord>>,
    pub capacity: Option<Arc<dyn Capacity>>,
    pub metrics: Option<Arc<dyn Metrics>>,
    pub alerts: Option<Arc<dyn Alerts>>,
    /// SSM, for the webhook URLs; `None` without `[[notify.webhook]]` targets.
    pub secrets: Option<Arc<dyn Secrets>>,
    /// CloudWatch Logs, for the decision lines; `None` without `[decision_log]`.
    pub decision_log: Option<Arc<dyn DecisionLog>>,
    /// The identity read at boot; `None` when IMDS could not be read.
    pub identity: Option<Identity>,
}

/// Connecting to an AWS endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of an AWS call.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// An AWS call with the SDK's own retries; below the run loop's `CALL_TIMEOUT` (30 s).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(25);
/// Attempts per call inside the SDK; the run loop retries on top of this.
pub const SDK_ATTEMPTS: u32 = 2;
/// How long [`build`] keeps trying to read the identity from IMDS at boot.
pub const IDENTITY_BUDGET: Duration = Duration::from_secs(60);

/// Where the adapters connect. The defaults read the standard environment.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// All AWS services at this URL; `None`: `AWS_ENDPOINT_URL` or the real endpoints.
    pub endpoint_url: Option<String>,
    /// IMDS at this URL; `None`: `AWS_EC2_METADATA_SERVICE_ENDPOINT` or 169.254.169.254.
    pub imds_endpoint: Option<String>,
    /// How long to keep trying to read the identity at boot.
    pub identity_budget: Duration,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            imds_endpoint: None,
            identity_budget: IDENTITY_BUDGET,
        }
    }
}

/// Builds the adapters from the SDK's standard environment.
pub async fn build(config: &Config) -> CloudAdapters {
    build_with(config, &BuildOptions::default()).await
}

/// Builds the adapters the config enables: metadata always; DNS with `[dns]`; capacity with
/// `[scaling]`; metrics with `[metrics]`; alerts with `alerts.sns_topic_arn`. See the module
/// documentation for what happens when IMDS is unreachable.
pub async fn build_with(config: &Config, options: &BuildOptions) -> CloudAdapters {
    let imds_client = match imds::client(options.imds_endpoint.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "Cannot build the instance metadata client; no AWS features.");
            return CloudAdapters::default();
        }
    };
    let metadata = Arc::new(imds::Imds::new(imds_client.clone()));
    let webhooks = !config.notify.webhooks.is_empty();
    if !config.uses_aws() {
        // Nothing to do in the cloud: do not wait for the instance's identity. The lifecycle
        // poller still reads IMDS, so a termination is still handled where IMDS answers.
        info!("No [dns], [scaling], [metrics] or [alerts] configured; no AWS calls.");
        return CloudAdapters {
            metadata: Some(metadata),
            ..CloudAdapters::default()
        };
    }
    let Some(identity) = read_identity(metadata.as_ref(), options.identity_budget).await else {
        error!(
            budget_s = options.identity_budget.as_secs(),
            "Cannot read this instance's identity from the instance metadata service (IMDS). \
             Running without DNS, scaling, metrics and alerts: the record is not updated and \
             the instance is never scaled in. Restart the agent once IMDS answers."
        );
        // The webhooks may still work where credentials and a region come from elsewhere
        // (the environment, a profile); on EC2 without IMDS their URL cannot be read either,
        // and that is reported once when the first message is due.
        let secrets = if webhooks {
            let sdk = sdk_config_without_identity(options).await;
            Some(Arc::new(ssm::Ssm::new(aws_sdk_ssm::Client::new(&sdk))) as Arc<dyn Secrets>)
        } else {
            None
        };
        return CloudAdapters {
            metadata: Some(metadata),
            secrets,
            ..CloudAdapters::default()
        };
    };
    info!(
        instance = %identity.instance_id,
        region = %identity.region,
        public_ipv4 = ?identity.public_ipv4,
        ipv6 = ?identity.ipv6,
        "Instance identity read."
    );
    let sdk = sdk_config(options, imds_client, &identity).await;

    let dns = config.dns.as_ref().map(|d| {
        let client = aws_sdk_route53::Client::new(&sdk);
        Arc::new(route53::Route53Record::new(client, d.clone(), &identity)) as Arc<dyn DnsRecord>
    });
    let asg_client = aws_sdk_autoscaling::Client::new(&sdk);
    let group = Arc::new(autoscaling::GroupResolver::new(
        asg_client.clone(),
        identity.instance_id.clone(),
        config
            .scaling
            .as_ref()
            .and_then(|s| s.auto_scaling_group.clone()),
    ));
    let capacity = config.scaling.as_ref().map(|s| {
        Arc::new(
            autoscaling::AutoScaling::new(
                asg_client.clone(),
                group.clone(),
                s.lifecycle_hook.clone(),
            )
            .with_launch_hook(s.launch_hook.clone()),
        ) as Arc<dyn Capacity>
    });
    let metrics = config.metrics.as_ref().map(|m| {
        let client = aws_sdk_cloudwatch::Client::new(&sdk);
        Arc::new(cloudwatch::CloudWatch::new(
            client,
            m.namespace.clone(),
            group.clone(),
        )) as Arc<dyn Metrics>
    });
    let alerts = config.alerts.as_ref().map(|a| {
        let client = aws_sdk_sns::Client::new(&sdk);
        Arc::new(sns::Sns::new(client, a.sns_topic_arn.clone())) as Arc<dyn Alerts>
    });
    let secrets = webhooks
        .then(|| Arc::new(ssm::Ssm::new(aws_sdk_ssm::Client::new(&sdk))) as Arc<dyn Secrets>);
    let decision_log = config.decision_log.as_ref().map(|d| {
        Arc::new(logs::CloudWatchLogs::new(
            aws_sdk_cloudwatchlogs::Client::new(&sdk),
            d.log_group.clone(),
            identity.instance_id.clone(),
        )) as Arc<dyn DecisionLog>
    });
    CloudAdapters {
        metadata: Some(metadata),
        dns,
        capacity,
        metrics,
        alerts,
        secrets,
        decision_log,
        identity: Some(identity),
    }
}

/// Reads the identity, retrying with capped backoff until `budget` runs out.
async fn read_identity(metadata: &dyn InstanceMetadata, budget: Duration) -> Option<Identity> {
    let deadline = Instant::now() + budget;
    let mut attempt = 0u32;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let reason = match timeout(left, metadata.identity()).await {
            Ok(Ok(id)) => return Some(id),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {left:?}"),
        };
        attempt += 1;
        let wait = crate::retry::backoff(attempt - 1).min(Duration::from_secs(8));
        if Instant::now() + wait >= deadline {
            warn!(attempt, error = %reason, "Reading the instance identity failed; giving up.");
            return None;
        }
        warn!(attempt, error = %reason, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "Reading the instance identity failed; retrying.");
        sleep(wait).await;
    }
}

/// The SDK config when the instance's identity is unknown: region and credentials from the
/// environment or a profile only (the IMDS steps would only wait for the same dead service).
async fn sdk_config_without_identity(options: &BuildOptions) -> SdkConfig {
    let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new());
    bounded_loader(options).region(region).load().await
}

/// One HTTPS client for every service client and the credentials provider: without it, each
/// SDK client builds its own, with its own parsed copy of the system's root certificates (a few
/// hundred KiB each, issue 41's footprint). Its connectors are cached by their settings, which
/// the clients share (the loader's timeouts).
fn https_client() -> aws_sdk_sns::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https()
}

/// The SDK's loader with what every config here shares: one HTTPS client, bounded timeouts,
/// few SDK retries, and the endpoint of [`BuildOptions`] if one is set.
fn bounded_loader(options: &BuildOptions) -> aws_config::ConfigLoader {
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS));
    match &options.endpoint_url {
        Some(url) => loader.endpoint_url(url),
        None => loader,
    }
}

/// The shared SDK config: region from the environment or the profile, else the instance's
/// own; credentials from the default chain (its IMDS step uses our IMDS client); bounded
/// timeouts and few SDK retries.
async fn sdk_config(
    options: &BuildOptions,
    imds_client: aws_config::imds::Client,
    identity: &Identity,
) -> SdkConfig {
    let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new())
        .or_else(Region::new(identity.region.clone()));
    let region_now = region.region().await;
    let credentials = DefaultCredentialsChain::builder()
        .region(
            region_now
                .clone()
                .unwrap_or_else(|| Region::new(identity.region.clone())),
        )
        .imds_client(imds_client)
        .build()
        .await;
    bounded_loader(options)
        .region(region_now)
        .credentials_provider(credentials)
        .load()
        .await
}
