//! Reminders the reactor sets itself: "look at these actions again in N seconds". A host
//! that stays silent after another reported is dropped from an action's quorum once
//! `HOST_REPORT_TIMEOUT_S` passed, but nothing else would bring the reactor back at that
//! moment: a reminder does. It is a message to the reactor's own inbox, delayed by SQS
//! (`DelaySeconds`, at most 900 s), so it costs no waiting invocation, survives a cold
//! start, and arrives with the events and the reports ([`crate::input::recheck`]).
//!
//! [`Reminders`] is the boundary: [`SqsReminders`] sends to `INBOX_QUEUE_URL`; unit tests
//! use a fake.

use std::future::Future;
use std::time::Duration;

use infra::aws::{api_error, AwsError};

use crate::input::recheck::Recheck;
use crate::ledger::ActionKey;
use infra::MemberId;

/// The longest delay SQS gives a message.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Sets reminders.
pub trait Reminders: Send + Sync {
    /// Brings `actions` back to the reactor `after` from now (at most [`MAX_DELAY`]).
    fn remind(
        &self,
        actions: &[ActionKey],
        after: Duration,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Brings the health watches of `members` back to the reactor `after` from now.
    fn remind_health(
        &self,
        members: &[MemberId],
        after: Duration,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Reminders as delayed messages to the inbox.
#[derive(Debug, Clone)]
pub struct SqsReminders {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsReminders {
    /// Reminders to `queue_url` with clients from `config`.
    pub fn new(config: &aws_config::SdkConfig, queue_url: &str) -> Self {
        Self {
            client: aws_sdk_sqs::Client::new(config),
            queue_url: queue_url.to_string(),
        }
    }
}

impl Reminders for SqsReminders {
    async fn remind(&self, actions: &[ActionKey], after: Duration) -> Result<(), AwsError> {
        if actions.is_empty() {
            return Ok(());
        }
        self.send_all(Recheck::messages(actions), after).await
    }

    async fn remind_health(&self, members: &[MemberId], after: Duration) -> Result<(), AwsError> {
        if members.is_empty() {
            return Ok(());
        }
        self.send_all(Recheck::health_messages(members), after)
            .await
    }
}

impl SqsReminders {
    async fn send_all(&self, bodies: Vec<String>, after: Duration) -> Result<(), AwsError> {
        let delay = i32::try_from(after.min(MAX_DELAY).as_secs()).unwrap_or(900);
        for body in bodies {
            self.client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(body)
                .delay_seconds(delay)
                .send()
                .await
                .map_err(|e| api_error("SendMessage", "a reminder to the reactor's inbox", &e))?;
        }
        Ok(())
    }
}
