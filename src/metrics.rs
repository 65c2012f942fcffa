//! Every Prometheus metric bouncelens exports (SPEC.md "Metrics"), in one registry
//! owned by the daemon (no global registry, so tests can run servers side by side).
//!
//! Label values must stay bounded: callers pass statuses through [`status_label`] and
//! domains through [`domain_label`] rather than raw text from the network.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::model::{MessageKind, StatusCode};

/// `bouncelens_smtp_sessions_total{outcome}` values.
pub const SESSION_OUTCOMES: [&str; 5] = ["accepted", "rejected", "timeout", "error", "closed"];
/// `bouncelens_advice_emails_total{audience}` values.
pub const ADVICE_AUDIENCES: [&str; 2] = ["sender", "admin"];
/// `bouncelens_advice_emails_total{outcome}` values.
pub const ADVICE_OUTCOMES: [&str; 13] = [
    "queued",
    "sent",
    "written",
    "retried",
    "failed",
    "suppressed_digest",
    "suppressed_cap",
    "suppressed_nosender",
    "suppressed_backscatter",
    "suppressed_loop",
    "suppressed_autoreply",
    "suppressed_feedback",
    "suppressed_noadmin",
];
/// Reply codes the listener sends, pre-created in `bouncelens_smtp_rejections_total`.
pub const REJECTION_CODES: [&str; 12] = [
    "421", "450", "451", "452", "500", "501", "502", "503", "504", "550", "552", "554",
];

/// All metrics, registered in `registry`.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// One per classified recipient row: `{status, reason, cause, fix_by}`.
    pub bounces_total: IntCounterVec,
    /// Per recipient row, by recipient domain (configured domains, else `other`): `{domain, reason}`.
    pub bounces_by_domain_total: IntCounterVec,
    /// One per processed message: `{kind}` = dsn, feedback, autoreply, delivered, unparsed.
    pub messages_total: IntCounterVec,
    /// `{outcome}`: accepted (at least one message queued), rejected, timeout, error, closed.
    pub smtp_sessions_total: IntCounterVec,
    /// Negative replies sent, by reply code: `{code}`.
    pub smtp_rejections_total: IntCounterVec,
    /// Messages spooled and not yet processed.
    pub spool_pending: IntGauge,
    /// Messages set aside because processing failed.
    pub quarantined_total: IntCounter,
    /// Seconds from the DATA acknowledgement to the events log line.
    pub processing_seconds: Histogram,
    /// Advice mails: `{audience, outcome}`; outcome = sent, written, queued, retried,
    /// failed, suppressed_digest, suppressed_cap, suppressed_backscatter, suppressed_loop, ...
    pub advice_emails_total: IntCounterVec,
    /// Advice mails waiting for delivery.
    pub outbox_pending: IntGauge,
    /// Rule reloads: `{outcome}` = ok, error.
    pub rules_reloads_total: IntCounterVec,
    /// Rules currently loaded.
    pub rules_loaded: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let bounces_total = counter_vec(
            "bouncelens_bounces_total",
            "Classified recipient results, by status code, reason, cause and who must fix it.",
            &["status", "reason", "cause", "fix_by"],
        );
        let bounces_by_domain_total = counter_vec(
            "bouncelens_bounces_by_domain_total",
            "Classified recipient results by recipient domain (configured domains; others are 'other').",
            &["domain", "reason"],
        );
        let messages_total = counter_vec(
            "bouncelens_messages_total",
            "Processed messages by kind (dsn, feedback, autoreply, delivered, unparsed).",
            &["kind"],
        );
        let smtp_sessions_total = counter_vec(
            "bouncelens_smtp_sessions_total",
            "SMTP/LMTP sessions by outcome.",
            &["outcome"],
        );
        let smtp_rejections_total = counter_vec(
            "bouncelens_smtp_rejections_total",
            "Negative SMTP replies sent, by reply code.",
            &["code"],
        );
        let spool_pending = gauge(
            "bouncelens_spool_pending",
            "Messages spooled and not yet processed.",
        );
        let quarantined_total = IntCounter::new(
            "bouncelens_quarantined_total",
            "Messages quarantined because processing failed.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(quarantined_total.clone()))
            .expect("unique metric");
        let processing_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "bouncelens_processing_seconds",
                "Seconds from accepting a message to writing its classification.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(processing_seconds.clone()))
            .expect("unique metric");
        let advice_emails_total = counter_vec(
            "bouncelens_advice_emails_total",
            "Advice emails by audience and outcome.",
            &["audience", "outcome"],
        );
        let outbox_pending = gauge(
            "bouncelens_outbox_pending",
            "Advice emails waiting for delivery.",
        );
        let rules_reloads_total = counter_vec(
            "bouncelens_rules_reloads_total",
            "Rule reloads (SIGHUP) by outcome.",
            &["outcome"],
        );
        let rules_loaded = gauge("bouncelens_rules_loaded", "Rules currently loaded.");

        // Create every series whose label values are known in advance at zero, so a
        // fresh daemon's dashboards show 0 rather than "no data" and `increase()` sees
        // the first event of each series.
        for k in MessageKind::ALL {
            messages_total.with_label_values(&[k.as_str()]);
        }
        for o in SESSION_OUTCOMES {
            smtp_sessions_total.with_label_values(&[o]);
        }
        for c in REJECTION_CODES {
            smtp_rejections_total.with_label_values(&[c]);
        }
        for a in ADVICE_AUDIENCES {
            for o in ADVICE_OUTCOMES {
                advice_emails_total.with_label_values(&[a, o]);
            }
        }
        for o in ["ok", "error"] {
            rules_reloads_total.with_label_values(&[o]);
        }
        Metrics {
            registry,
            bounces_total,
            bounces_by_domain_total,
            messages_total,
            smtp_sessions_total,
            smtp_rejections_total,
            spool_pending,
            quarantined_total,
            processing_seconds,
            advice_emails_total,
            outbox_pending,
            rules_reloads_total,
            rules_loaded,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("text exposition is UTF-8")
    }
}

/// A bounded label value for a status code: the code if it is well-formed with an
/// RFC 3463 subject (0-7), `invalid` for anything else found in the status field, and
/// `none` when the bounce had no status at all.
pub fn status_label(status: Option<&str>) -> String {
    match status {
        None => "none".to_string(),
        Some(s) => match s.parse::<StatusCode>() {
            Ok(c) if c.subject <= 7 => c.to_string(),
            _ => "invalid".to_string(),
        },
    }
}

/// A bounded label value for a recipient's domain: the domain if configured, else `other`.
pub fn domain_label(recipient: Option<&str>, configured: &[String]) -> String {
    let domain = recipient
        .and_then(|r| r.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase());
    match domain {
        Some(d) if configured.iter().any(|c| c.eq_ignore_ascii_case(&d)) => d,
        _ => "other".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(status_label(Some("5.7.509")), "5.7.509");
        assert_eq!(status_label(Some("5.99.1")), "invalid");
        assert_eq!(status_label(Some("<script>")), "invalid");
        assert_eq!(status_label(None), "none");
        let doms = vec!["example.com".to_string()];
        assert_eq!(domain_label(Some("a@Example.COM"), &doms), "example.com");
        assert_eq!(domain_label(Some("a@evil.test"), &doms), "other");
    }

    #[test]
    fn known_series_exist_at_zero_from_the_start() {
        let text = Metrics::new().render();
        for line in [
            "bouncelens_messages_total{kind=\"unparsed\"} 0",
            "bouncelens_smtp_rejections_total{code=\"550\"} 0",
            "bouncelens_advice_emails_total{audience=\"admin\",outcome=\"suppressed_backscatter\"} 0",
            "bouncelens_smtp_sessions_total{outcome=\"timeout\"} 0",
        ] {
            assert!(text.contains(line), "missing {line}");
        }
    }

    #[test]
    fn render_has_every_family_name() {
        let m = Metrics::new();
        m.bounces_total
            .with_label_values(&["5.1.1", "userunknown", "x", "sender"])
            .inc();
        m.messages_total.with_label_values(&["dsn"]).inc();
        let text = m.render();
        assert!(text.contains("bouncelens_bounces_total{cause=\"x\",fix_by=\"sender\",reason=\"userunknown\",status=\"5.1.1\"} 1"));
        assert!(text.contains("# TYPE bouncelens_processing_seconds histogram"));
    }
}
