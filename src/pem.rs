//! A lenient PEM scanner for boxes pasted by people.
//!
//! Why: admins paste what their CA mailed them: CRLF line ends, blank lines,
//! openssl "Bag Attributes" text before and between blocks, RFC 1421 headers
//! (`Proc-Type: 4,ENCRYPTED`) inside legacy key blocks, Base64 wrapped at 64 or
//! 76 columns. RFC 7468 §2 tells parsers to ignore text outside the
//! encapsulation boundaries, which is what this does; `pem-rfc7468` (strict) is
//! used for output only.
//!
//! A boundary glued to other text on one line is read as if it stood on a
//! line of its own: `cat a.crt b.crt` where `a.crt` has no final newline
//! gives `-----END CERTIFICATE----------BEGIN CERTIFICATE-----`.
//!
//! What must hold: total on arbitrary bytes; a BEGIN without its END, or a body
//! that is not Base64, is an error, never a silently dropped block.

use base64ct::{Base64, Encoding};

use crate::limits::MAX_PEM_BLOCKS;

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The label between `BEGIN ` and `-----`, e.g. `CERTIFICATE`.
    pub label: String,
    /// RFC 1421 headers (`Proc-Type`, `DEK-Info`), name and value trimmed.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub der: Vec<u8>,
}

impl Block {
    /// True when an RFC 1421 `Proc-Type: 4,ENCRYPTED` header is present.
    pub fn is_encrypted(&self) -> bool {
        self.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("Proc-Type")
                && value.to_ascii_uppercase().contains("ENCRYPTED")
        })
    }
}

/// Why a box could not be read as PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemError {
    /// A `BEGIN` line has no matching `END` line.
    Unterminated(String),
    /// The body of the block is not valid Base64.
    BadBase64(String),
    /// More than `MAX_PEM_BLOCKS` blocks.
    TooManyBlocks,
}

impl core::fmt::Display for PemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PemError::Unterminated(label) => {
                write!(
                    f,
                    "the \"BEGIN {label}\" line has no matching \"END {label}\" line"
                )
            }
            PemError::BadBase64(label) => {
                write!(f, "the body of the \"{label}\" block is not valid Base64")
            }
            PemError::TooManyBlocks => write!(f, "more than {MAX_PEM_BLOCKS} PEM blocks"),
        }
    }
}

/// A block being read: label, headers, Base64 body, still in the header part.
type OpenBlock = (String, Vec<(String, String)>, String, bool);

fn boundary<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    line.strip_prefix("-----")?
        .strip_prefix(kind)?
        .strip_prefix(' ')?
        .strip_suffix("-----")
}

/// `line` cut before and after every encapsulation boundary in it
/// (`-----BEGIN LABEL-----`, `-----END LABEL-----`), so that boundaries glued
/// to each other or to text stand alone; a line without one comes back
/// whole (an empty line too: it ends RFC 1421 headers).
fn split_glued(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        let start = [rest.find("-----BEGIN "), rest.find("-----END ")]
            .into_iter()
            .flatten()
            .min();
        let Some(start) = start else {
            if !rest.is_empty() || out.is_empty() {
                out.push(rest);
            }
            return out;
        };
        let (before, at) = rest.split_at(start);
        if !before.is_empty() {
            out.push(before);
        }
        // The boundary runs to the first `-----` after its keyword.
        let keyword = if at.starts_with("-----BEGIN ") { 11 } else { 9 };
        match at.get(keyword..).and_then(|l| l.find("-----")) {
            Some(i) => {
                let (boundary, after) = at.split_at(keyword + i + 5);
                out.push(boundary);
                rest = after;
            }
            None => {
                out.push(at);
                return out;
            }
        }
    }
}

/// Every PEM block in `input`, in order; text outside blocks is ignored.
pub fn parse(input: &[u8]) -> Result<Vec<Block>, PemError> {
    let mut blocks = Vec::new();
    let mut open: Option<OpenBlock> = None;
    for raw in input.split(|&b| b == b'\n') {
        let text = String::from_utf8_lossy(raw);
        for line in split_glued(text.trim()) {
            let line = line.trim();
            match open.as_mut() {
                None => {
                    if let Some(label) = boundary(line, "BEGIN") {
                        open = Some((label.to_owned(), Vec::new(), String::new(), true));
                    }
                }
                Some((label, headers, body, in_headers)) => {
                    if let Some(end) = boundary(line, "END") {
                        if end != label.as_str() {
                            return Err(PemError::Unterminated(label.clone()));
                        }
                        let der = Base64::decode_vec(body)
                            .map_err(|_| PemError::BadBase64(label.clone()))?;
                        if der.is_empty() {
                            return Err(PemError::BadBase64(label.clone()));
                        }
                        if blocks.len() == MAX_PEM_BLOCKS {
                            return Err(PemError::TooManyBlocks);
                        }
                        blocks.push(Block {
                            label: std::mem::take(label),
                            headers: std::mem::take(headers),
                            der,
                        });
                        open = None;
                    } else if boundary(line, "BEGIN").is_some() {
                        return Err(PemError::Unterminated(label.clone()));
                    } else if *in_headers && body.is_empty() && line.contains(':') {
                        let (name, value) = line.split_once(':').unwrap_or((line, ""));
                        headers.push((name.trim().to_owned(), value.trim().to_owned()));
                    } else if line.is_empty() {
                        *in_headers = false;
                    } else {
                        *in_headers = false;
                        body.extend(line.chars().filter(|c| !c.is_whitespace()));
                    }
                }
            }
        }
    }
    match open {
        Some((label, ..)) => Err(PemError::Unterminated(label)),
        None => Ok(blocks),
    }
}

/// PEM text of one DER object (strict RFC 7468 form, LF line ends).
pub fn encode(label: &str, der: &[u8]) -> String {
    // Encoding can only fail on a label with invalid characters; ours are fixed.
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glued_boundaries_are_read_as_lines_of_their_own() {
        let one = encode("CERTIFICATE", &[1, 2, 3]);
        let two = encode("CERTIFICATE", &[4, 5]);
        // `cat` of a file without its final newline, and text glued on.
        let glued = format!("{}{}", one.trim_end(), two);
        let blocks = parse(glued.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            (blocks[0].der.clone(), blocks[1].der.clone()),
            (vec![1, 2, 3], vec![4, 5])
        );
        let noisy = format!("subject=/CN=x{}trailing text\n", one.trim_end());
        assert_eq!(parse(noisy.as_bytes()).unwrap().len(), 1);
        assert_eq!(
            split_glued("-----END A----------BEGIN B-----"),
            vec!["-----END A-----", "-----BEGIN B-----"]
        );
        assert_eq!(split_glued(""), vec![""]);
        assert_eq!(split_glued("AAEC"), vec!["AAEC"]);
        // A boundary without its closing dashes stays one piece (and is no
        // boundary); a glued BEGIN without END is still an error.
        assert_eq!(split_glued("x-----BEGIN A"), vec!["x", "-----BEGIN A"]);
        let cut = format!("{}-----BEGIN CERTIFICATE-----\nAAEC\n", one.trim_end());
        assert_eq!(
            parse(cut.as_bytes()),
            Err(PemError::Unterminated("CERTIFICATE".into()))
        );
        // Total on odd input (multi-byte characters around boundaries).
        for odd in [
            "é-----END é-----é",
            "-----BEGIN ",
            "-----END -----",
            "----------BEGIN -----",
        ] {
            let _ = parse(odd.as_bytes());
        }
    }

    #[test]
    fn reads_crlf_bag_attributes_and_headers() {
        let text = "Bag Attributes\r\n    localKeyID: 01 02\r\nsubject=/CN=x\r\n\
                    -----BEGIN CERTIFICATE-----\r\nAAEC\r\nAw==\r\n-----END CERTIFICATE-----\r\n\
                    \r\nnoise\n-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                    DEK-Info: AES-128-CBC,00\n\nBAU=\n-----END RSA PRIVATE KEY-----\n";
        let blocks = parse(text.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der, vec![0, 1, 2, 3]);
        assert!(!blocks[0].is_encrypted());
        assert!(blocks[1].is_encrypted());
        assert_eq!(blocks[1].der, vec![4, 5]);
    }

    #[test]
    fn begin_without_end_is_an_error() {
        let text = "-----BEGIN CERTIFICATE-----\nAAEC\n";
        assert_eq!(
            parse(text.as_bytes()),
            Err(PemError::Unterminated("CERTIFICATE".into()))
        );
        let text = "-----BEGIN CERTIFICATE-----\nAAEC\n-----BEGIN CERTIFICATE-----\n";
        assert!(matches!(
            parse(text.as_bytes()),
            Err(PemError::Unterminated(_))
        ));
        let text = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            parse(text.as_bytes()),
            Err(PemError::Unterminated(_))
        ));
    }

    #[test]
    fn bad_base64_is_an_error() {
        let text = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert_eq!(
            parse(text.as_bytes()),
            Err(PemError::BadBase64("CERTIFICATE".into()))
        );
    }

    #[test]
    fn garbage_is_no_block_and_round_trip_works() {
        assert_eq!(parse(b"\xff\xfe hello").unwrap(), vec![]);
        let pem = encode("CERTIFICATE", &[9; 100]);
        assert_eq!(parse(pem.as_bytes()).unwrap()[0].der, vec![9; 100]);
    }
}
