//! The HTTP endpoint: `GET /metrics` (Prometheus text format) and `GET /healthz`.
