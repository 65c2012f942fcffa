//! Advice mail as recipients see it: content, language, threading, the attached bounce,
//! routing refusals and digests — each sent by the real `Advisor` through lettre's SMTP
//! client to a capturing SMTP server on loopback, then parsed with mail-parser.

#[path = "common/advice_fixture.rs"]
mod fixture;
#[path = "common/smtp_capture.rs"]
mod smtp_capture;

use std::time::Duration;

use bouncelens::model::{Lang, MessageKind};
use fixture::{
    attached, config, parse, part_text, raw_header, structure, with_smarthost, Bounce, Running,
};
use smtp_capture::{Mode, SmtpCapture};

const ALICE: &str = "Alice Example <alice@example.com>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn english_advice_is_threaded_multipart_with_the_bounce_attached() {
    let (_dir, smtp, adv) = with_smarthost(Mode::Accept, Lang::En, |_| {}).await;
    let bounce = Bounce::new("Q1", ALICE, "bob@example.org", "5.1.1");
    adv.submit(&bounce).await;

    let mails = smtp.wait_for(1).await;
    let sent = &mails[0];
    assert_eq!(sent.mail_from, "", "envelope sender must be null");
    assert_eq!(sent.rcpt_to, ["alice@example.com"]);
    assert!(sent.data.is_ascii(), "advice mail must be 7-bit clean");
    let m = parse(&sent.data);

    // Headers.
    assert_eq!(
        m.from().unwrap().first().unwrap().address(),
        Some(fixture::FROM)
    );
    assert_eq!(
        m.to().unwrap().first().unwrap().address(),
        Some("alice@example.com")
    );
    assert_eq!(raw_header(&m, "Auto-Submitted"), "auto-generated");
    let id = m.message_id().unwrap();
    assert!(
        id.starts_with("advice.") && id.ends_with("@bounces.example.com"),
        "{id}"
    );
    assert_eq!(raw_header(&m, "In-Reply-To"), "<orig-Q1@mail.example.com>");
    assert!(raw_header(&m, "References").contains("<orig-Q1@mail.example.com>"));
    assert_eq!(
        m.subject().unwrap(),
        "Not delivered to bob@example.org: The recipient's address does not exist"
    );
    assert!(raw_header(&m, "X-Bouncelens-Advice").contains("cause=test.5.1.1.bad-mailbox"));

    // Structure: mixed [ alternative [ plain, html ], the bounce ].
    assert_eq!(
        structure(&m),
        [
            "multipart/mixed",
            "multipart/alternative",
            "text/plain",
            "text/html",
            "message/rfc822"
        ]
    );

    // Plain text: what happened, who fixes it, numbered steps, details for admins.
    let text = part_text(&m, "text/plain");
    for want in [
        "Your message \"Quarterly report <Q3> & \"plans\"\" to bob@example.org could not be delivered: The recipient's address does not exist.",
        "The receiving server says there is no mailbox with this address.",
        "Who must fix it: You (the sender)",
        "[x] You (the sender)   [ ] Your mail administrator   [ ] The recipient's side",
        "  1. Check the spelling of the address, e.g. <bob@example.org> & its domain.",
        "  2. Remove the address from your autocomplete list and type it again.",
        "  3. Send the message again.",
        "Details for administrators",
        "Recipient: bob@example.org",
        "Status: 5.1.1",
        "Reply code: 550",
        "Diagnostic: smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected",
        "Reporting server: mail.example.org",
        "Remote server: mx.example.org",
        "Original Message-ID: <orig-Q1@mail.example.com>",
        "Original subject: Quarterly report <Q3> & \"plans\"",
        "Original date: Tue, 14 May 2024 09:12:30 +0000",
        "Cause (rule): test.5.1.1.bad-mailbox",
        "The bounce (non-delivery report) is attached.",
    ] {
        assert!(text.contains(want), "text lacks {want:?}:\n{text}");
    }
    // The steps come in order.
    let pos = |s: &str| text.find(s).unwrap();
    assert!(pos("  1. ") < pos("  2. ") && pos("  2. ") < pos("  3. "));
    assert!(pos("Who must fix it") < pos("  1. ") && pos("  3. ") < pos("Details for"));

    // HTML: the same content, everything from the bounce and rules escaped.
    let html = part_text(&m, "text/html");
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("Quarterly report &lt;Q3&gt; &amp; &quot;plans&quot;"));
    assert!(!html.contains("<Q3>"), "unescaped bounce text in HTML");
    assert!(html.contains("e.g. &lt;bob@example.org&gt; &amp; its domain."));
    assert!(html.contains("&#10004; You (the sender)"));
    assert_eq!(html.matches("<li").count(), 3);
    assert!(html.contains("smtp; 550 5.1.1 &lt;bob@example.org&gt;: Recipient address rejected"));
    assert!(!html.contains("<script"));

    // The attachment is the bounce as received.
    let att = attached(&m);
    assert_eq!(att.len(), 1);
    assert_eq!(
        att[0].subject(),
        Some("Undelivered Mail Returned to Sender")
    );
    assert_eq!(att[0].message_id(), Some("dsn-Q1@mail.example.org"));
    assert_eq!(att[0].raw_message(), bounce.raw().as_bytes());

    adv.until("the sent counter", |a| a.count("sender", "sent") == 1)
        .await;
    assert_eq!(adv.count("sender", "queued"), 1);
    adv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn japanese_advice_is_encoded_and_tells_the_sender_whom_to_ask() {
    let (_dir, smtp, adv) = with_smarthost(Mode::Accept, Lang::Ja, |_| {}).await;
    let mut bounce = Bounce::new(
        "QJ",
        "山田 <yamada@example.com>",
        "sato@example.net",
        "5.7.12",
    );
    bounce.subject = "会議の件".into();
    adv.submit(&bounce).await;

    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].rcpt_to, ["yamada@example.com"]);
    assert!(
        mails[0].data.is_ascii(),
        "Japanese must be MIME-encoded, not raw 8-bit"
    );
    let m = parse(&mails[0].data);
    let raw_subject = raw_header(&m, "Subject");
    assert!(
        raw_subject.to_ascii_lowercase().contains("=?utf-8?"),
        "{raw_subject}"
    );
    assert_eq!(
        m.subject().unwrap(),
        "sato@example.net に配信できませんでした: 受信者は組織内からのメールのみ受け付けます"
    );
    assert_eq!(raw_header(&m, "Content-Language"), "ja");
    assert_eq!(raw_header(&m, "In-Reply-To"), "<orig-QJ@mail.example.com>");

    let text = part_text(&m, "text/plain");
    for want in [
        "あなたが sato@example.net 宛てに送信したメッセージ「会議の件」は配信できませんでした: 受信者は組織内からのメールのみ受け付けます。",
        "受信者のアドレスは、組織外からのメッセージを拒否するよう設定されています。",
        "対応が必要な人: 受信者側のメール管理者",
        "[ ] あなた (送信者)   [ ] あなたのメール管理者   [x] 受信者側",
        "この問題は受信者側のメール管理者にしか解決できません。",
        "対処方法",
        "  1. 受信者のメール管理者に、このアドレスへの組織外からの送信を許可するよう依頼してもらいます。",
        "管理者向けの詳細情報",
        "ステータス コード: 5.7.12",
        "応答コード: 550",
        "元のメッセージ ID: <orig-QJ@mail.example.com>",
        "元の件名: 会議の件",
        "配信不能レポート (NDR) を添付しています。",
    ] {
        assert!(text.contains(want), "text lacks {want:?}:\n{text}");
    }
    let html = part_text(&m, "text/html");
    assert!(html.contains("<html lang=\"ja\">"));
    assert!(html.contains("&#10004; 受信者側"));
    assert!(html.contains("対応が必要な人: 受信者側のメール管理者"));
    assert_eq!(attached(&m).len(), 1);
    adv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_backscatter_loops_null_senders_and_autoreplies() {
    let (dir, smtp, adv) = with_smarthost(Mode::Accept, Lang::En, |_| {}).await;

    // A forged sender outside our domains: backscatter.
    adv.bounce("B1", "mallory@elsewhere.test", "x@example.org", "5.1.1")
        .await;
    // Bounces of our own advice: by Message-ID, by header, by From.
    let mut own = Bounce::new("B2", "alice@example.com", "x@example.org", "5.1.1");
    own.message_id = Some("<advice.1715678000000-1-1@bounces.example.com>".into());
    adv.submit(&own).await;
    let mut marked = Bounce::new("B3", "alice@example.com", "x@example.org", "5.1.1");
    marked.extra_header = "X-Bouncelens-Advice: v=1; audience=sender".into();
    adv.submit(&marked).await;
    adv.bounce("B4", fixture::FROM, "x@example.org", "5.1.1")
        .await;
    // No sender to tell.
    adv.bounce("B5", "<>", "x@example.org", "5.1.1").await;
    adv.bounce("B6", "MAILER-DAEMON@example.com", "x@example.org", "5.1.1")
        .await;
    // An auto-reply (not advised unless configured).
    let mut ooo = Bounce::new("B7", "alice@example.com", "x@example.org", "5.1.1");
    ooo.kind = MessageKind::Autoreply;
    adv.submit(&ooo).await;
    // fix_by none: no mail at all, not even a refusal.
    adv.bounce("B8", "alice@example.com", "x@example.org", "4.4.7")
        .await;
    // The control: a real failure from our own domain, advised.
    adv.bounce("B9", "alice@example.com", "control@example.org", "5.1.1")
        .await;

    let mails = smtp.wait_for(1).await;
    adv.until("the control to be sent", |a| a.count("sender", "sent") == 1)
        .await;
    assert_eq!(
        smtp.mails().len(),
        1,
        "only the control may be sent: {:?}",
        mails.iter().map(|m| &m.rcpt_to).collect::<Vec<_>>()
    );
    assert!(parse(&mails[0].data)
        .subject()
        .unwrap()
        .contains("control@example.org"));
    assert_eq!(adv.count("sender", "queued"), 1, "nothing else was queued");
    assert_eq!(adv.count("sender", "suppressed_backscatter"), 1);
    assert_eq!(adv.count("sender", "suppressed_loop"), 3);
    assert_eq!(adv.count("sender", "suppressed_nosender"), 2);
    assert_eq!(adv.count("sender", "suppressed_autoreply"), 1);
    assert!(fixture::eml_files(&dir.path().join("queue")).is_empty());
    adv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_fix_by_with_overrides_verp_and_sender_header() {
    let (_dir, smtp, adv) = with_smarthost(Mode::Accept, Lang::En, |c| {
        c.smtp.verp = Some("bounces+{local}={domain}@bounces.example.com".into());
        c.advice.route.reason.insert(
            bouncelens::model::Reason::Mailboxfull,
            bouncelens::config::Audience::Both,
        );
    })
    .await;

    // sender_admin -> the admins, told it is theirs to fix.
    adv.bounce("R1", "alice@example.com", "r1@example.org", "5.7.708")
        .await;
    // VERP decodes the real sender even though From says otherwise.
    let mut verp = Bounce::new("R2", "alice@example.com", "r2@example.org", "5.1.1");
    verp.envelope_to = "bounces+carol=example.com@bounces.example.com".into();
    adv.submit(&verp).await;
    // Without VERP the Sender: header wins over From:.
    let mut sender = Bounce::new("R3", "list@example.com", "r3@example.org", "5.1.1");
    sender.sender = Some("Dave <dave@example.com>".into());
    adv.submit(&sender).await;
    // A reason override to "both": the sender and the admins.
    adv.bounce("R4", "erin@example.com", "r4@example.org", "5.2.2")
        .await;

    let mails = smtp.wait_for(5).await;
    let find = |rcpt_about: &str, to: &str| {
        mails
            .iter()
            .find(|m| {
                m.rcpt_to == [to]
                    && parse(&m.data)
                        .subject()
                        .is_some_and(|s| s.contains(rcpt_about))
            })
            .unwrap_or_else(|| panic!("no mail to {to} about {rcpt_about}"))
    };
    let admin = parse(&find("r1@example.org", fixture::ADMIN).data);
    let text = part_text(&admin, "text/plain");
    assert!(text.contains("A message \"Quarterly report"), "{text}");
    assert!(text.contains("from alice@example.com to r1@example.org"));
    assert!(text.contains("Who must fix it: You (the mail administrator)"));
    assert!(text.contains("Original sender: alice@example.com"));
    find("r2@example.org", "carol@example.com");
    find("r3@example.org", "dave@example.com");
    let to_erin = parse(&find("r4@example.org", "erin@example.com").data);
    let text = part_text(&to_erin, "text/plain");
    assert!(text.contains("Who must fix it: The recipient\n"), "{text}");
    assert!(text.contains("Only the recipient can fix this."));
    find("r4@example.org", fixture::ADMIN);
    assert_eq!(smtp.mails().len(), 5);
    adv.until("all sent", |a| {
        a.count("sender", "sent") == 3 && a.count("admin", "sent") == 2
    })
    .await;
    adv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bounce_for_several_recipients_gives_one_mail_listing_them_all() {
    let (_dir, smtp, adv) = with_smarthost(Mode::Accept, Lang::En, |_| {}).await;
    let b = Bounce::new("M1", "alice@example.com", "a1@example.org", "5.1.1")
        .and("a2@example.org", "5.1.1")
        .and("a3@example.org", "5.2.2");
    adv.submit(&b).await;
    let mails = smtp.wait_for(2).await;
    let subjects: Vec<String> = mails
        .iter()
        .map(|m| parse(&m.data).subject().unwrap().to_string())
        .collect();
    assert!(
        subjects.contains(
            &"Not delivered to a1@example.org and 1 more: The recipient's address does not exist"
                .to_string()
        ),
        "{subjects:?}"
    );
    assert!(subjects
        .contains(&"Not delivered to a3@example.org: The recipient's mailbox is full".to_string()));
    adv.until("both sent", |a| a.count("sender", "sent") == 2)
        .await;
    assert_eq!(smtp.mails().len(), 2);
    adv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_becomes_one_mail_now_and_one_digest_when_the_window_closes() {
    let (_dir, smtp, adv) = with_smarthost(Mode::Accept, Lang::En, |c| {
        c.advice.digest_window = Duration::from_secs(2);
    })
    .await;
    for n in 1..=3 {
        adv.bounce(
            &format!("S{n}"),
            "alice@example.com",
            &format!("s{n}@example.org"),
            "5.1.1",
        )
        .await;
    }
    // Another cause for the same sender has its own window: sent at once.
    adv.bounce("S9", "alice@example.com", "full@example.org", "5.2.2")
        .await;
    assert_eq!(adv.count("sender", "queued"), 2);
    assert_eq!(adv.count("sender", "suppressed_digest"), 2);

    let mails = smtp.wait_for(3).await;
    let parsed: Vec<_> = mails.iter().map(|m| parse(&m.data)).collect();
    let digest = parsed
        .iter()
        .find(|m| m.subject().unwrap().starts_with("Digest: "))
        .expect("a digest");
    assert_eq!(
        digest.subject().unwrap(),
        "Digest: Not delivered to s2@example.org and 1 more: The recipient's address does not exist"
    );
    let text = part_text(digest, "text/plain");
    assert!(text
        .contains("2 of your messages (2 recipients) could not be delivered for the same reason"));
    assert!(text.contains("Message 1 of 2") && text.contains("Message 2 of 2"));
    assert!(
        text.contains("Recipient: s2@example.org") && text.contains("Recipient: s3@example.org")
    );
    assert!(!text.contains("s1@example.org"), "s1 was advised already");
    assert_eq!(attached(digest).len(), 2);
    assert_eq!(
        raw_header(digest, "In-Reply-To"),
        "<orig-S2@mail.example.com>"
    );
    assert_eq!(
        raw_header(digest, "References"),
        "<orig-S2@mail.example.com> <orig-S3@mail.example.com>"
    );
    adv.until("three sent", |a| a.count("sender", "sent") == 3)
        .await;
    assert_eq!(smtp.mails().len(), 3);
    adv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_hourly_cap_advice_is_held_not_sent() {
    let (dir, smtp, adv) = with_smarthost(Mode::Accept, Lang::En, |c| {
        c.advice.hourly_cap = 1;
    })
    .await;
    adv.bounce("C1", "alice@example.com", "c1@example.org", "5.1.1")
        .await;
    adv.bounce("C2", "alice@example.com", "c2@example.org", "5.2.2")
        .await;
    assert_eq!(adv.count("sender", "queued"), 1);
    assert_eq!(adv.count("sender", "suppressed_cap"), 1);
    smtp.wait_for(1).await;
    adv.until("the first sent", |a| a.count("sender", "sent") == 1)
        .await;
    // The capped advice is held durably for a later digest, not dropped.
    let state = std::fs::read_to_string(dir.path().join("state/digest.json")).unwrap();
    assert!(state.contains("c2@example.org"), "{state}");
    assert_eq!(smtp.mails().len(), 1);
    assert!(fixture::eml_files(&dir.path().join("queue")).is_empty());
    adv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_digest_survives_a_restart_and_goes_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpCapture::start().await;
    let mut cfg = config(dir.path(), Some(smtp.url()), Lang::En);
    cfg.advice.digest_window = Duration::from_secs(3);
    let first = Running::start(&cfg).await;
    for n in 1..=2 {
        first
            .bounce(
                &format!("P{n}"),
                "alice@example.com",
                &format!("p{n}@example.org"),
                "5.1.1",
            )
            .await;
    }
    assert_eq!(first.count("sender", "suppressed_digest"), 1);
    let first_metrics = first.metrics.clone();
    first.stop().await;

    let second = Running::start(&cfg).await;
    let mails = smtp.wait_for(2).await;
    let subjects: Vec<String> = mails
        .iter()
        .map(|m| parse(&m.data).subject().unwrap().to_string())
        .collect();
    assert!(subjects.iter().any(|s| s.contains("p1@example.org")));
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("Not delivered to p2@example.org")),
        "{subjects:?}"
    );
    // The first advice went out before or after the restart; the digest after it.
    let sent_before = first_metrics
        .advice_emails_total
        .with_label_values(&["sender", "sent"])
        .get();
    second
        .until("both sent", |a| {
            sent_before + a.count("sender", "sent") == 2
        })
        .await;
    // Nothing is left that could be sent again.
    let state = std::fs::read_to_string(dir.path().join("state/digest.json")).unwrap();
    assert!(!state.contains("p2@example.org"), "{state}");
    assert!(fixture::eml_files(&dir.path().join("queue")).is_empty());
    assert!(fixture::eml_files(&dir.path().join("state/raw")).is_empty());
    assert_eq!(smtp.mails().len(), 2);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_mode_writes_eml_files_for_any_sender() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), None, Lang::En);
    cfg.advice.own_domains.clear();
    let adv = Running::start(&cfg).await;
    adv.bounce("O1", "someone@anywhere.test", "o1@example.org", "5.1.1")
        .await;
    // Written before submit returned.
    let files = fixture::eml_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(adv.count("sender", "written"), 1);
    let bytes = std::fs::read(&files[0]).unwrap();
    let m = parse(&bytes);
    assert_eq!(
        m.to().unwrap().first().unwrap().address(),
        Some("someone@anywhere.test")
    );
    assert_eq!(raw_header(&m, "Auto-Submitted"), "auto-generated");
    assert_eq!(attached(&m).len(), 1);
    adv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_is_reported_as_a_delay_in_both_languages() {
    for (lang, subject, sentence) in [
        (
            Lang::En,
            "Delayed, not yet delivered to late@example.org: Delivery is delayed",
            "Your message \"Quarterly report <Q3> & \"plans\"\" to late@example.org has not been delivered yet: Delivery is delayed.",
        ),
        (
            Lang::Ja,
            "late@example.org への配信が遅れています: 配信が遅れています",
            "あなたが late@example.org 宛てに送信したメッセージ「Quarterly report <Q3> & \"plans\"」はまだ配信されていません: 配信が遅れています。",
        ),
    ] {
        let (_dir, smtp, adv) = with_smarthost(Mode::Accept, lang, |c| {
            // fix_by none is normally not advised; an override by cause id asks for it.
            c.advice.route.cause.insert(
                "test.4.4.7.expired".into(),
                bouncelens::config::Audience::Sender,
            );
        })
        .await;
        adv.bounce("L1", "alice@example.com", "late@example.org", "4.4.7")
            .await;
        let mails = smtp.wait_for(1).await;
        let m = parse(&mails[0].data);
        assert_eq!(m.subject().unwrap(), subject);
        let text = part_text(&m, "text/plain");
        assert!(text.contains(sentence), "{text}");
        adv.stop().await;
    }
}
