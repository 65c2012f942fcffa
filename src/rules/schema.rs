//! The rule file format as written by people (`rules/*.toml`), deserialized with spans
//! so every later error can name `file:line`. Validation and compilation happen in
//! [`super::RuleSet::load`]; nothing here is used after loading.
//!
//! ```toml
//! [pack]                       # optional
//! name = "exchange-online"
//! description = "Exchange Online / Microsoft 365 NDR codes"
//!
//! [[rule]]
//! id = "exo.5.7.1.unable-to-relay"
//! status = "5.7.1"             # or a list, a range "5.7.500-5.7.699", "5.7.*", "5.*.*"
//! text = ["unable to relay"]   # optional: regexes on the diagnostic, case-insensitive, any
//! host = ['\.outlook\.com$']   # optional: regexes on the reporting / remote MTA name
//! recipient = ['^IMCEAEX-']    # optional: regexes on the failed recipient's address
//! reply_code = [550]           # optional: SMTP reply codes
//! command = ["RCPT"]           # optional: the SMTP command the remote server rejected
//! priority = 0                 # optional: breaks ties between text rules (higher wins)
//! reason = "norelaying"
//! fix_by = "sender_admin"      # sender | sender_admin | recipient | recipient_admin | none
//! reference = "https://learn.microsoft.com/..."
//! en = { title = "...", advice = "...", steps = ["...", "..."] }
//! ja = { title = "...", advice = "...", steps = ["...", "..."] }
//! ```

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub pack: Option<RawPack>,
    #[serde(default)]
    pub rule: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPack {
    pub name: String,
    /// Free text for people reading the file; not used by the program.
    #[serde(default)]
    #[allow(dead_code)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: Spanned<String>,
    #[serde(default)]
    pub status: Option<Spanned<OneOrMany<String>>>,
    #[serde(default)]
    pub text: Option<Spanned<OneOrMany<String>>>,
    #[serde(default)]
    pub host: Option<Spanned<OneOrMany<String>>>,
    #[serde(default)]
    pub recipient: Option<Spanned<OneOrMany<String>>>,
    #[serde(default)]
    pub reply_code: Option<Spanned<OneOrMany<u16>>>,
    #[serde(default)]
    pub command: Option<Spanned<OneOrMany<String>>>,
    #[serde(default)]
    pub priority: i32,
    pub reason: Spanned<String>,
    pub fix_by: Spanned<String>,
    #[serde(default)]
    pub reference: Option<String>,
    pub en: Spanned<RawText>,
    pub ja: Spanned<RawText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawText {
    pub title: String,
    pub advice: String,
    #[serde(default)]
    pub steps: Vec<String>,
}

/// A key that takes one value or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}
