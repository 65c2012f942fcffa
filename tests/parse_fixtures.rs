//! Parsing and classification of hand-written fixtures (tests/fixtures), one per
//! format the parser handles. Each asserts the facts a row must carry.

use bouncelens::classify;
use bouncelens::model::{Lang, MessageKind, Reason, Row, StatusCode};
use bouncelens::parse;
use bouncelens::rules::RuleSet;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn rows(name: &str) -> Vec<Row> {
    let rules = RuleSet::builtin().unwrap();
    classify::analyze(&fixture(name), &rules, Lang::En, name)
}

#[test]
fn rfc3464_report_gives_one_row_per_recipient_in_order() {
    let r = rows("postfix-two-recipients.eml");
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].recipient.as_deref(), Some("bob@example.org"));
    assert_eq!(r[0].status.as_deref(), Some("5.1.1"));
    assert_eq!(r[0].reply_code, Some(550));
    assert_eq!(r[0].reason, Reason::Userunknown);
    assert_eq!(r[0].hard_bounce, Some(true));
    assert_eq!(r[0].permanent, Some(true));
    assert_eq!(r[0].remote_mta.as_deref(), Some("mx.example.org"));
    assert_eq!(r[0].reporting_mta.as_deref(), Some("mx.example.com"));
    assert_eq!(r[0].format, "rfc3464");
    assert_eq!(r[1].recipient.as_deref(), Some("carol@example.net"));
    assert_eq!(r[1].action.as_deref(), Some("delayed"));
    assert_eq!(r[1].reason, Reason::Mailboxfull);
    assert_eq!(r[1].permanent, Some(false));
    assert_eq!(r[1].hard_bounce, Some(false));
    assert_eq!(
        r[0].original.message_id.as_deref(),
        Some("<orig-1@example.com>")
    );
    assert_eq!(r[0].original.subject.as_deref(), Some("Quarterly report"));
    assert!(r[0].cause.is_some());
}

#[test]
fn regression_exim_bounce_with_auto_replied_header_is_still_a_bounce() {
    let r = rows("exim-auto-replied.eml");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].recipient.as_deref(), Some("dave@example.org"));
    assert_eq!(r[0].reason, Reason::Userunknown);
    assert_eq!(r[0].status.as_deref(), Some("5.1.1"));
    assert_eq!(r[0].format, "exim");
    assert_eq!(
        r[0].original.message_id.as_deref(),
        Some("<orig-2@example.com>")
    );
    let parsed = parse::parse_message(&fixture("exim-auto-replied.eml"));
    assert_eq!(parsed.kind, MessageKind::Dsn);
    assert_eq!(parsed.recipients[0].smtp_command.as_deref(), Some("RCPT"));
}

#[test]
fn out_of_office_reply_is_vacation_not_a_failure() {
    let r = rows("vacation.eml");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].reason, Reason::Vacation);
    assert_eq!(r[0].recipient.as_deref(), Some("erin@example.org"));
    assert_eq!(r[0].permanent, None);
    assert_eq!(r[0].hard_bounce, None);
}

#[test]
fn arf_report_is_feedback_with_its_type() {
    let r = rows("arf-abuse.eml");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].reason, Reason::Feedback);
    assert_eq!(r[0].feedback_type.as_deref(), Some("abuse"));
    assert_eq!(r[0].recipient.as_deref(), Some("frank@isp.example.net"));
    assert_eq!(r[0].original.subject.as_deref(), Some("Newsletter"));
}

#[test]
fn mbox_messages_get_their_own_index_and_delivered_is_recognised() {
    let r = rows("two-messages.mbox");
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].message_index, r[0].reason), (0, Reason::Mailboxfull));
    assert_eq!((r[1].message_index, r[1].reason), (1, Reason::Delivered));
    assert_eq!(r[1].permanent, None);
}

#[test]
fn exchange_ndr_reads_administrator_section() {
    let r = rows("exchange-ndr.eml");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].recipient.as_deref(), Some("ronald@contoso.example"));
    assert_eq!(r[0].status.as_deref(), Some("5.7.1"));
    assert_eq!(r[0].reply_code, Some(530));
    assert_eq!(
        r[0].reporting_mta.as_deref(),
        Some("alpineskihouse.example")
    );
    assert_eq!(
        r[0].original.message_id.as_deref(),
        Some("<orig-4@example.com>")
    );
    assert_eq!(r[0].format, "exchange");
}

#[test]
fn unlabelled_iso_2022_jp_notice_decodes_and_classifies() {
    let parsed = parse::parse_message(&fixture("japanese-unlabelled.eml"));
    assert!(
        parsed
            .notice
            .as_deref()
            .unwrap_or("")
            .contains("メールボックスが一杯"),
        "{:?}",
        parsed.notice
    );
    assert_eq!(parsed.recipients.len(), 1);
    assert_eq!(
        parsed.recipients[0].recipient.as_deref(),
        Some("ivan@example.ne.jp")
    );
    let r = rows("japanese-unlabelled.eml");
    assert_eq!(r[0].reason, Reason::Mailboxfull);
    assert_eq!(
        r[0].status.as_deref().map(|s| s.starts_with('5')),
        Some(true)
    );
}

#[test]
fn message_with_no_recipient_still_gives_one_row() {
    let rules = RuleSet::builtin().unwrap();
    let r = classify::analyze(
        b"Subject: hello\r\n\r\njust a note\r\n",
        &rules,
        Lang::En,
        "x",
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].recipient, None);
    assert!(matches!(r[0].reason, Reason::Undefined | Reason::Onhold));
}

#[test]
fn garbage_never_panics() {
    for input in [&b""[..], b"\xff\xfe\x00", b"From x y\n\nFrom ", b"Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: message/delivery-status\n\nFinal-Recipient: ;\n--x"] {
        let _ = parse::parse_message(input);
        let _ = parse::split_mbox(input);
    }
    assert_eq!(StatusCode::find_in("5.1.1"), Some(StatusCode::new(5, 1, 1)));
}

#[test]
fn ses_event_inside_an_sns_envelope() {
    let r = rows("ses-sns-envelope.eml");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].format, "amazonses");
    assert_eq!(r[0].recipient.as_deref(), Some("tess@example.net"));
    assert_eq!(r[0].status.as_deref(), Some("5.1.1"));
    assert_eq!(r[0].reply_code, Some(550));
    assert_eq!(r[0].reason, Reason::Userunknown);
}

#[test]
fn forwarded_bounce_is_read_from_the_inner_report() {
    let r = rows("forwarded-report.eml");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].recipient.as_deref(), Some("pat@example.net"));
    assert_eq!(r[0].status.as_deref(), Some("5.1.1"));
    assert_eq!(r[0].reason, Reason::Userunknown);
    assert_eq!(r[0].hard_bounce, Some(true));
}

#[test]
fn multipart_with_unreadable_boundary_still_gives_its_notice() {
    let r = rows("unfolded-boundary.eml");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].recipient.as_deref(), Some("quinn@example.net"));
    assert_eq!(r[0].reply_code, Some(550));
    // "No such user" without the failing command named: not proof of a bad address.
    assert_eq!(r[0].reason, Reason::Filtered);
    assert_eq!(r[0].hard_bounce, Some(false));
    let parsed = parse::parse_message(&fixture("unfolded-boundary.eml"));
    // "RCPT TO: quinn@..." in "Message details" is a listing, not the failing command.
    assert_eq!(parsed.recipients[0].smtp_command, None);
}

#[test]
fn reason_written_before_the_address_belongs_to_it() {
    let r = rows("notes-reason-first.eml");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].recipient.as_deref(), Some("riley@notes.example.net"));
    assert_eq!(r[0].reason, Reason::Userunknown);
    assert!(r[0]
        .diagnostic
        .as_deref()
        .unwrap()
        .contains("not listed in public Name & Address Book"));
}

#[test]
fn sendmail_transcript_lines_go_to_the_summary_line_that_follows() {
    let r = rows("sendmail-v5-transcript.eml");
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].recipient.as_deref(), Some("sam@example.org"));
    assert_eq!(r[0].reason, Reason::Norelaying);
    assert!(!r[0].diagnostic.as_deref().unwrap().contains("Host unknown"));
    assert_eq!(r[1].recipient.as_deref(), Some("lee@example.invalid"));
    assert_eq!(r[1].reason, Reason::Hostunknown);
    let parsed = parse::parse_message(&fixture("sendmail-v5-transcript.eml"));
    assert_eq!(parsed.recipients[0].smtp_command.as_deref(), Some("MAIL"));
}

#[test]
fn complaint_about_mail_to_undisclosed_recipients_still_gives_a_row() {
    let r = rows("arf-undisclosed.eml");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].reason, Reason::Feedback);
    assert_eq!(r[0].feedback_type.as_deref(), Some("abuse"));
    assert_eq!(r[0].recipient.as_deref(), Some("Undisclosed Recipients"));
}

#[test]
fn powermta_bounce_category_is_the_reporting_mtas_verdict() {
    let r = rows("powermta-category.eml");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].recipient.as_deref(), Some("sam@example.net"));
    assert_eq!(r[0].status.as_deref(), Some("5.2.1"));
    assert_eq!(r[0].reason, Reason::Userunknown);
    assert_eq!(r[0].hard_bounce, Some(true));
}
