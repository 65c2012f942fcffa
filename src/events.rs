//! The events log: one JSON line per recipient row, plus queue id and envelope.
