//! `application/x-www-form-urlencoded` bodies and query strings.
//!
//! Why: picoserve's form extractor deserialises into a fixed struct and has
//! no repeated keys (the Root CA page posts one `id` per ticked checkbox),
//! and the admin forms need clear errors, not a bare 400.
//!
//! What must hold: total over any input (bad `%` escapes and non-UTF-8 give
//! an error, never a panic); the number of fields is bounded.

use super::MAX_FORM_FIELDS;

/// Why a form did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
    /// More than `MAX_FORM_FIELDS` fields.
    TooManyFields,
}

impl core::fmt::Display for FormError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FormError::BadEscape => "the form data has a bad %-escape",
            FormError::NotUtf8 => "the form data is not UTF-8 text",
            FormError::TooManyFields => "the form has too many fields",
        })
    }
}

/// Decoded form fields in order (keys may repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// Parse `a=1&b=x+y&c=%2F`.
    pub fn parse(raw: &[u8]) -> Result<Form, FormError> {
        let mut fields = Vec::new();
        for pair in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            if fields.len() >= MAX_FORM_FIELDS {
                return Err(FormError::TooManyFields);
            }
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            fields.push((decode(k)?, decode(v)?));
        }
        Ok(Form(fields))
    }

    /// The first value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a key.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode one form component (`+` is a space).
pub fn decode(raw: &[u8]) -> Result<String, FormError> {
    decode_with(raw, true)
}

/// Percent-decode one path segment (`+` stays `+`).
pub fn decode_path(raw: &str) -> Result<String, FormError> {
    decode_with(raw.as_bytes(), false)
}

fn decode_with(raw: &[u8], plus_is_space: bool) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).copied().and_then(hex);
                let lo = raw.get(i + 2).copied().and_then(hex);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(FormError::BadEscape),
                }
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_in_order_with_repeats() {
        let f = Form::parse(b"csrf=a%2Bb&id=01&id=02&empty=&flag&x=a+b%20c").unwrap();
        assert_eq!(f.get("csrf"), Some("a+b"));
        assert_eq!(f.all("id"), vec!["01", "02"]);
        assert_eq!(f.get("empty"), Some(""));
        assert_eq!(f.get("flag"), Some(""));
        assert_eq!(f.get("x"), Some("a b c"));
        assert_eq!(f.get("missing"), None);
    }

    #[test]
    fn pem_text_round_trips() {
        let f = Form::parse(b"cert=-----BEGIN%20CERTIFICATE-----%0D%0AMII%2B%2F%3D%0D%0A").unwrap();
        assert_eq!(
            f.get("cert"),
            Some("-----BEGIN CERTIFICATE-----\r\nMII+/=\r\n")
        );
    }

    #[test]
    fn path_segments_keep_plus() {
        assert_eq!(decode_path("a+b%20c").unwrap(), "a+b c");
        assert!(decode_path("%e0%80").is_err());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(Form::parse(b"a=%"), Err(FormError::BadEscape));
        assert_eq!(Form::parse(b"a=%4"), Err(FormError::BadEscape));
        assert_eq!(Form::parse(b"a=%zz"), Err(FormError::BadEscape));
        assert_eq!(Form::parse(b"a=%ff%fe"), Err(FormError::NotUtf8));
        assert_eq!(Form::parse(b"&&&"), Ok(Form::default()));
        let many = "a=1&".repeat(MAX_FORM_FIELDS + 1);
        assert_eq!(Form::parse(many.as_bytes()), Err(FormError::TooManyFields));
    }
}
