//! A minimal WebSocket client side over any byte stream (RFC 6455), as a
//! SIP-over-WebSocket phone speaks it (RFC 7118): the HTTP/1.1 Upgrade with
//! `Sec-WebSocket-Protocol: sip`, masked text frames out (§5.3), unmasked
//! frames in; pings answered, nothing else. Used by tests/sip_wss.rs and
//! the REGISTER benchmark (benches/sip_register.rs, through `#[path]`), so
//! it names no sibling module.
#![allow(dead_code)]

use std::io::{Read, Write};

use base64ct::{Base64, Encoding};

/// The GUID of the accept key (RFC 6455 §1.3).
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2): Base64 of the SHA-1
/// of key + GUID.
pub fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{WS_GUID}").as_bytes(),
    );
    Base64::encode_string(digest.as_ref())
}

/// Sends the Upgrade for `host` and reads the server's answer head (up to
/// the blank line): the answer's head, and the key that was sent.
pub fn upgrade(s: &mut (impl Read + Write), host: &str, nonce: u64) -> (String, String) {
    let key = Base64::encode_string(&{
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&nonce.to_be_bytes());
        k[8..].copy_from_slice(&(!nonce).to_be_bytes());
        k
    });
    let request = format!(
        "GET / HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: sip\r\n\
         Origin: https://{host}\r\n\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    s.flush().unwrap();
    // Byte by byte: the first frame may follow the head at once.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            Ok(_) => break,
            Err(e) => panic!("reading the upgrade answer: {e}; so far {head:?}"),
        }
    }
    (String::from_utf8_lossy(&head).into_owned(), key)
}

/// Writes one masked text frame carrying `text` (RFC 6455 §5.2, §5.3).
pub fn send_text(s: &mut impl Write, text: &str, mask: [u8; 4]) {
    let payload = text.as_bytes();
    let mut frame = vec![0x81u8];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    s.flush().unwrap();
}

/// Reads frames until a text or binary one (answering pings, §5.5.2) and
/// returns its payload; `None` at a close frame or EOF. A masked server
/// frame is a failure (§5.1).
pub fn read_message(s: &mut (impl Read + Write)) -> Option<String> {
    loop {
        let mut h = [0u8; 2];
        if s.read_exact(&mut h).is_err() {
            return None;
        }
        assert_eq!(h[1] & 0x80, 0, "a server frame must not be masked");
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).unwrap();
                u64::from(u16::from_be_bytes(l))
            }
            127 => {
                let mut l = [0u8; 8];
                s.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).unwrap()];
        s.read_exact(&mut payload).unwrap();
        match h[0] & 0x0f {
            0x1 | 0x2 => return Some(String::from_utf8_lossy(&payload).into_owned()),
            0x8 => return None,
            0x9 => {
                // Pong with the same data, masked.
                let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                pong.extend_from_slice(&payload);
                s.write_all(&pong).unwrap();
            }
            _ => {}
        }
    }
}
