//! Mail to the platform's server over SMTP (plain, on the host's own network: the server
//! relays it). Each message is plain text in the user's language.

use crate::config::Config;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: String,
}

impl Mailer {
    pub fn new(config: &Config) -> Self {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
            .port(config.smtp_port)
            .timeout(Some(Duration::from_secs(10)))
            .build();
        Mailer {
            transport,
            from: config.mail_from.clone(),
        }
    }

    /// Sends one message; the error says what failed, never the body (a reset link).
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| format!("sender address: {e}"))?;
        let to: Mailbox = to.parse().map_err(|e| format!("recipient address: {e}"))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .body(body)
            .map_err(|e| format!("building the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}
