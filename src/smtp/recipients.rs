//! Which recipients the listener accepts. bouncelens is a final destination for
//! bounces, never a relay: with `accept_addresses`, `accept_domains` or `verp`
//! configured, every other recipient is refused with `550 5.7.1`. With none of them
//! configured (the built-in default, loopback only) any recipient is accepted.

use std::collections::HashSet;

use crate::config::SmtpConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::verp::VerpPattern;

#[derive(Debug, Clone)]
pub struct RecipientPolicy {
    any: bool,
    addresses: HashSet<String>,
    domains: HashSet<String>,
    verp: Option<VerpPattern>,
}

impl RecipientPolicy {
    pub fn from_config(cfg: &SmtpConfig) -> Result<RecipientPolicy> {
        let verp = cfg
            .verp
            .as_deref()
            .map(VerpPattern::new)
            .transpose()
            .map_err(|e| Error::new(ErrorKind::Config, format!("[smtp] verp: {e}")))?;
        Ok(RecipientPolicy {
            any: cfg.accept_addresses.is_empty() && cfg.accept_domains.is_empty() && verp.is_none(),
            addresses: cfg
                .accept_addresses
                .iter()
                .map(|a| a.to_lowercase())
                .collect(),
            domains: cfg
                .accept_domains
                .iter()
                .map(|d| d.to_lowercase())
                .collect(),
            verp,
        })
    }

    /// Whether every recipient is accepted (nothing configured).
    pub fn accepts_any(&self) -> bool {
        self.any
    }

    pub fn accepts(&self, rcpt: &str) -> bool {
        if self.any {
            return true;
        }
        let lower = rcpt.to_lowercase();
        if self.addresses.contains(&lower) {
            return true;
        }
        if let Some((_, domain)) = lower.rsplit_once('@') {
            if self.domains.contains(domain.trim_end_matches('.')) {
                return true;
            }
        }
        self.verp.as_ref().is_some_and(|v| v.decode(rcpt).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_recipients_pass() {
        let cfg = SmtpConfig {
            accept_addresses: vec!["Bounces@Example.com".into()],
            accept_domains: vec!["dsn.example.org".into()],
            verp: Some("b+{local}={domain}@verp.example.net".into()),
            ..SmtpConfig::default()
        };
        let p = RecipientPolicy::from_config(&cfg).unwrap();
        assert!(!p.accepts_any());
        assert!(p.accepts("bounces@example.com"));
        assert!(p.accepts("anything@DSN.example.org"));
        assert!(p.accepts("b+alice=example.com@verp.example.net"));
        assert!(!p.accepts("victim@gmail.com"));
        assert!(!p.accepts("bounces@example.com.evil.test"));
        assert!(!p.accepts("b@verp.example.net"));
        let open = RecipientPolicy::from_config(&SmtpConfig::default()).unwrap();
        assert!(open.accepts("anyone@anywhere.test"));
    }
}
