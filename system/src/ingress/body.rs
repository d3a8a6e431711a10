//! Reading a JSON request body: content type, size limit, and parse errors that name the field.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::error::ApiError;

pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Reads at most `limit` bytes; a declared or actual larger body is refused without reading it all.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.downcast_ref::<http_body_util::LengthLimitError>().is_some());
        if too_large {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::BodyRead
        }
    })
}

/// Parses a JSON object. A body that is not JSON is "malformed"; JSON of the wrong shape is
/// reported in the API's words (the field and what it must be), never in Rust's types.
/// `expect` describes a field's rule where the generic "an integer" would not say enough.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], expect: fn(&str) -> Option<String>) -> Result<T, ApiError> {
    if let Some(kind) = non_object(bytes) {
        return Err(ApiError::WrongShape(format!("the body must be a JSON object, not {kind}")));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Data => ApiError::WrongShape(field_message(&path, &without_position(&inner), expect)),
            _ => malformed(&inner),
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// For bodies with no field needing more than the generic description.
pub fn no_rules(_field: &str) -> Option<String> {
    None
}

/// The JSON type a body holds when it is clearly not an object; syntax errors are left to the parser.
fn non_object(bytes: &[u8]) -> Option<&'static str> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace())? {
        b'[' => Some("an array"),
        b'"' => Some("a string"),
        b'-' | b'0'..=b'9' => Some("a number"),
        b't' | b'f' => Some("a boolean"),
        b'n' => Some("null"),
        _ => None,
    }
}

fn malformed(e: &serde_json::Error) -> ApiError {
    let at = format!("line {}, column {}", e.line(), e.column());
    match e.classify() {
        Category::Eof => ApiError::Malformed(format!("the body ends before the JSON is complete ({at})")),
        _ => ApiError::Malformed(format!("{} ({at})", without_position(e))),
    }
}

/// serde_json appends " at line L column C"; the position is given separately or not at all.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// Rewrites serde's data errors ("missing field `x`", "invalid type: ..., expected i64").
fn field_message(path: &str, msg: &str, expect: fn(&str) -> Option<String>) -> String {
    let join = |name: &str| if path == "." { name.to_owned() } else { format!("{path}.{name}") };
    if let Some(name) = backticked(msg, "missing field ") {
        let field = join(name);
        return match expect(&field) {
            Some(rule) => format!("{field} is required: {rule}"),
            None => format!("missing field {field}"),
        };
    }
    if let Some(name) = backticked(msg, "duplicate field ") {
        return format!("duplicate field {}", join(name));
    }
    let expected = ["invalid type: ", "invalid value: "]
        .iter()
        .find(|p| msg.starts_with(*p))
        .and_then(|_| msg.rsplit_once(", expected "))
        .map(|(_, e)| e);
    match expected {
        Some(e) => format!("{path} must be {}", expect(path).unwrap_or_else(|| plain(e).to_owned())),
        None => format!("{path}: {}", msg.replace('`', "")),
    }
}

fn backticked<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    msg.strip_prefix(prefix)?.strip_prefix('`')?.split('`').next()
}

/// What serde's expectation means in JSON terms.
fn plain(expected: &str) -> &str {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a sequence" => "an array",
        e if e.starts_with("struct ") || e == "a map" => "an object",
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        amount: i64,
        #[allow(dead_code)]
        ids: Vec<String>,
    }

    fn message(body: &str) -> (&'static str, String) {
        let rules = |f: &str| (f == "amount").then(|| "an integer in minor units (cents)".to_owned());
        let e = parse::<Body>(body.as_bytes(), rules).unwrap_err();
        (e.code(), e.to_string())
    }

    #[test]
    fn shape_errors_name_the_field_and_the_rule() {
        let cases = [
            (r#"{"ids":[]}"#, "amount is required: an integer in minor units (cents)"),
            (r#"{"amount":"100","ids":[]}"#, "amount must be an integer in minor units (cents)"),
            (r#"{"amount":1,"ids":[1]}"#, "ids[0] must be a string"),
            (r#"{"amount":1}"#, "missing field ids"),
            (r#"{"amount":1,"amount":2,"ids":[]}"#, "duplicate field amount"),
            ("[1]", "the body must be a JSON object, not an array"),
            ("null", "the body must be a JSON object, not null"),
        ];
        for (body, want) in cases {
            assert_eq!(message(body), ("wrong_shape", want.to_owned()), "{body}");
        }
    }

    #[test]
    fn only_unparseable_bodies_are_malformed() {
        let (code, text) = message(r#"{"amount":1,"ids":["#);
        assert_eq!(code, "malformed");
        assert_eq!(text, "malformed JSON: the body ends before the JSON is complete (line 1, column 19)");
        let (code, text) = message(r#"{"amount":1,"ids":[]}x"#);
        assert_eq!((code, text.as_str()), ("malformed", "malformed JSON: trailing characters (line 1, column 22)"));
        for (_, text) in [message(r#"{"amount":"x","ids":[]}"#), message("{")] {
            assert!(!text.contains("i64") && !text.contains('?') && !text.contains('`'), "{text}");
        }
    }
}
