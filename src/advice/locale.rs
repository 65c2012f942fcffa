//! The fixed wording of advice mail in English and Japanese.
//!
//! Rule packs supply what is specific to a cause (title, advice, steps); this module
//! supplies the frame around it: the sentence saying what happened, the "who must fix
//! it" indicator (the seeds' user / admin picture), headings and labels. Keeping every
//! phrase here means a translator reads one file, and compose.rs holds no prose.

use super::route::AudienceKind;
use crate::model::{FixBy, Lang};

/// The three parties of the "who must fix it" indicator, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Sender,
    SenderAdmin,
    RecipientSide,
}

impl Party {
    pub const ALL: [Party; 3] = [Party::Sender, Party::SenderAdmin, Party::RecipientSide];

    /// The party a rule's `fix_by` lights up (`None` for "nobody").
    pub fn of(fix_by: FixBy) -> Option<Party> {
        match fix_by {
            FixBy::Sender => Some(Party::Sender),
            FixBy::SenderAdmin => Some(Party::SenderAdmin),
            FixBy::Recipient | FixBy::RecipientAdmin => Some(Party::RecipientSide),
            FixBy::None => None,
        }
    }
}

/// Labels of the details-for-admins table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Recipient,
    Action,
    Status,
    ReplyCode,
    Reason,
    Diagnostic,
    ReportingMta,
    RemoteMta,
    Cause,
    Reference,
    OriginalFrom,
    OriginalMessageId,
    OriginalSubject,
    OriginalDate,
    QueueId,
    Received,
}

/// What an advice mail's subject and first sentence are about.
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a> {
    pub audience: AudienceKind,
    /// Bounced messages covered (more than one: a digest).
    pub messages: usize,
    /// Recipients covered, and the first of them.
    pub recipients: usize,
    pub first: &'a str,
    /// The recipients, already shortened for a sentence ("a, b and 3 more").
    pub rcpts: &'a str,
    /// The original's subject, for a single message.
    pub subject: Option<&'a str>,
    pub sender: Option<&'a str>,
    /// The cause's title.
    pub title: &'a str,
    /// Every recipient is only delayed (the sending server is still retrying).
    pub delayed: bool,
}

/// Phrases in one language.
#[derive(Debug, Clone, Copy)]
pub struct Locale {
    pub lang: Lang,
}

impl Locale {
    pub fn new(lang: Lang) -> Locale {
        Locale { lang }
    }

    fn ja(&self) -> bool {
        self.lang == Lang::Ja
    }

    fn pick(&self, en: &'static str, ja: &'static str) -> &'static str {
        if self.ja() {
            ja
        } else {
            en
        }
    }

    /// The `Content-Language` / `<html lang>` tag.
    pub fn tag(&self) -> &'static str {
        self.pick("en", "ja")
    }

    /// Display name of the From address.
    pub fn from_name(&self) -> &'static str {
        self.pick("Mail delivery advice", "メール配信エラーのお知らせ")
    }

    /// How a recipient the bounce does not name is shown.
    pub fn unknown_recipient(&self) -> &'static str {
        self.pick("(unknown recipient)", "(宛先不明)")
    }

    /// Subject: who did not get the message, and why.
    pub fn subject(&self, s: &Summary<'_>) -> String {
        let prefix = match (s.messages > 1, self.ja()) {
            (false, _) => "",
            (true, false) => "Digest: ",
            (true, true) => "まとめ: ",
        };
        let who = match (s.recipients - 1, self.ja()) {
            (0, _) => s.first.to_string(),
            (n, false) => format!("{} and {n} more", s.first),
            (n, true) => format!("{} ほか {n} 件", s.first),
        };
        let title = s.title;
        match (s.delayed, self.ja()) {
            (false, false) => format!("{prefix}Not delivered to {who}: {title}"),
            (false, true) => format!("{prefix}{who} に配信できませんでした: {title}"),
            (true, false) => format!("{prefix}Delayed, not yet delivered to {who}: {title}"),
            (true, true) => format!("{prefix}{who} への配信が遅れています: {title}"),
        }
    }

    /// One sentence on what happened.
    pub fn what_happened(&self, s: &Summary<'_>) -> String {
        let title = s.title.trim_end_matches(['.', '。']);
        let (messages, recipients, rcpts) = (s.messages, s.recipients, s.rcpts);
        let failed_en = match (s.delayed, messages > 1) {
            (false, _) => "could not be delivered",
            (true, false) => "has not been delivered yet",
            (true, true) => "have not been delivered yet",
        };
        let failed_ja = if s.delayed {
            "まだ配信されていません"
        } else {
            "配信できませんでした"
        };
        if messages > 1 {
            return match (s.audience, self.ja()) {
                (AudienceKind::Sender, false) => format!(
                    "{messages} of your messages ({recipients} recipients) {failed_en} for the same reason: {title}."
                ),
                (AudienceKind::Admin, false) => format!(
                    "{messages} messages ({recipients} recipients) {failed_en} for the same reason: {title}."
                ),
                (AudienceKind::Sender, true) => format!(
                    "あなたが送信した {messages} 件のメッセージ (宛先 {recipients} 件) が同じ理由で{failed_ja}: {title}。"
                ),
                (AudienceKind::Admin, true) => format!(
                    "{messages} 件のメッセージ (宛先 {recipients} 件) が同じ理由で{failed_ja}: {title}。"
                ),
            };
        }
        let subj_en = s.subject.map(|x| format!(" \"{x}\"")).unwrap_or_default();
        let subj_ja = s.subject.map(|x| format!("「{x}」")).unwrap_or_default();
        match (s.audience, self.ja()) {
            (AudienceKind::Sender, false) => {
                format!("Your message{subj_en} to {rcpts} {failed_en}: {title}.")
            }
            (AudienceKind::Sender, true) => format!(
                "あなたが {rcpts} 宛てに送信したメッセージ{subj_ja}は{failed_ja}: {title}。"
            ),
            (AudienceKind::Admin, false) => format!(
                "A message{subj_en} from {} to {rcpts} {failed_en}: {title}.",
                s.sender.unwrap_or("an unknown sender")
            ),
            (AudienceKind::Admin, true) => format!(
                "{} から {rcpts} 宛てのメッセージ{subj_ja}は{failed_ja}: {title}。",
                s.sender.unwrap_or("送信者不明")
            ),
        }
    }

    /// "a, b, c and 2 more".
    pub fn list(&self, names: &[&str], shown: usize) -> String {
        let head = names[..names.len().min(shown)].join(", ");
        let rest = names.len().saturating_sub(shown);
        match (rest, self.ja()) {
            (0, _) => head,
            (n, false) => format!("{head} and {n} more"),
            (n, true) => format!("{head} ほか {n} 件"),
        }
    }

    pub fn who_heading(&self) -> &'static str {
        self.pick("Who must fix it", "対応が必要な人")
    }

    /// A party's name as the audience reads it ("you" where it is them).
    pub fn party(&self, party: Party, audience: AudienceKind) -> &'static str {
        match (party, audience) {
            (Party::Sender, AudienceKind::Sender) => {
                self.pick("You (the sender)", "あなた (送信者)")
            }
            (Party::Sender, AudienceKind::Admin) => self.pick("The sender", "送信者"),
            (Party::SenderAdmin, AudienceKind::Sender) => {
                self.pick("Your mail administrator", "あなたのメール管理者")
            }
            (Party::SenderAdmin, AudienceKind::Admin) => {
                self.pick("You (the mail administrator)", "あなた (メール管理者)")
            }
            (Party::RecipientSide, _) => self.pick("The recipient's side", "受信者側"),
        }
    }

    /// Who must act, precisely (the indicator groups recipient and their admin).
    pub fn fixer(&self, fix_by: FixBy, audience: AudienceKind) -> &'static str {
        match fix_by {
            FixBy::Sender => self.party(Party::Sender, audience),
            FixBy::SenderAdmin => self.party(Party::SenderAdmin, audience),
            FixBy::Recipient => self.pick("The recipient", "受信者"),
            FixBy::RecipientAdmin => self.pick(
                "The recipient's mail administrator",
                "受信者側のメール管理者",
            ),
            FixBy::None => self.pick(
                "Nobody: the problem is temporary and clears by itself",
                "対応不要 (一時的な問題で、自然に解消します)",
            ),
        }
    }

    /// What the reader should do with this mail when someone else must act.
    pub fn hint(&self, fix_by: FixBy, audience: AudienceKind) -> Option<&'static str> {
        Some(match (fix_by, audience) {
            (FixBy::Sender, AudienceKind::Sender) | (FixBy::SenderAdmin, AudienceKind::Admin) => {
                return None
            }
            (FixBy::SenderAdmin, AudienceKind::Sender) => self.pick(
                "Please forward this message to your mail administrator: the steps below are for them.",
                "このメールをあなたのメール管理者に転送してください。以下の手順は管理者向けです。",
            ),
            (FixBy::Sender, AudienceKind::Admin) => self.pick(
                "The sender has to act; pass the steps below on to them if needed.",
                "送信者による対応が必要です。必要に応じて以下の手順を送信者に伝えてください。",
            ),
            (FixBy::Recipient, _) => self.pick(
                "Only the recipient can fix this. Contact them another way (phone, another address) and pass on the steps below.",
                "この問題は受信者にしか解決できません。電話や別のアドレスなど別の方法で受信者に連絡し、以下の手順を伝えてください。",
            ),
            (FixBy::RecipientAdmin, _) => self.pick(
                "Only the recipient's mail administrator can fix this. Contact the recipient another way (phone, another address) and ask them to pass the steps below to their mail administrator.",
                "この問題は受信者側のメール管理者にしか解決できません。電話や別のアドレスなど別の方法で受信者に連絡し、以下の手順を先方のメール管理者に伝えてもらってください。",
            ),
            (FixBy::None, _) => self.pick(
                "Nothing needs to be done unless it keeps happening.",
                "繰り返し発生しない限り、対応は不要です。",
            ),
        })
    }

    pub fn steps_heading(&self) -> &'static str {
        self.pick("What to do", "対処方法")
    }

    pub fn details_heading(&self) -> &'static str {
        self.pick("Details for administrators", "管理者向けの詳細情報")
    }

    pub fn field(&self, f: Field) -> &'static str {
        match f {
            Field::Recipient => self.pick("Recipient", "宛先"),
            Field::Action => self.pick("Action", "アクション"),
            Field::Status => self.pick("Status", "ステータス コード"),
            Field::ReplyCode => self.pick("Reply code", "応答コード"),
            Field::Reason => self.pick("Reason", "理由"),
            Field::Diagnostic => self.pick("Diagnostic", "診断情報"),
            Field::ReportingMta => self.pick("Reporting server", "報告元サーバー"),
            Field::RemoteMta => self.pick("Remote server", "相手先サーバー"),
            Field::Cause => self.pick("Cause (rule)", "原因 (ルール)"),
            Field::Reference => self.pick("Reference", "参考情報"),
            Field::OriginalFrom => self.pick("Original sender", "元の送信者"),
            Field::OriginalMessageId => self.pick("Original Message-ID", "元のメッセージ ID"),
            Field::OriginalSubject => self.pick("Original subject", "元の件名"),
            Field::OriginalDate => self.pick("Original date", "元の送信日時"),
            Field::QueueId => self.pick("Bounce queue id", "NDR の受付 ID"),
            Field::Received => self.pick("Bounce received", "NDR の受信日時"),
        }
    }

    /// The heading of one bounce's block in a digest.
    pub fn message_heading(&self, n: usize, of: usize) -> String {
        match self.ja() {
            false => format!("Message {n} of {of}"),
            true => format!("メッセージ {n} / {of}"),
        }
    }

    pub fn more_recipients(&self, n: u64) -> String {
        match self.ja() {
            false => format!("... and {n} more recipients, not listed."),
            true => format!("ほか {n} 件の宛先は省略しました。"),
        }
    }

    pub fn attached(&self, attached: usize, messages: usize) -> String {
        match (attached == messages, attached, self.ja()) {
            (_, 0, false) => "The bounce could not be attached.".to_string(),
            (_, 0, true) => "NDR を添付できませんでした。".to_string(),
            (true, 1, false) => "The bounce (non-delivery report) is attached.".to_string(),
            (true, 1, true) => "配信不能レポート (NDR) を添付しています。".to_string(),
            (true, n, false) => format!("The {n} bounces are attached."),
            (true, n, true) => format!("{n} 件の NDR を添付しています。"),
            (false, k, false) => format!("The first {k} of {messages} bounces are attached."),
            (false, k, true) => format!("{messages} 件中、最初の {k} 件の NDR を添付しています。"),
        }
    }

    /// Bounces too large to attach whole.
    pub fn headers_only(&self, n: usize) -> String {
        match self.ja() {
            false => format!("{n} large bounce(s) are attached as headers only; the full text stays in the bouncelens spool under the queue id above."),
            true => format!("サイズの大きい NDR {n} 件はヘッダーのみ添付しています。全文は上記の受付 ID で bouncelens のスプールに残っています。"),
        }
    }

    pub fn footer(&self) -> &'static str {
        self.pick(
            "This advice was written automatically by bouncelens from the bounce it names. Replies to it are not read.",
            "このメールは、配信不能レポート (NDR) をもとに bouncelens が自動で作成しました。返信は読まれません。",
        )
    }
}
