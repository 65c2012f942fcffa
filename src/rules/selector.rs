//! Status-code selectors of a rule: `5.1.1`, `5.7.500-5.7.699` (or the seeds' short
//! form `5.7.500-699`), `5.7.*`, `5.*.*`.
//!
//! A selector also knows its *specificity* ([`CodeTier`]), which is how the rule set
//! decides between rules that both match (SPEC: "code + text beats code, code beats range,
//! range beats class defaults X.Y.0 / X.0.0").

use std::fmt;

use crate::model::StatusCode;

/// How specifically a rule's status selector matched a code. Higher wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CodeTier {
    /// The rule has no status selector (text / host / reply-code rules).
    Unconstrained = 0,
    /// `X.0.0` standing in for any `X.*.*` code with no better rule, or `X.*.*`.
    ClassDefault = 1,
    /// `X.Y.0` standing in for any `X.Y.*` code with no better rule, or `X.Y.*`.
    SubjectDefault = 2,
    /// A detail range such as `5.7.500-5.7.699`.
    Range = 3,
    /// The exact code.
    Exact = 4,
}

/// One status selector as written in a rule file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusSelector {
    Exact(StatusCode),
    /// Inclusive range of detail codes within one class.subject.
    Range {
        class: u8,
        subject: u16,
        low: u16,
        high: u16,
    },
    /// `X.Y.*`
    Subject {
        class: u8,
        subject: u16,
    },
    /// `X.*.*`
    Class {
        class: u8,
    },
}

impl StatusSelector {
    pub fn parse(s: &str) -> Result<StatusSelector, String> {
        let s = s.trim();
        let err = |why: &str| {
            format!("bad status selector {s:?}: {why} (use 5.1.1, 5.7.500-5.7.699, 5.7.* or 5.*.*)")
        };
        if let Some((lo, hi)) = s.split_once('-') {
            let low: StatusCode = lo.trim().parse().map_err(|_| err("bad range start"))?;
            let hi = hi.trim();
            let high = if hi.contains('.') {
                let h: StatusCode = hi.parse().map_err(|_| err("bad range end"))?;
                if (h.class, h.subject) != (low.class, low.subject) {
                    return Err(err("a range must stay within one class.subject"));
                }
                h.detail
            } else {
                hi.parse::<u16>().map_err(|_| err("bad range end"))?
            };
            if high < low.detail {
                return Err(err("range end is below its start"));
            }
            return Ok(StatusSelector::Range {
                class: low.class,
                subject: low.subject,
                low: low.detail,
                high,
            });
        }
        let parts: Vec<&str> = s.split('.').collect();
        match parts.as_slice() {
            [c, "*", "*"] | [c, "*"] => {
                let code: StatusCode = format!("{c}.0.0").parse().map_err(|_| err("bad class"))?;
                Ok(StatusSelector::Class { class: code.class })
            }
            [c, sub, "*"] => {
                let code: StatusCode = format!("{c}.{sub}.0")
                    .parse()
                    .map_err(|_| err("bad class or subject"))?;
                Ok(StatusSelector::Subject {
                    class: code.class,
                    subject: code.subject,
                })
            }
            _ => s
                .parse::<StatusCode>()
                .map(StatusSelector::Exact)
                .map_err(|_| err("not a status code")),
        }
    }

    /// How specifically this selector matches `code`, or `None` if it does not.
    /// `X.Y.0` and `X.0.0` exact selectors also match as subject / class defaults.
    pub fn tier_for(&self, code: StatusCode) -> Option<CodeTier> {
        match *self {
            StatusSelector::Exact(c) if c == code => Some(CodeTier::Exact),
            StatusSelector::Exact(c)
                if c.detail == 0
                    && c.subject != 0
                    && (c.class, c.subject) == (code.class, code.subject) =>
            {
                Some(CodeTier::SubjectDefault)
            }
            StatusSelector::Exact(c)
                if c.detail == 0 && c.subject == 0 && c.class == code.class =>
            {
                Some(CodeTier::ClassDefault)
            }
            StatusSelector::Exact(_) => None,
            StatusSelector::Range {
                class,
                subject,
                low,
                high,
            } => ((class, subject) == (code.class, code.subject)
                && (low..=high).contains(&code.detail))
            .then_some(CodeTier::Range),
            StatusSelector::Subject { class, subject } => {
                ((class, subject) == (code.class, code.subject)).then_some(CodeTier::SubjectDefault)
            }
            StatusSelector::Class { class } => {
                (class == code.class).then_some(CodeTier::ClassDefault)
            }
        }
    }

    /// Whether some code is matched by both selectors *at the same tier* (used to refuse
    /// ambiguous rules at load time).
    pub fn same_tier_overlap(&self, other: &StatusSelector) -> bool {
        self.sample_codes()
            .into_iter()
            .chain(other.sample_codes())
            .any(|code| match (self.tier_for(code), other.tier_for(code)) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            })
    }

    /// How many detail codes a range spans beyond its first (0 for other selectors):
    /// among matching ranges the narrower one is the more specific.
    pub fn width(&self) -> u16 {
        match *self {
            StatusSelector::Range { low, high, .. } => high - low,
            _ => 0,
        }
    }

    /// Codes at which this selector's tiers change: enough to decide overlaps exactly.
    fn sample_codes(&self) -> Vec<StatusCode> {
        match *self {
            StatusSelector::Exact(c) => vec![c],
            StatusSelector::Range {
                class,
                subject,
                low,
                high,
            } => vec![
                StatusCode::new(class, subject, low),
                StatusCode::new(class, subject, high),
            ],
            StatusSelector::Subject { class, subject } => vec![
                StatusCode::new(class, subject, 0),
                StatusCode::new(class, subject, 999),
            ],
            StatusSelector::Class { class } => {
                vec![
                    StatusCode::new(class, 0, 0),
                    StatusCode::new(class, 999, 999),
                ]
            }
        }
    }
}

impl fmt::Display for StatusSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusSelector::Exact(c) => write!(f, "{c}"),
            StatusSelector::Range {
                class,
                subject,
                low,
                high,
            } => write!(f, "{class}.{subject}.{low}-{class}.{subject}.{high}"),
            StatusSelector::Subject { class, subject } => write!(f, "{class}.{subject}.*"),
            StatusSelector::Class { class } => write!(f, "{class}.*.*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> StatusSelector {
        StatusSelector::parse(s).unwrap()
    }
    fn code(s: &str) -> StatusCode {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(sel("5.1.1"), StatusSelector::Exact(code("5.1.1")));
        let range = StatusSelector::Range {
            class: 5,
            subject: 7,
            low: 500,
            high: 699,
        };
        assert_eq!(sel("5.7.500-5.7.699"), range);
        assert_eq!(sel("5.7.500-699"), range);
        assert_eq!(
            sel("4.7.*"),
            StatusSelector::Subject {
                class: 4,
                subject: 7
            }
        );
        assert_eq!(sel("5.*.*"), StatusSelector::Class { class: 5 });
        for bad in ["5.7.600-5.7.500", "5.7.1-5.6.9", "x", "9.1.1", "5.1"] {
            assert!(StatusSelector::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn tiers_follow_spec_precedence() {
        let c = code("5.7.509");
        assert_eq!(sel("5.7.509").tier_for(c), Some(CodeTier::Exact));
        assert_eq!(sel("5.7.500-699").tier_for(c), Some(CodeTier::Range));
        assert_eq!(sel("5.7.0").tier_for(c), Some(CodeTier::SubjectDefault));
        assert_eq!(sel("5.0.0").tier_for(c), Some(CodeTier::ClassDefault));
        assert_eq!(sel("4.7.509").tier_for(c), None);
        assert_eq!(sel("5.7.1").tier_for(c), None);
        assert!(CodeTier::Exact > CodeTier::Range && CodeTier::Range > CodeTier::SubjectDefault);
    }

    #[test]
    fn overlap_is_judged_per_tier() {
        assert!(sel("5.7.500-699").same_tier_overlap(&sel("5.7.600-649")));
        assert!(!sel("5.7.500-599").same_tier_overlap(&sel("5.7.600-649")));
        // 5.7.0 as a subject default and 5.7.* overlap; 5.7.0 exact vs 5.7.* do not tie
        // on 5.7.0 itself (exact wins there), but they do on 5.7.3.
        assert!(sel("5.7.0").same_tier_overlap(&sel("5.7.*")));
        assert!(!sel("5.7.1").same_tier_overlap(&sel("5.7.*")));
    }
}
