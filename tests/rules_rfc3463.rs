//! The RFC 3463 / IANA pack (`rules/rfc3463.toml`): every registered subject and detail
//! code of classes 4 and 5 has its own low-priority default rule, and unknown codes fall
//! back to the subject (`X.Y.0`) and class (`X.0.0`) defaults.

use std::sync::OnceLock;

use bouncelens::model::{Reason, StatusCode};
use bouncelens::rules::{MatchInput, RuleSet, RuleSource};

/// The IANA "SMTP Enhanced Status Codes" registry, subject and detail codes
/// (https://www.iana.org/assignments/smtp-enhanced-status-codes/): `(subject, highest detail)`.
/// X.0.0; X.1.0-X.1.10; X.2.0-X.2.4; X.3.0-X.3.5; X.4.0-X.4.7; X.5.0-X.5.6; X.6.0-X.6.10;
/// X.7.0-X.7.30.
const IANA: [(u16, u16); 8] = [
    (0, 0),
    (1, 10),
    (2, 4),
    (3, 5),
    (4, 7),
    (5, 6),
    (6, 10),
    (7, 30),
];

fn iana_codes() -> Vec<StatusCode> {
    let mut v = Vec::new();
    for class in [4u8, 5] {
        for (subject, high) in IANA {
            for detail in 0..=high {
                v.push(StatusCode::new(class, subject, detail));
            }
        }
    }
    v
}

/// The RFC 3463 pack on its own, loaded once for all tests.
fn rfc3463_only() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| {
        let pack: Vec<RuleSource> = RuleSource::builtin()
            .into_iter()
            .filter(|s| s.name.ends_with("rfc3463.toml"))
            .collect();
        assert_eq!(pack.len(), 1, "rules/rfc3463.toml is not compiled in");
        RuleSet::load(&[pack]).expect("rfc3463 pack loads on its own")
    })
}

fn code_only(code: StatusCode) -> MatchInput<'static> {
    MatchInput {
        status: Some(code),
        ..Default::default()
    }
}

fn has_japanese(s: &str) -> bool {
    s.chars()
        .any(|c| matches!(c, '\u{3040}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}'))
}

#[test]
fn pack_has_exactly_the_registry_codes() {
    let set = rfc3463_only();
    let mut ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    let mut want: Vec<String> = iana_codes()
        .into_iter()
        .map(|c| format!("rfc3463.{c}"))
        .collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    assert_eq!(set.len(), 160);
}

#[test]
fn every_registry_code_resolves_to_its_own_rule() {
    let set = rfc3463_only();
    for code in iana_codes() {
        let rule = set
            .resolve(&code_only(code))
            .unwrap_or_else(|| panic!("{code}: no rule"));
        assert_eq!(rule.id, format!("rfc3463.{code}"), "{code}");
        assert_eq!(rule.priority, -10, "{}: priority must be -10", rule.id);
        assert!(rule.text.is_empty() && rule.host.is_empty(), "{}", rule.id);
        assert_eq!(
            rule.status
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            [code.to_string()],
            "{}",
            rule.id
        );
    }
}

#[test]
fn every_rule_is_complete_in_both_languages() {
    let set = rfc3463_only();
    for r in set.rules() {
        for (lang, t) in [("en", &r.en), ("ja", &r.ja)] {
            assert!(
                !t.title.is_empty() && !t.advice.is_empty(),
                "{} {lang}",
                r.id
            );
            assert!(t.advice.len() >= 40, "{} {lang}: advice too short", r.id);
        }
        assert!(has_japanese(&r.ja.title), "{}: ja title", r.id);
        assert!(has_japanese(&r.ja.advice), "{}: ja advice", r.id);
        assert_eq!(r.en.steps.len(), r.ja.steps.len(), "{}: steps differ", r.id);
        assert!(
            r.reference
                .as_deref()
                .is_some_and(|u| u.starts_with("https://www.iana.org/")),
            "{}",
            r.id
        );
    }
}

#[test]
fn temporary_codes_say_they_are_temporary() {
    let set = rfc3463_only();
    for r in set.rules() {
        let temporary = r.id.starts_with("rfc3463.4.");
        assert_eq!(
            r.en.advice.starts_with("Temporary failure"),
            temporary,
            "{}: {}",
            r.id,
            r.en.advice
        );
        assert_eq!(
            r.ja.advice.starts_with("一時的なエラーです"),
            temporary,
            "{}",
            r.id
        );
        assert_eq!(r.en.title.ends_with("(temporary)"), temporary, "{}", r.id);
        assert_eq!(r.ja.title.ends_with("（一時的）"), temporary, "{}", r.id);
    }
}

#[test]
fn unknown_codes_fall_back_to_subject_then_class_defaults() {
    let set = rfc3463_only();
    let id = |s: &str| {
        set.resolve(&code_only(s.parse().unwrap()))
            .map(|r| r.id.clone())
    };
    assert_eq!(id("5.1.99").as_deref(), Some("rfc3463.5.1.0"));
    assert_eq!(id("4.2.77").as_deref(), Some("rfc3463.4.2.0"));
    assert_eq!(id("5.7.509").as_deref(), Some("rfc3463.5.7.0"));
    assert_eq!(id("5.9.1").as_deref(), Some("rfc3463.5.0.0"));
    assert_eq!(id("4.0.947").as_deref(), Some("rfc3463.4.0.0"));
    assert_eq!(id("2.1.5"), None, "success codes are not failures");
}

/// Reasons the field's reference analyser (Sisimai, `Sisimai::SMTP::Status`) gives these
/// codes on their own; the corpus labels depend on them.
#[test]
fn reasons_agree_with_sisimai_status_table() {
    let set = rfc3463_only();
    let cases = [
        ("5.1.1", Reason::Userunknown),
        ("5.1.2", Reason::Hostunknown),
        ("5.1.6", Reason::Hasmoved),
        ("5.1.8", Reason::Rejected),
        ("5.1.10", Reason::Notaccept),
        ("5.2.1", Reason::Filtered),
        ("5.2.2", Reason::Mailboxfull),
        ("5.2.3", Reason::Exceedlimit),
        ("5.3.4", Reason::Mesgtoobig),
        ("5.4.4", Reason::Hostunknown),
        ("5.5.3", Reason::Toomanyconn),
        ("5.6.0", Reason::Contenterror),
        ("5.7.1", Reason::Securityerror),
        ("5.7.13", Reason::Suspend),
        ("5.7.23", Reason::Authfailure),
        ("5.7.25", Reason::Requireptr),
        ("5.7.26", Reason::Authfailure),
        ("5.7.27", Reason::Notaccept),
        ("5.7.30", Reason::Failedstarttls),
        ("4.2.2", Reason::Mailboxfull),
        ("4.3.2", Reason::Notaccept),
        ("4.4.1", Reason::Expired),
        ("4.4.7", Reason::Expired),
        ("4.7.1", Reason::Blocked),
        ("4.7.26", Reason::Authfailure),
    ];
    for (code, reason) in cases {
        let r = set.resolve(&code_only(code.parse().unwrap())).unwrap();
        assert_eq!(r.reason, reason, "{code} ({})", r.id);
    }
}

/// With every built-in pack loaded, a registry code is still explained by a rule written
/// for that exact code: its own default, or a pack rule that overrides it.
#[test]
fn builtin_set_explains_every_registry_code_exactly() {
    let set = RuleSet::builtin().expect("built-in packs load");
    for code in iana_codes() {
        let best = set
            .candidates(&code_only(code))
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{code}: no rule"));
        assert_eq!(
            best.rank.code,
            bouncelens::rules::CodeTier::Exact,
            "{code} resolved to {} at {:?}",
            best.rule.id,
            best.rank.code
        );
        let own = set.get(&format!("rfc3463.{code}")).unwrap();
        assert!(
            best.rule.id == own.id || best.rule.priority > own.priority,
            "{code}: {} does not override {}",
            best.rule.id,
            own.id
        );
    }
}
