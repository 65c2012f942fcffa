//! Regressions in which rule a real server's wording lands on, each named after the
//! mistake it pins. Bounces are built here as minimal RFC 3464 reports and run through
//! the whole parse + classify path with the built-in rules.

use bouncelens::classify;
use bouncelens::model::{Lang, Reason, Row};
use bouncelens::rules::RuleSet;

fn dsn(status: &str, diagnostic: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.org\r\n\
         To: alice@example.com\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.example.org\r\n\r\n\
         Final-Recipient: rfc822; bob@example.net\r\n\
         Action: failed\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; {diagnostic}\r\n\
         --b--\r\n"
    )
    .into_bytes()
}

fn classify_one(status: &str, diagnostic: &str) -> Row {
    let rules = RuleSet::builtin().expect("built-in rules load");
    let mut rows = classify::analyze(&dsn(status, diagnostic), &rules, Lang::En, "t");
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.remove(0)
}

#[test]
fn gmail_must_authenticate_with_spf_or_dkim_is_authfailure_not_smtp_auth() {
    let row = classify_one(
        "5.7.26",
        "550-5.7.26 The sender must authenticate with at least SPF or DKIM",
    );
    assert_eq!(row.reason, Reason::Authfailure);
    assert_eq!(row.cause.unwrap().id, "text.authfailure");
}

#[test]
fn smtp_auth_demand_stays_securityerror() {
    let row = classify_one("5.7.0", "530 5.7.0 You must authenticate first");
    assert_eq!(row.reason, Reason::Securityerror);
}

#[test]
fn extended_inactivity_is_a_suspended_mailbox_not_a_filter() {
    let row = classify_one(
        "5.2.1",
        "552 5.2.1 Due to extended inactivity new mail is not currently being accepted for this mailbox",
    );
    assert_eq!(row.reason, Reason::Suspend);
}
