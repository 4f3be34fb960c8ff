//! SSM Parameter Store: the webhook URLs, kept as SecureString parameters.

use async_trait::async_trait;
use aws_sdk_ssm::Client;

use super::traits::{AwsError, Secret, Secrets, call_error};

#[derive(Debug, Clone)]
pub struct Ssm {
    client: Client,
}

impl Ssm {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Secrets for Ssm {
    async fn secret(&self, name: &str) -> Result<Secret, AwsError> {
        let out = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| call_error("ssm", "GetParameter", &e))?;
        out.parameter
            .and_then(|p| p.value)
            .filter(|v| !v.trim().is_empty())
            .map(Secret::new)
            .ok_or_else(|| AwsError::Invalid(format!("the SSM parameter {name:?} has no value")))
    }
}
