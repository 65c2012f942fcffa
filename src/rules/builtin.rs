//! The rule packs in `rules/`, compiled in by `build.rs` (file name, contents).

include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));
