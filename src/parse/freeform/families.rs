//! Per-family data for free-form bounces: how to recognise each server's notice,
//! where its recipient section starts and ends, and its own recipient cues.
//!
//! Adding a format is adding a row here, not code. Markers are lower case and are
//! matched as substrings, ASCII case ignored; `detect` phrases are looked for in the
//! notice, the From header and the Subject (all in the one pass of
//! [`super::NoticeMarks`]).

use super::{Mark, NoticeMarks};

/// One family of free-form bounces.
#[derive(Debug)]
pub struct Family {
    /// The row's `format` value.
    pub name: &'static str,
    /// Any of these in the notice, From or Subject identifies the family.
    pub detect: &'static [&'static str],
    /// The recipient section starts after the first line containing one of these.
    pub start: &'static [&'static str],
    /// The section ends at a line containing one of these (besides the generic markers).
    pub end: &'static [&'static str],
    /// Extra phrases that introduce a recipient address on the same line.
    pub cues: &'static [&'static str],
    /// Addresses (lower-case prefixes) that are never the failed recipient here.
    pub skip_addresses: &'static [&'static str],
}

const fn family(name: &'static str, detect: &'static [&'static str]) -> Family {
    Family {
        name,
        detect,
        start: &[],
        end: &[],
        cues: &[],
        skip_addresses: &[],
    }
}

/// The families, most specific first; the last one is the generic fallback.
pub static FAMILIES: &[Family] = &[
    Family {
        start: &["diagnostic information for administrators"],
        end: &["original message headers"],
        ..family(
            "exchange",
            &[
                "diagnostic information for administrators",
                "generating server:",
            ],
        )
    },
    Family {
        start: &["did not reach the following recipient"],
        ..family("exchange2003", &["did not reach the following recipient"])
    },
    Family {
        start: &[
            "i'm afraid i wasn't able to deliver your message",
            "i'm sorry, i wasn't able to deliver",
        ],
        ..family(
            "qmail",
            &["this is the qmail-send program", "qmail-send program"],
        )
    },
    Family {
        start: &[
            "the following address(es) failed",
            "the following address failed",
            "following address(es) failed",
            "the following addresses failed",
        ],
        end: &["------ this is a copy", "rfc822-headers"],
        ..family(
            "exim",
            &[
                "this message was created automatically by mail delivery software",
                "exim",
            ],
        )
    },
    Family {
        start: &[
            "delivery to the following recipient",
            "delivery to the following recipients",
        ],
        end: &[
            "----- original message -----",
            "----- message header follows -----",
        ],
        ..family(
            "gmail",
            &[
                "delivery to the following recipient",
                "google tried to deliver your message",
            ],
        )
    },
    Family {
        start: &["an error has occurred while attempting to deliver a message for"],
        ..family(
            "opensmtpd",
            &[
                "this is the mailer-daemon, please do not reply",
                "opensmtpd",
            ],
        )
    },
    Family {
        ..family("dragonfly", &["dragonfly mail agent"])
    },
    Family {
        start: &["sorry, we were unable to deliver your message to the following address"],
        ..family("yahoo", &["sorry, we were unable to deliver your message"])
    },
    Family {
        start: &["was not delivered to:"],
        ..family(
            "domino",
            &["was not delivered to:", "not listed in domino directory"],
        )
    },
    Family {
        start: &["failure reasons"],
        ..family("notes", &["------- failure reasons"])
    },
    Family {
        start: &["the following addresses had delivery problems"],
        ..family("biglobe", &["biglobe.ne.jp"])
    },
    Family {
        ..family(
            "kddi",
            &["au one net", "auone-net.jp", "could not be delivered to:"],
        )
    },
    Family {
        ..family(
            "ezweb",
            &[
                "ezweb.ne.jp",
                "each of the following recipients was rejected",
            ],
        )
    },
    Family {
        start: &["以下のメールアドレスへの送信に失敗しました"],
        cues: &["<<< rcpt to:"],
        ..family("mfilter", &["m-filter"])
    },
    Family {
        cues: &["sent <<< rcpt to:"],
        ..family("interscanmss", &["interscan", "trend micro"])
    },
    Family {
        start: &[
            "the following addresses had permanent fatal errors",
            "the following addresses had delivery errors",
            "the following addresses had transient non-fatal errors",
        ],
        end: &[
            "----- unsent message follows",
            "----- original message follows",
        ],
        ..family(
            "sendmail",
            &[
                "transcript of session follows",
                "the following addresses had",
            ],
        )
    },
    Family {
        ..family("imailserver", &["original message follows.", "smtpd32"])
    },
    Family {
        ..family("mailru", &["mail.ru"])
    },
    Family {
        start: &["unable to deliver message to"],
        ..family(
            "mailfoundry",
            &["mailfoundry", "delivery failed for the following reason"],
        )
    },
    Family {
        ..family("apachejames", &["apache james", "error message below:"])
    },
    Family {
        cues: &["member of this mailing list", "duplicated message-id in"],
        ..family("fml", &["mailing list", "fml", "duplicated message-id"])
    },
    Family {
        ..family("zoho", &["zoho"])
    },
    Family {
        ..family(
            "gmx",
            &["gmx", "the header of the original message is following"],
        )
    },
    Family {
        ..family(
            "mxlogic",
            &["mxlogic", "included is a copy of the message header"],
        )
    },
    Family {
        ..family(
            "verizon",
            &["vzwpix", "message could not be delivered to mobile"],
        )
    },
    Family {
        ..family("amazonworkmail", &["awsapps.com", "technical report:"])
    },
    Family {
        ..family("freeform", &[])
    },
];

/// The family a notice belongs to (the generic one if none is recognised): the
/// first family in table order with a `detect` phrase in the notice (whose marks
/// are `notice`), From or Subject (ASCII case ignored).
pub fn family_in(notice: &NoticeMarks, from: &str, subject: &str) -> &'static Family {
    let (from, subject) = (NoticeMarks::find(from), NoticeMarks::find(subject));
    let best = [notice, &from, &subject]
        .into_iter()
        .flat_map(NoticeMarks::iter)
        .filter_map(|(_, _, mark)| match mark {
            Mark::Detect(i) => Some(i),
            _ => None,
        })
        .min();
    best.and_then(|i| FAMILIES.get(i))
        .unwrap_or_else(|| &FAMILIES[FAMILIES.len() - 1])
}
