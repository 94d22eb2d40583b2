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
/// The highest value a counter may be set to (`counters set`, `counters import`, the admin
/// socket): an increment of up to [`MAX_COUNT`] from it still fits the 64-bit integer
/// every answer carries.
pub const MAX_VALUE: i64 = i64::MAX - MAX_COUNT as i64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("counter names are at most {MAX_COUNTER_NAME_BYTES} bytes of UTF-8; this one has {0}")]
    TooLong(usize),
    #[error("counter names must not contain control characters")]
    ControlCharacter,
    #[error("counter names must not start with {RESERVED_PREFIX:?}, which is reserved")]
    Reserved,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("count must be a whole number from 1 to {MAX_COUNT}")]
pub struct InvalidCount;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} is not a counter value: IDs are 1, 2, 3, …, so a counter holds at least 1, and at most \
     {MAX_VALUE}, so that an increment of up to {MAX_COUNT} still fits in a 64-bit integer"
)]
pub struct InvalidValue(pub i64);

/// Why a query parameter could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidQuery {
    #[error("`%` must be followed by two hexadecimal digits (write a literal `%` as `%25`)")]
    MalformedEscape,
    #[error("it is not valid UTF-8 once percent-decoded")]
    NotUtf8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} printable ASCII characters, sent once")]
pub struct InvalidIdempotencyKey;

/// A query parameter's value, decoded.
pub type QueryValue = Result<String, InvalidQuery>;

/// The value of the last `name=` pair in a raw (percent-encoded, form-style) query
/// string, as API Gateway's `queryStringParameters` keeps the last one too. A character
/// beyond ASCII sent as is (valid UTF-8, which the query already is) counts as itself,
/// as its percent-encoding would: a REST API's event carries the query decoded, so the
/// function could not tell the two apart there.
pub fn query_param(query: Option<&str>, name: &str) -> Option<QueryValue> {
    query?.rsplit('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_form(key).ok()? == name).then(|| decode_form(value))
    })
}

/// Decodes one form-style component. A `%` not followed by two hexadecimal digits is
/// refused: `percent_decode` would keep it literally, making `h%G1` a name of its own.
fn decode_form(raw: &str) -> QueryValue {
    let bytes = raw.as_bytes();
    let malformed = bytes.iter().enumerate().any(|(at, &byte)| {
        byte == b'%' && !bytes.get(at + 1..at + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(InvalidQuery::MalformedEscape);
    }
    let spaced = raw.replace('+', " ");
    percent_decode(spaced.as_bytes()).decode_utf8().map(|value| value.into_owned()).map_err(|_| InvalidQuery::NotUtf8)
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

/// Checks a value a counter is set to: 1 to [`MAX_VALUE`].
pub fn counter_value(value: i64) -> Result<i64, InvalidValue> {
    match value {
        1..=MAX_VALUE => Ok(value),
        _ => Err(InvalidValue(value)),
    }
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
        assert_eq!(query_param(Some("counter=%FF%FE"), "counter"), Some(Err(InvalidQuery::NotUtf8)));
    }

    #[test]
    fn query_param_refuses_malformed_escapes() {
        for query in ["counter=h%G1", "counter=h%", "counter=x%2", "counter=%%41", "counter=a%2G", "count=1%"] {
            let name = query.split_once('=').unwrap().0;
            assert_eq!(query_param(Some(query), name), Some(Err(InvalidQuery::MalformedEscape)), "{query}");
        }
        // A malformed pair of another name does not hide the one asked for.
        assert_eq!(query_param(Some("counter=ok&other=%zz"), "counter"), Some(Ok("ok".to_owned())));
        assert_eq!(query_param(Some("counter=100%25"), "counter"), Some(Ok("100%".to_owned())));
    }

    #[test]
    fn query_param_takes_raw_utf8_as_its_encoding() {
        assert_eq!(query_param(Some("counter=ünï"), "counter"), query_param(Some("counter=%C3%BCn%C3%AF"), "counter"));
        assert_eq!(query_param(Some("counter=ünï"), "counter"), Some(Ok("ünï".to_owned())));
    }

    #[test]
    fn counter_values_are_1_to_max_value() {
        assert_eq!(MAX_VALUE.checked_add(i64::from(MAX_COUNT)), Some(i64::MAX), "the largest count still fits");
        assert_eq!(counter_value(1), Ok(1));
        assert_eq!(counter_value(MAX_VALUE), Ok(MAX_VALUE));
        for bad in [0, -1, -100, i64::MIN, MAX_VALUE + 1, i64::MAX] {
            assert_eq!(counter_value(bad), Err(InvalidValue(bad)), "{bad}");
        }
        assert!(InvalidValue(0).to_string().contains("at least 1"));
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
