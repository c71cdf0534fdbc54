//! The strict request-head gate (RFC 9112 §2-§6) that runs before picoserve
//! parses a head: `HeadScanner` reads the head byte by byte as the socket's
//! read half (`io.rs`) delivers it and refuses anything two HTTP parsers
//! could frame differently (RFC 9112 §11.2, request smuggling); `HeadError`
//! says why, with the status and stable code the answer carries.
//!
//! Why its own file: both the socket glue (`io.rs`) and the picoserve glue
//! (`server.rs`) need it, and neither may import the other.
//!
//! What must hold: one `Content-Length` of plain digits, no
//! `Transfer-Encoding`, no obs-fold, no whitespace before a colon, no control
//! characters, a well-formed request line, at most the head buffer; a head
//! the scanner accepts frames the same way in picoserve.

use super::msg::Resp;

/// Why a request head was refused before any handler saw it. After any of
/// these the connection is answered once and closed: what follows a head
/// we cannot frame must never be read as another request (RFC 9112 §11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// The head does not fit the connection's head buffer (RFC 6585 §5).
    TooLarge,
    /// The request line is not `METHOD SP TARGET SP HTTP-VERSION` (RFC 9112 §3).
    BadRequestLine,
    /// An HTTP version other than 1.0 and 1.1 (RFC 9110 §15.6.6).
    UnsupportedVersion,
    /// A header line that is not `name: value` with a token name (RFC 9112 §5).
    BadHeaderLine,
    /// Whitespace between a header name and its colon (RFC 9112 §5.1).
    SpaceBeforeColon,
    /// A header line continued on the next line, obs-fold (RFC 9112 §5.2).
    ObsFold,
    /// A control character (NUL, bare CR, ...) in the head (RFC 9112 §2.2,
    /// RFC 9110 §5.5).
    ControlCharacter,
    /// `Transfer-Encoding` without `Content-Length`: bodies are framed by
    /// `Content-Length` only (RFC 9112 §6.1).
    TransferEncoding,
    /// Both `Transfer-Encoding` and `Content-Length` (RFC 9112 §6.1, §6.3).
    TransferEncodingWithLength,
    /// A `Content-Length` that is not one decimal number (`1*DIGIT`, RFC 9110
    /// §8.6) or does not fit this machine's `usize`.
    BadContentLength,
    /// More than one `Content-Length` field line (RFC 9112 §6.3; identical
    /// copies are refused too).
    DuplicateContentLength,
    /// More than one `Host` field line (RFC 9112 §3.2).
    DuplicateHost,
    /// The connection ended in the middle of a head.
    Incomplete,
    /// The head did not arrive within the connection's request timeout.
    Timeout,
}

impl HeadError {
    /// Stable code (logs).
    pub fn code(self) -> &'static str {
        match self {
            HeadError::TooLarge => "head-too-large",
            HeadError::BadRequestLine => "bad-request-line",
            HeadError::UnsupportedVersion => "unsupported-version",
            HeadError::BadHeaderLine => "bad-header-line",
            HeadError::SpaceBeforeColon => "space-before-colon",
            HeadError::ObsFold => "obs-fold",
            HeadError::ControlCharacter => "control-character",
            HeadError::TransferEncoding => "transfer-encoding",
            HeadError::TransferEncodingWithLength => "transfer-encoding-with-length",
            HeadError::BadContentLength => "bad-content-length",
            HeadError::DuplicateContentLength => "duplicate-content-length",
            HeadError::DuplicateHost => "duplicate-host",
            HeadError::Incomplete => "head-incomplete",
            HeadError::Timeout => "head-timeout",
        }
    }

    /// HTTP status of the answer.
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::UnsupportedVersion => 505,
            HeadError::TransferEncoding => 411,
            HeadError::Timeout => 408,
            _ => 400,
        }
    }

    /// What was wrong, for the answer's body.
    pub fn message(self) -> &'static str {
        match self {
            HeadError::TooLarge => "request head too large",
            HeadError::BadRequestLine => "malformed request line",
            HeadError::UnsupportedVersion => "HTTP version not supported; use HTTP/1.1",
            HeadError::BadHeaderLine => "malformed header line",
            HeadError::SpaceBeforeColon => "whitespace between a header name and its colon",
            HeadError::ObsFold => "folded header line (obs-fold) not accepted",
            HeadError::ControlCharacter => "control character in the request head",
            HeadError::TransferEncoding => {
                "Transfer-Encoding is not supported; send the body with Content-Length"
            }
            HeadError::TransferEncodingWithLength => {
                "both Transfer-Encoding and Content-Length in one request"
            }
            HeadError::BadContentLength => "Content-Length must be one decimal number",
            HeadError::DuplicateContentLength => "more than one Content-Length",
            HeadError::DuplicateHost => "more than one Host",
            HeadError::Incomplete => "request head incomplete: the connection ended before its end",
            HeadError::Timeout => "request head not received in time",
        }
    }

    /// The whole answer (security headers, `Connection: close`), as bytes.
    pub fn response(self) -> Vec<u8> {
        let mut resp =
            Resp::text(self.status(), format!("{}\n", self.message())).with("Connection", "close");
        resp.finish_headers();
        resp.http1()
    }
}

/// What `HeadScanner::scan` found in the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A complete, acceptable head of `head` bytes; its body is the next
    /// `body` bytes.
    Complete {
        /// Length of the head, up to and including its empty line.
        head: usize,
        /// The declared `Content-Length` (0 without one).
        body: usize,
    },
    /// Empty lines before the request line (RFC 9112 §2.2: ignored): drop
    /// these bytes and scan again.
    Skip(usize),
    /// Not complete yet: read more.
    NeedMore,
    /// Refused.
    Refused(HeadError),
}

/// Incremental check of one request head, fed the bytes received so far.
/// It resumes where it stopped, so a head dripped one byte per read is still
/// looked at once, and it refuses garbage at the first impossible byte.
///
/// What must hold: a head it accepts is one picoserve reads the same way
/// (same end, same `Content-Length`): every line ends in LF (CR LF or LF),
/// no line before the empty one is blank or starts with whitespace, names are
/// tokens directly followed by `:`, at most one `Content-Length` of plain
/// digits that fits `usize`, no `Transfer-Encoding`, no NUL (picoserve drops
/// NULs from heads, which would join split names).
#[derive(Debug, Default)]
pub struct HeadScanner {
    /// Start of the line being read.
    line_start: usize,
    /// Bytes already checked one by one.
    checked: usize,
    /// Complete lines seen (the request line is line 0).
    lines: usize,
    /// A space was seen in the request line (the method has ended).
    method_done: bool,
    content_length: Option<usize>,
    transfer_encoding: bool,
    hosts: usize,
}

/// `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Optional whitespace (RFC 9110 §5.6.3).
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ows(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_ows(*last) {
            break;
        }
        v = rest;
    }
    v
}

/// `1*DIGIT` that fits a `usize` (RFC 9110 §8.6).
fn parse_content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0usize, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(usize::from(b - b'0'))
    })
}

fn check_request_line(line: &[u8]) -> Result<(), HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::BadRequestLine);
    };
    if method.is_empty()
        || !method.iter().all(|&b| is_tchar(b))
        || target.is_empty()
        || !target.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(HeadError::BadRequestLine);
    }
    match version {
        b"HTTP/1.1" | b"HTTP/1.0" => Ok(()),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(HeadError::UnsupportedVersion)
        }
        _ => Err(HeadError::BadRequestLine),
    }
}

impl HeadScanner {
    /// Look at `buf` (the bytes received since the last head ended), at
    /// most `limit` bytes of head.
    pub fn scan(&mut self, buf: &[u8], limit: usize) -> Scan {
        if self.checked == 0 {
            let mut skip = 0;
            loop {
                match buf.get(skip..) {
                    Some([b'\n', ..]) => skip += 1,
                    Some([b'\r', b'\n', ..]) => skip += 2,
                    _ => break,
                }
            }
            if skip > 0 {
                return Scan::Skip(skip);
            }
            if buf == b"\r" {
                return Scan::NeedMore;
            }
        }
        let end = buf.len().min(limit);
        while let Some(&b) = buf.get(self.checked).filter(|_| self.checked < end) {
            if b == b'\n' {
                let line = buf.get(self.line_start..self.checked).unwrap_or_default();
                match self.line(line) {
                    Err(e) => return Scan::Refused(e),
                    Ok(true) => return self.finish(self.checked + 1),
                    Ok(false) => self.line_start = self.checked + 1,
                }
            } else if self.lines == 0 && !self.method_done {
                if b == b' ' {
                    self.method_done = true;
                } else if !is_tchar(b) {
                    return Scan::Refused(HeadError::BadRequestLine);
                }
            } else if (b < 0x20 && b != b'\t' && b != b'\r') || b == 0x7f {
                return Scan::Refused(HeadError::ControlCharacter);
            }
            self.checked += 1;
        }
        if buf.len() >= limit {
            Scan::Refused(HeadError::TooLarge)
        } else {
            Scan::NeedMore
        }
    }

    /// One complete line (without its LF); `Ok(true)` at the empty line
    /// that ends the head.
    fn line(&mut self, line: &[u8]) -> Result<bool, HeadError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.contains(&b'\r') {
            return Err(HeadError::ControlCharacter);
        }
        let first = self.lines == 0;
        self.lines += 1;
        if first {
            return check_request_line(line).map(|()| false);
        }
        let Some(&start) = line.first() else {
            return Ok(true);
        };
        if is_ows(start) {
            return Err(HeadError::ObsFold);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HeadError::BadHeaderLine)?;
        let (name, value) = line.split_at(colon);
        let value = trim_ows(value.get(1..).unwrap_or_default());
        if name.iter().any(|&b| is_ows(b)) {
            return Err(HeadError::SpaceBeforeColon);
        }
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(HeadError::BadHeaderLine);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if self.content_length.is_some() {
                return Err(HeadError::DuplicateContentLength);
            }
            self.content_length =
                Some(parse_content_length(value).ok_or(HeadError::BadContentLength)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            self.hosts += 1;
            if self.hosts > 1 {
                return Err(HeadError::DuplicateHost);
            }
        }
        Ok(false)
    }

    fn finish(&self, head: usize) -> Scan {
        match (self.transfer_encoding, self.content_length) {
            (true, Some(_)) => Scan::Refused(HeadError::TransferEncodingWithLength),
            (true, None) => Scan::Refused(HeadError::TransferEncoding),
            (false, length) => Scan::Complete {
                head,
                body: length.unwrap_or(0),
            },
        }
    }
}
