//! Amazon SES event notifications delivered by mail (SNS email subscriptions): a JSON
//! document with `notificationType` Bounce, Complaint or Delivery instead of a DSN.
//!
//! Operators who send through SES often point the SNS topic at their bounce
//! address, so these arrive side by side with real DSNs and must read the same way.

use serde::Deserialize;

use super::diag;
use crate::model::RecipientFacts;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    notification_type: Option<String>,
    event_type: Option<String>,
    bounce: Option<Bounce>,
    complaint: Option<Complaint>,
    delivery: Option<Delivery>,
    /// An SNS envelope (`"Type": "Notification"`) carries the SES event as a JSON
    /// string in `Message`.
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    #[serde(default)]
    bounced_recipients: Vec<BouncedRecipient>,
    #[serde(alias = "reportingMTA")]
    reporting_mta: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BouncedRecipient {
    email_address: String,
    action: Option<String>,
    status: Option<String>,
    diagnostic_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Complaint {
    #[serde(default)]
    complained_recipients: Vec<Address>,
    complaint_feedback_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    #[serde(default)]
    recipients: Vec<String>,
    smtp_response: Option<String>,
    #[serde(alias = "reportingMTA")]
    reporting_mta: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Address {
    email_address: String,
}

/// What an SES notification says.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum SesEvent {
    #[default]
    None,
    Bounce {
        reporting_mta: Option<String>,
        recipients: Vec<RecipientFacts>,
    },
    Complaint {
        feedback_type: Option<String>,
        recipients: Vec<String>,
    },
    Delivery {
        reporting_mta: Option<String>,
        recipients: Vec<RecipientFacts>,
    },
}

fn unwrap_long_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("!\n") {
        out.push_str(rest[..i].trim_end_matches('\r'));
        rest = rest[i + 2..].strip_prefix(' ').unwrap_or(&rest[i + 2..]);
    }
    out.push_str(rest);
    out
}

/// Reads the first JSON object in `text` as an SES notification.
pub fn parse(text: &str) -> SesEvent {
    let Some(start) = memchr::memchr(b'{', text.as_bytes()) else {
        return SesEvent::None;
    };
    let json = &text.as_bytes()[start..];
    if memchr::memmem::find(json, b"notificationType").is_none()
        && memchr::memmem::find(json, b"eventType").is_none()
    {
        return SesEvent::None;
    }
    // Mail transport wraps long lines: SNS marks each break with "!" + newline (+ space).
    // A raw newline can never be inside a JSON string, so undoing this is safe.
    let json = unwrap_long_lines(&text[start..]);
    let mut stream = serde_json::Deserializer::from_str(&json).into_iter::<Notification>();
    let Some(Ok(n)) = stream.next() else {
        return SesEvent::None;
    };
    if n.notification_type.is_none() && n.event_type.is_none() {
        if let Some(inner) = n
            .message
            .as_deref()
            .filter(|m| m.trim_start().starts_with('{'))
        {
            return parse(inner);
        }
    }
    let kind = n.notification_type.or(n.event_type).unwrap_or_default();
    match kind.as_str() {
        "Bounce" => {
            let b = n.bounce.unwrap_or(Bounce {
                bounced_recipients: Vec::new(),
                reporting_mta: None,
            });
            let recipients = b
                .bounced_recipients
                .into_iter()
                .map(|r| {
                    let mut f = RecipientFacts {
                        recipient: Some(r.email_address),
                        action: r
                            .action
                            .map(|a| a.to_ascii_lowercase())
                            .or(Some("failed".into())),
                        status: r.status.as_deref().and_then(diag::status),
                        diagnostic: r
                            .diagnostic_code
                            .map(|d| super::fields::strip_type(&d).to_string()),
                        ..Default::default()
                    };
                    super::dsn::complete_from_diagnostic(&mut f);
                    f
                })
                .collect();
            SesEvent::Bounce {
                reporting_mta: b
                    .reporting_mta
                    .map(|m| super::fields::strip_type(&m).to_string()),
                recipients,
            }
        }
        "Complaint" => {
            let c = n.complaint.unwrap_or(Complaint {
                complained_recipients: Vec::new(),
                complaint_feedback_type: None,
            });
            SesEvent::Complaint {
                feedback_type: c.complaint_feedback_type,
                recipients: c
                    .complained_recipients
                    .into_iter()
                    .map(|a| a.email_address)
                    .collect(),
            }
        }
        "Delivery" => {
            let d = n.delivery.unwrap_or(Delivery {
                recipients: Vec::new(),
                smtp_response: None,
                reporting_mta: None,
            });
            let response = d.smtp_response;
            SesEvent::Delivery {
                reporting_mta: d.reporting_mta,
                recipients: d
                    .recipients
                    .into_iter()
                    .map(|r| RecipientFacts {
                        recipient: Some(r),
                        action: Some("delivered".into()),
                        status: response.as_deref().and_then(diag::status),
                        reply_code: response.as_deref().and_then(diag::reply_code),
                        diagnostic: response.clone(),
                        ..Default::default()
                    })
                    .collect(),
            }
        }
        _ => SesEvent::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_notification_gives_recipient_facts() {
        let text = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"bob@example.org","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"reportingMTA":"dsn; a1.smtp-out.amazonses.com"}}
--
If you wish to stop receiving notifications..."#;
        let SesEvent::Bounce {
            reporting_mta,
            recipients,
        } = parse(text)
        else {
            panic!("not a bounce");
        };
        assert_eq!(reporting_mta.as_deref(), Some("a1.smtp-out.amazonses.com"));
        assert_eq!(recipients[0].recipient.as_deref(), Some("bob@example.org"));
        assert_eq!(recipients[0].reply_code, Some(550));
        assert_eq!(
            recipients[0].diagnostic.as_deref(),
            Some("550 5.1.1 user unknown")
        );
    }

    #[test]
    fn sns_envelope_is_unwrapped() {
        let text = r#"{"Type":"Notification","Message":"{\"notificationType\":\"Bounce\",\"bounce\":{\"bouncedRecipients\":[{\"emailAddress\":\"bob@example.org\",\"status\":\"5.1.1\"}]}}"}"#;
        let SesEvent::Bounce { recipients, .. } = parse(text) else {
            panic!("not a bounce");
        };
        assert_eq!(recipients[0].recipient.as_deref(), Some("bob@example.org"));
    }

    #[test]
    fn complaint_and_garbage() {
        let c = parse(
            r#"{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"c@example.org"}],"complaintFeedbackType":"abuse"}}"#,
        );
        assert_eq!(
            c,
            SesEvent::Complaint {
                feedback_type: Some("abuse".into()),
                recipients: vec!["c@example.org".into()]
            }
        );
        assert_eq!(parse("{ not json notificationType"), SesEvent::None);
    }
}
