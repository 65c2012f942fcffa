//! Fuzz target: any bytes through mbox splitting, parsing and classification with the
//! built-in rules. A panic or an empty result is a bug.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

use bouncelens::model::Lang;
use bouncelens::rules::RuleSet;

fn rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| RuleSet::builtin().expect("built-in rules load"))
}

fuzz_target!(|data: &[u8]| {
    let rows = bouncelens::classify::analyze(data, rules(), Lang::En, "fuzz");
    assert!(!rows.is_empty());
});
