//! Validation of what a client sends: query parameters, counter names, counts and
//! idempotency keys. Pure functions, so the rules are unit-tested without any store.

use percent_encoding::percent_decode;

/// Longest counter name, in bytes of UTF-8 (DynamoDB allows 2048 for a key; we keep room
/// for the idempotency records that share the table).
pub const MAX_COUNTER_NAME_BYTES: usize = 255;
/// Most values one request may reserve.
pub const MAX_COUNT: u32 = 1_000_000;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
/// Ids with this prefix belong to counterctl's own records, never to a counter.
pub const RESERVED_PREFIX: &str = "_counterctl#";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("counter names are at most {MAX_COUNTER_NAME_BYTES} bytes of UTF-8; this one has {0}")]
    TooLong(usize),
    #[error("counter names must be valid UTF-8")]
    NotUtf8,
    #[error("counter names must not contain control characters")]
    ControlCharacter,
    #[error("counter names must not start with {RESERVED_PREFIX:?}, which is reserved")]
    Reserved,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("count must be a whole number from 1 to {MAX_COUNT}")]
pub struct InvalidCount;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} printable ASCII characters, sent once")]
pub struct InvalidIdempotencyKey;

/// A query parameter's value, decoded; `Err` when its bytes are not UTF-8.
pub type QueryValue = Result<String, std::str::Utf8Error>;

/// The value of the last `name=` pair in a raw (percent-encoded, form-style) query
/// string, as API Gateway's `queryStringParameters` keeps the last one too.
pub fn query_param(query: Option<&str>, name: &str) -> Option<QueryValue> {
    query?.rsplit('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_form(key).ok()? == name).then(|| decode_form(value))
    })
}

fn decode_form(raw: &str) -> QueryValue {
    let spaced = raw.replace('+', " ");
    percent_decode(spaced.as_bytes()).decode_utf8().map(|value| value.into_owned())
}

/// Checks a counter name that is present and not empty.
pub fn counter_name(name: &str) -> Result<&str, InvalidName> {
    if name.len() > MAX_COUNTER_NAME_BYTES {
        return Err(InvalidName::TooLong(name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidName::ControlCharacter);
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(InvalidName::Reserved);
    }
    Ok(name)
}

/// Parses `count`: plain decimal digits, 1 to [`MAX_COUNT`].
pub fn count(raw: &str) -> Result<u32, InvalidCount> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidCount);
    }
    match raw.parse::<u32>() {
        Ok(count @ 1..=MAX_COUNT) => Ok(count),
        _ => Err(InvalidCount),
    }
}

/// Checks the values of the `Idempotency-Key` header: exactly one, 1 to 128 printable
/// ASCII characters.
pub fn idempotency_key<'a>(
    mut values: impl Iterator<Item = &'a http::HeaderValue>,
) -> Result<Option<&'a str>, InvalidIdempotencyKey> {
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(InvalidIdempotencyKey);
    }
    let bytes = value.as_bytes();
    let printable = bytes.iter().all(|b| (0x20..=0x7e).contains(b));
    if bytes.is_empty() || bytes.len() > MAX_IDEMPOTENCY_KEY_BYTES || !printable {
        return Err(InvalidIdempotencyKey);
    }
    Ok(Some(value.to_str().map_err(|_| InvalidIdempotencyKey)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn query_param_decodes_and_keeps_the_last_value() {
        let query = Some("counter=a%20b&count=3&counter=c+d%2B");
        assert_eq!(query_param(query, "counter"), Some(Ok("c d+".to_owned())));
        assert_eq!(query_param(query, "count"), Some(Ok("3".to_owned())));
        assert_eq!(query_param(query, "missing"), None);
        assert_eq!(query_param(None, "counter"), None);
        assert_eq!(query_param(Some("counter"), "counter"), Some(Ok(String::new())));
        assert_eq!(query_param(Some("co%75nter=x"), "counter"), Some(Ok("x".to_owned())));
    }

    #[test]
    fn query_param_reports_invalid_utf8() {
        assert!(matches!(query_param(Some("counter=%FF%FE"), "counter"), Some(Err(_))));
    }

    #[test]
    fn counter_names() {
        assert_eq!(counter_name("tenants"), Ok("tenants"));
        assert_eq!(counter_name("ünïcødé/with spaces#1"), Ok("ünïcødé/with spaces#1"));
        assert_eq!(counter_name(&"x".repeat(255)).map(str::len), Ok(255));
        assert_eq!(counter_name(&"x".repeat(256)), Err(InvalidName::TooLong(256)));
        // 128 two-byte characters are 256 bytes.
        assert_eq!(counter_name(&"é".repeat(128)), Err(InvalidName::TooLong(256)));
        assert_eq!(counter_name("tab\there"), Err(InvalidName::ControlCharacter));
        assert_eq!(counter_name("nul\0"), Err(InvalidName::ControlCharacter));
        assert_eq!(counter_name("c1\u{85}"), Err(InvalidName::ControlCharacter));
        assert_eq!(counter_name("_counterctl#idempotency#k"), Err(InvalidName::Reserved));
        assert_eq!(counter_name("_counterctl"), Ok("_counterctl"));
    }

    #[test]
    fn counts() {
        assert_eq!(count("1"), Ok(1));
        assert_eq!(count("1000000"), Ok(1_000_000));
        assert_eq!(count("007"), Ok(7));
        for bad in ["", "0", "1000001", "-1", "+1", "1.5", "1e3", " 1", "abc", "99999999999999999999"] {
            assert_eq!(count(bad), Err(InvalidCount), "{bad:?}");
        }
    }

    #[test]
    fn idempotency_keys() {
        let ok = HeaderValue::from_static("order-42 retry");
        assert_eq!(idempotency_key([&ok].into_iter()), Ok(Some("order-42 retry")));
        assert_eq!(idempotency_key(std::iter::empty()), Ok(None));
        let longest = HeaderValue::from_str(&"k".repeat(128)).unwrap();
        assert!(idempotency_key([&longest].into_iter()).is_ok());
        let too_long = HeaderValue::from_str(&"k".repeat(129)).unwrap();
        let empty = HeaderValue::from_static("");
        let non_ascii = HeaderValue::from_bytes("clé".as_bytes()).unwrap();
        let tab = HeaderValue::from_static("a\tb");
        for bad in [&too_long, &empty, &non_ascii, &tab] {
            assert_eq!(idempotency_key([bad].into_iter()), Err(InvalidIdempotencyKey), "{bad:?}");
        }
        assert_eq!(idempotency_key([&ok, &ok].into_iter()), Err(InvalidIdempotencyKey));
    }
}
