//! How classification weighs the evidence of one failure (classify.rs): the order of
//! reasons, decisive wording, provider rules, inferred codes and local delivery
//! failures, checked with the built-in rule packs.

use bouncelens::classify::classify_message;
use bouncelens::model::{Lang, MessageKind, ParsedMessage, Reason, RecipientFacts, Row};
use bouncelens::rules::RuleSet;

struct Case<'a> {
    recipient: &'a str,
    status: Option<&'a str>,
    inferred: bool,
    diagnostic: Option<&'a str>,
    command: Option<&'a str>,
}

const BASE: Case<'static> = Case {
    recipient: "bob@example.org",
    status: None,
    inferred: false,
    diagnostic: None,
    command: None,
};

fn row(c: Case<'_>) -> Row {
    let rules = RuleSet::builtin().unwrap();
    let facts = RecipientFacts {
        recipient: Some(c.recipient.to_string()),
        action: Some("failed".into()),
        status: c.status.map(|s| s.parse().unwrap()),
        status_inferred: c.inferred,
        reply_code: c.diagnostic.and_then(bouncelens::parse::diag::reply_code),
        diagnostic: c.diagnostic.map(str::to_string),
        smtp_command: c.command.map(str::to_string),
        ..Default::default()
    };
    let msg = ParsedMessage {
        kind: MessageKind::Dsn,
        format: "rfc3464",
        recipients: vec![facts],
        ..Default::default()
    };
    classify_message(&msg, &rules, Lang::En, "test", 0).remove(0)
}

#[test]
fn a_full_mailbox_outranks_unknown_user_wording() {
    let r = row(Case {
        status: Some("5.2.2"),
        diagnostic: Some("smtp; 550 5.2.2 <bob@example.org>... User unknown or mailbox full"),
        ..BASE
    });
    assert_eq!(r.reason, Reason::Mailboxfull);
}

#[test]
fn unknown_user_is_a_bad_address_only_at_rcpt() {
    let unknown = |command| Case {
        status: Some("5.0.0"),
        inferred: true,
        diagnostic: Some("550 User unknown"),
        command,
        ..BASE
    };
    let at_rcpt = row(unknown(Some("RCPT")));
    assert_eq!(at_rcpt.reason, Reason::Userunknown);
    assert_eq!(at_rcpt.hard_bounce, Some(true));
    let unsaid = row(unknown(None));
    assert_eq!(unsaid.reason, Reason::Filtered);
    assert_eq!(unsaid.hard_bounce, Some(false));
    assert_eq!(row(unknown(Some("DATA"))).reason, Reason::Filtered);
}

#[test]
fn provider_vocabulary_comes_first() {
    // au (KDDI) answers its domain filter with "550 : User unknown", no address.
    let filter = row(Case {
        recipient: "neko@ezweb.ne.jp",
        diagnostic: Some("550 : User unknown"),
        command: Some("RCPT"),
        ..BASE
    });
    assert_eq!(filter.reason, Reason::Filtered);
    let unknown = row(Case {
        recipient: "neko@ezweb.ne.jp",
        diagnostic: Some("550 <neko@ezweb.ne.jp>: User unknown"),
        ..BASE
    });
    assert_eq!(unknown.reason, Reason::Userunknown);
}

#[test]
fn dns_trouble_under_an_unroutable_code_is_a_network_error() {
    let r = row(Case {
        status: Some("5.4.4"),
        diagnostic: Some(
            "X-Postfix; Name service error for name=example.org type=MX: Malformed or unexpected name server reply",
        ),
        ..BASE
    });
    assert_eq!(r.reason, Reason::Networkerror);
    let plain = row(Case {
        status: Some("5.4.4"),
        diagnostic: Some("smtp; 550 5.4.4 unrouteable"),
        ..BASE
    });
    assert_eq!(plain.reason, Reason::Hostunknown);
}

#[test]
fn local_delivery_program_failures() {
    let r = row(Case {
        status: Some("5.0.0"),
        diagnostic: Some("X-Unix; 75"),
        ..BASE
    });
    assert_eq!(r.reason, Reason::Mailererror);
    // A specific code still says more than the exit status.
    let r = row(Case {
        status: Some("5.3.0"),
        diagnostic: Some("X-Unix; 77"),
        ..BASE
    });
    assert_eq!(r.reason, Reason::Systemerror);
}

#[test]
fn an_inferred_class_is_no_cause() {
    let silent = row(Case {
        status: Some("5.0.0"),
        inferred: true,
        ..BASE
    });
    assert_eq!(silent.reason, Reason::Undefined);
    let unclear = row(Case {
        status: Some("5.0.0"),
        inferred: true,
        diagnostic: Some("Something went wrong"),
        ..BASE
    });
    assert_eq!(unclear.reason, Reason::Onhold);
}

#[test]
fn wording_split_across_reply_lines_is_read_whole() {
    let r = row(Case {
        status: Some("5.7.1"),
        diagnostic: Some(
            "smtp; 550-5.7.1 Messages with multiple 550-5.7.1 addresses in From: header are not accepted",
        ),
        ..BASE
    });
    assert_eq!(r.reason, Reason::Notcompliantrfc);
}

#[test]
fn decisive_wording_beats_the_order_of_reasons() {
    // A Null MX is final whatever else the text or code says.
    let r = row(Case {
        status: Some("4.0.0"),
        diagnostic: Some(
            "DNS Error: The domain example.org doesn't receive email: returned Null MX",
        ),
        ..BASE
    });
    assert_eq!(r.reason, Reason::Notaccept);
}
