//! A small SMTP submission client for alert mail (RFC 5321, RFC 6409).
//!
//! Why our own: lettre and mail-send run on tokio (or async-std), and this
//! daemon runs on smol; one short message per alert needs EHLO, STARTTLS
//! (RFC 3207) or implicit TLS (RFC 8314 §3.3), AUTH PLAIN (RFC 4616) or
//! LOGIN, MAIL/RCPT/DATA and QUIT, a few hundred lines with no new crate.
//! TLS is the daemon's rustls client trusting exactly the Root CA list
//! (`outbound::Client::tls_connector`).
//!
//! What must hold: nothing is sent in clear but the greeting, EHLO and
//! STARTTLS (AUTH only after TLS; a server without STARTTLS is refused);
//! every reply is bounded (`ALERT_SMTP_MAX_REPLY`) and the whole exchange
//! by `ALERT_SMTP_TIMEOUT`; header values carry no CR/LF; the body is
//! dot-stuffed (RFC 5321 §4.5.2).

use base64ct::{Base64, Encoding};
use futures_rustls::TlsConnector;
use rustls::pki_types::ServerName;
use smol::future::FutureExt as _;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::alert::SmtpTls;
use crate::limits::{ALERT_SMTP_MAX_REPLY, ALERT_SMTP_TIMEOUT};

/// Why a mail was not submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpError {
    /// The settings are incomplete (no server, no recipient).
    Config(String),
    /// DNS or TCP connection failed.
    Connect(String),
    /// TLS failed (e.g. the server is not trusted by the Root CA list).
    Tls(String),
    /// The server offers no STARTTLS (plain text is refused).
    NoStarttls,
    /// The server offers neither AUTH PLAIN nor LOGIN.
    NoAuthMechanism,
    /// The server refused the credentials.
    AuthFailed(String),
    /// The server answered a command with an error.
    Rejected(String),
    /// Reading or writing failed, or the reply was malformed or too long.
    Io(String),
    /// Not done within `ALERT_SMTP_TIMEOUT`.
    Timeout,
}

impl SmtpError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            SmtpError::Config(_) => "smtp-config",
            SmtpError::Connect(_) => "smtp-connect",
            SmtpError::Tls(_) => "smtp-tls",
            SmtpError::NoStarttls => "smtp-no-starttls",
            SmtpError::NoAuthMechanism => "smtp-no-auth-mechanism",
            SmtpError::AuthFailed(_) => "smtp-auth-failed",
            SmtpError::Rejected(_) => "smtp-rejected",
            SmtpError::Io(_) => "smtp-io",
            SmtpError::Timeout => "smtp-timeout",
        }
    }
}

impl core::fmt::Display for SmtpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SmtpError::Config(m)
            | SmtpError::Connect(m)
            | SmtpError::Tls(m)
            | SmtpError::AuthFailed(m)
            | SmtpError::Rejected(m)
            | SmtpError::Io(m) => f.write_str(m),
            SmtpError::NoStarttls => f.write_str("the server offers no STARTTLS"),
            SmtpError::NoAuthMechanism => {
                f.write_str("the server offers neither AUTH PLAIN nor LOGIN")
            }
            SmtpError::Timeout => write!(f, "no answer within {} s", ALERT_SMTP_TIMEOUT.as_secs()),
        }
    }
}

/// One message to submit.
pub struct Mail<'a> {
    /// `HOST:PORT`.
    pub server: &'a str,
    /// STARTTLS or implicit TLS.
    pub tls: SmtpTls,
    /// AUTH user and password.
    pub auth: Option<(&'a str, &'a str)>,
    /// Envelope and header sender.
    pub from: &'a str,
    /// The recipient.
    pub to: &'a str,
    /// Subject (one line).
    pub subject: &'a str,
    /// Text body.
    pub body: &'a str,
}

/// Submit one message.
pub async fn send(connector: &TlsConnector, mail: &Mail<'_>) -> Result<(), SmtpError> {
    let work = exchange(connector, mail);
    work.or(async {
        smol::Timer::after(ALERT_SMTP_TIMEOUT).await;
        Err(SmtpError::Timeout)
    })
    .await
}

async fn exchange(connector: &TlsConnector, mail: &Mail<'_>) -> Result<(), SmtpError> {
    let (host, port) = mail
        .server
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .ok_or_else(|| SmtpError::Config(format!("bad server {}", mail.server)))?;
    let tcp = smol::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| SmtpError::Connect(format!("{host}:{port}: {e}")))?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| SmtpError::Config(format!("bad server name {host}")))?;
    let tls_err = |e: std::io::Error| SmtpError::Tls(format!("{host}:{port}: {e}"));
    match mail.tls {
        SmtpTls::Implicit => {
            let mut tls = connector.connect(name, tcp).await.map_err(tls_err)?;
            let mut c = Conn::new(&mut tls);
            c.expect(220).await?;
            let ext = c.ehlo().await?;
            c.submit(mail, &ext).await
        }
        SmtpTls::Starttls => {
            let mut tcp = tcp;
            {
                let mut c = Conn::new(&mut tcp);
                c.expect(220).await?;
                let ext = c.ehlo().await?;
                if !ext.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
                    return Err(SmtpError::NoStarttls);
                }
                c.command("STARTTLS", 220).await?;
                if !c.buf.is_empty() {
                    // RFC 3207 §4: nothing may follow the 220 in clear.
                    return Err(SmtpError::Io("data after the STARTTLS reply".into()));
                }
            }
            let mut tls = connector.connect(name, tcp).await.map_err(tls_err)?;
            let mut c = Conn::new(&mut tls);
            let ext = c.ehlo().await?;
            c.submit(mail, &ext).await
        }
    }
}

/// One side of an SMTP conversation over a stream.
struct Conn<'s, S> {
    stream: &'s mut S,
    buf: Vec<u8>,
}

impl<'s, S: AsyncRead + AsyncWrite + Unpin> Conn<'s, S> {
    fn new(stream: &'s mut S) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Read one (possibly multi-line) reply: its code and its lines' text.
    async fn reply(&mut self) -> Result<(u16, Vec<String>), SmtpError> {
        let mut lines = Vec::new();
        loop {
            let line = loop {
                if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=i).collect();
                    break String::from_utf8_lossy(&line).trim_end().to_owned();
                }
                if self.buf.len() > ALERT_SMTP_MAX_REPLY {
                    return Err(SmtpError::Io("reply too long".into()));
                }
                let mut chunk = [0u8; 1024];
                let n = self
                    .stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| SmtpError::Io(e.to_string()))?;
                if n == 0 {
                    return Err(SmtpError::Io("the server closed the connection".into()));
                }
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
            };
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| SmtpError::Io(format!("malformed reply: {line}")))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if lines.iter().map(String::len).sum::<usize>() > ALERT_SMTP_MAX_REPLY {
                return Err(SmtpError::Io("reply too long".into()));
            }
            if !more {
                return Ok((code, lines));
            }
        }
    }

    async fn expect(&mut self, want: u16) -> Result<Vec<String>, SmtpError> {
        let (code, lines) = self.reply().await?;
        if code != want {
            return Err(SmtpError::Rejected(format!("{code} {}", lines.join(" "))));
        }
        Ok(lines)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SmtpError> {
        let io = |e: std::io::Error| SmtpError::Io(e.to_string());
        self.stream.write_all(bytes).await.map_err(io)?;
        self.stream.flush().await.map_err(io)
    }

    async fn command(&mut self, line: &str, want: u16) -> Result<Vec<String>, SmtpError> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.expect(want).await
    }

    /// EHLO; the extension lines (after the greeting line).
    async fn ehlo(&mut self) -> Result<Vec<String>, SmtpError> {
        let lines = self.command("EHLO pbx-certd", 250).await?;
        Ok(lines.into_iter().skip(1).collect())
    }

    async fn auth(&mut self, ext: &[String], user: &str, pass: &str) -> Result<(), SmtpError> {
        let mechs: Vec<String> = ext
            .iter()
            .filter_map(|l| l.strip_prefix("AUTH ").or_else(|| l.strip_prefix("AUTH=")))
            .flat_map(|m| m.split_whitespace().map(str::to_ascii_uppercase))
            .collect();
        let denied = |e: SmtpError| match e {
            SmtpError::Rejected(m) => SmtpError::AuthFailed(m),
            other => other,
        };
        if mechs.iter().any(|m| m == "PLAIN") {
            let token = Base64::encode_string(format!("\0{user}\0{pass}").as_bytes());
            self.command(&format!("AUTH PLAIN {token}"), 235)
                .await
                .map_err(denied)?;
        } else if mechs.iter().any(|m| m == "LOGIN") {
            self.command("AUTH LOGIN", 334).await.map_err(denied)?;
            self.command(&Base64::encode_string(user.as_bytes()), 334)
                .await
                .map_err(denied)?;
            self.command(&Base64::encode_string(pass.as_bytes()), 235)
                .await
                .map_err(denied)?;
        } else {
            return Err(SmtpError::NoAuthMechanism);
        }
        Ok(())
    }

    async fn submit(&mut self, mail: &Mail<'_>, ext: &[String]) -> Result<(), SmtpError> {
        if let Some((user, pass)) = mail.auth {
            self.auth(ext, user, pass).await?;
        }
        self.command(&format!("MAIL FROM:<{}>", mail.from), 250)
            .await?;
        let (code, lines) = {
            self.write(format!("RCPT TO:<{}>\r\n", mail.to).as_bytes())
                .await?;
            self.reply().await?
        };
        if code != 250 && code != 251 {
            return Err(SmtpError::Rejected(format!("{code} {}", lines.join(" "))));
        }
        self.command("DATA", 354).await?;
        self.write(&message(mail, crate::clock::now())).await?;
        self.expect(250).await?;
        // The message is accepted; a failed QUIT changes nothing.
        let _ = self.command("QUIT", 221).await;
        Ok(())
    }
}

/// A header value on one line.
fn one_line(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The message as sent after DATA: headers, dot-stuffed CRLF body, `.`.
fn message(mail: &Mail<'_>, now: i64) -> Vec<u8> {
    let mut out = format!(
        "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nDate: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\
         Auto-Submitted: auto-generated\r\n\r\n",
        one_line(mail.from),
        one_line(mail.to),
        one_line(mail.subject),
        rfc5322_date(now)
    );
    for line in mail.body.lines() {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out.into_bytes()
}

/// `Tue, 01 Dec 2026 03:23:48 +0000` (RFC 5322 §3.3).
fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = crate::clock::rfc3339(unix); // 2026-12-01T03:23:48Z
    let weekday = DAYS
        .get(usize::try_from(unix.div_euclid(86_400).rem_euclid(7)).unwrap_or(0))
        .copied()
        .unwrap_or("Thu");
    let month = t
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {} {month} {} {} +0000",
        t.get(8..10).unwrap_or("01"),
        t.get(..4).unwrap_or("1970"),
        t.get(11..19).unwrap_or("00:00:00")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_and_dot_stuffing() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_796_095_428),
            "Tue, 01 Dec 2026 03:23:48 +0000"
        );
        let mail = Mail {
            server: "x:1",
            tls: SmtpTls::Starttls,
            auth: None,
            from: "a@b.c",
            to: "d@e.f",
            subject: "s\r\nBcc: evil@x.y",
            body: "one\n.two\n",
        };
        let text = String::from_utf8(message(&mail, 0)).unwrap();
        assert!(text.contains("Subject: s  Bcc: evil@x.y\r\n"), "{text}");
        assert!(text.ends_with("one\r\n..two\r\n.\r\n"), "{text}");
    }
}
