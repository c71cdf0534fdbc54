//! Reading the CLI's JSON answers in assertions: lists, entries by ID,
//! string lists, and the `warnings` of an import answer.

use serde_json::Value;

#[track_caller]
pub fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("expected a JSON array, got {other}"),
    }
}

/// The codes of `warnings` in an import answer.
#[track_caller]
pub fn warning_codes(import: &Value) -> Vec<String> {
    let w = import["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("import answer without a warnings array: {import}"));
    w.iter()
        .map(|x| {
            let msg = x["message"]
                .as_str()
                .unwrap_or_else(|| panic!("warning without message: {x}"));
            assert!(!msg.trim().is_empty(), "warning with an empty message: {x}");
            x["code"]
                .as_str()
                .unwrap_or_else(|| panic!("warning without code: {x}"))
                .to_string()
        })
        .collect()
}

/// Asserts the import answer carries warning `code`.
#[track_caller]
pub fn assert_warning(import: &Value, code: &str) {
    let codes = warning_codes(import);
    assert!(
        codes.iter().any(|c| c == code),
        "expected warning {code}, got {codes:?} in {import}"
    );
}

/// Asserts the import answer does not carry warning `code`.
#[track_caller]
pub fn assert_no_warning(import: &Value, code: &str) {
    let codes = warning_codes(import);
    assert!(
        !codes.iter().any(|c| c == code),
        "unexpected warning {code} in {import}"
    );
}

/// The entry of `list` whose `id` is `id`.
#[track_caller]
pub fn by_id<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no entry with id {id} in {list:?}"))
}

/// `v[key]` as a string list.
#[track_caller]
pub fn str_list(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array in {v}"))
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}
