//! Alerts through an SNS topic (e-mail, SMS or a chat webhook subscribe to it).

use async_trait::async_trait;
use aws_sdk_sns::Client;

use super::traits::{AlertMessage, Alerts, AwsError, call_error};

#[derive(Debug, Clone)]
pub struct Sns {
    client: Client,
    topic_arn: String,
}

impl Sns {
    pub fn new(client: Client, topic_arn: String) -> Self {
        Self { client, topic_arn }
    }
}

/// SNS subjects must be printable ASCII without line breaks, at most 100 characters.
pub fn subject(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .take(100)
        .collect();
    if cleaned.trim().is_empty() {
        "container-manager alert".to_string()
    } else {
        cleaned
    }
}

#[async_trait]
impl Alerts for Sns {
    async fn send(&self, alert: &AlertMessage) -> Result<(), AwsError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject(&alert.subject))
            .message(&alert.body)
            .send()
            .await
            .map_err(|e| call_error("sns", "Publish", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::subject;

    #[test]
    fn subjects_are_printable_ascii_and_short() {
        assert_eq!(subject("mc.example.com: idle"), "mc.example.com: idle");
        assert_eq!(subject("a\nb\u{e9}"), "a?b?");
        assert_eq!(subject(&"x".repeat(150)).len(), 100);
        assert_eq!(subject(" "), "container-manager alert");
    }
}
