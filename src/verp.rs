//! VERP (variable envelope return path) addresses: the original sender encoded into the
//! bounce address, e.g. `bounces+alice=example.com@bounces.example.org` for
//! `alice@example.com`. The listener accepts recipients matching the pattern; advice
//! routing decodes them to find who sent the bounced message.

use regex::Regex;

/// A compiled VERP pattern such as `bounces+{local}={domain}@bounces.example.org`.
#[derive(Debug, Clone)]
pub struct VerpPattern {
    re: Regex,
}

impl VerpPattern {
    /// Compiles a pattern holding `{local}` and `{domain}` once each; the rest is literal
    /// and matched case-insensitively.
    pub fn new(pattern: &str) -> Result<VerpPattern, String> {
        let (Some(l), Some(d)) = (pattern.find("{local}"), pattern.find("{domain}")) else {
            return Err(format!(
                "VERP pattern {pattern:?} needs {{local}} and {{domain}}"
            ));
        };
        if pattern.matches("{local}").count() != 1 || pattern.matches("{domain}").count() != 1 {
            return Err(format!(
                "VERP pattern {pattern:?} must hold {{local}} and {{domain}} once each"
            ));
        }
        let mut re = String::from("(?i)^");
        let mut rest = pattern;
        let (first, second) = if l < d {
            ("{local}", "{domain}")
        } else {
            ("{domain}", "{local}")
        };
        for (tag, group) in [(first, first), (second, second)] {
            let at = rest.find(tag).expect("checked above");
            re.push_str(&regex::escape(&rest[..at]));
            re.push_str(match group {
                "{local}" => "(?P<local>[^@\\s]+?)",
                _ => "(?P<domain>[A-Za-z0-9.-]+)",
            });
            rest = &rest[at + tag.len()..];
        }
        re.push_str(&regex::escape(rest));
        re.push('$');
        Ok(VerpPattern {
            re: Regex::new(&re).map_err(|e| e.to_string())?,
        })
    }

    /// The original sender encoded in `rcpt`, if it matches.
    pub fn decode(&self, rcpt: &str) -> Option<String> {
        let c = self.re.captures(rcpt.trim())?;
        let local = c.name("local")?.as_str();
        let domain = c.name("domain")?.as_str();
        (!local.is_empty() && domain.contains('.'))
            .then(|| format!("{local}@{}", domain.to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_postfix_style_verp() {
        let p = VerpPattern::new("bounces+{local}={domain}@bounces.example.org").unwrap();
        assert_eq!(
            p.decode("bounces+alice=Example.com@bounces.example.org")
                .as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            p.decode("BOUNCES+bob.x=mail.example.net@Bounces.Example.org")
                .as_deref(),
            Some("bob.x@mail.example.net")
        );
        assert_eq!(p.decode("bounces@bounces.example.org"), None);
        assert_eq!(p.decode("bounces+alice=example.com@evil.test"), None);
    }

    #[test]
    fn rejects_patterns_without_both_parts() {
        assert!(VerpPattern::new("bounces@x.org").is_err());
        assert!(VerpPattern::new("{local}{local}={domain}@x.org").is_err());
    }
}
