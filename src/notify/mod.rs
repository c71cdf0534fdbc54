//! Sending alerts: the daemon loop that evaluates the alert rules and sends
//! each open alert once per channel (e-mail, webhook), and `alert test`.
//!
//! Why: the rules and the delivery records live in `crate::alert` (layer 4,
//! over the store); the network (SMTP, HTTPS) is here, beside the other
//! daemon loops (layer 7).
//!
//! What must hold: an alert is sent once per channel: the channel's `sent`
//! time is committed right after it was accepted, so a restart does not
//! resend; a failed channel is retried with back-off
//! (`alert::ChannelState::failed`) and does not hold up the other one; the
//! loop evaluates when the snapshot changed (an import, a renewal, a
//! deletion), when a retry is due, and at least every
//! `ALERT_EVAL_INTERVAL_SECS`; store I/O runs on the blocking pool.
//!
//! Webhook: `POST` of the alert as JSON to the configured https URL, with
//! `X-Pbx-Certd-Signature: sha256=HEX`, the HMAC-SHA256 (RFC 2104) of the
//! exact body under the configured secret; any 2xx is delivered.

pub mod smtp;

use std::sync::Arc;

use serde_json::json;

use crate::alert::{self, Alert, AlertSettings, ChannelOutcome, Delivery, TestReport};
use crate::clock;
use crate::daemon::Shared;
use crate::error::Error;
use crate::limits::{ALERT_EVAL_INTERVAL_SECS, ALERT_TICK};
use crate::store::Store;

/// Why a channel failed (`code: message`), or `Ok`.
type Outcome = Result<(), (String, String)>;

/// What sending needs from the store, read once per pass on the blocking
/// pool (the sends themselves touch no store).
pub struct Channels {
    /// The settings.
    pub settings: AlertSettings,
    /// Sender and recipient (the admin e-mail), when there is a recipient.
    ends: Option<(String, String)>,
    /// The HTTPS/TLS client trusting the Root CA list, or why there is none.
    client: Result<crate::outbound::Client, (String, String)>,
}

/// Read the channels (blocking: store reads, Root CA list parsing).
pub fn channels(store: &Store) -> Result<Channels, Error> {
    let settings = alert::settings(store)?;
    let to = store.system()?.admin_email;
    let ends = to.map(|to| (settings.from.clone().unwrap_or_else(|| to.clone()), to));
    let client = crate::outbound::Client::from_store(store)
        .map_err(|e| (e.code().to_owned(), e.to_string()));
    Ok(Channels {
        settings,
        ends,
        client,
    })
}

/// The webhook body of an alert: the alert and when it was sent.
fn webhook_body(a: &Alert) -> Vec<u8> {
    let mut v = a.to_json();
    v["sent"] = json!(clock::rfc3339(clock::now()));
    v.to_string().into_bytes()
}

/// `sha256=HEX` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let mut out = String::from("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

async fn send_mail(ch: &Channels, a: &Alert) -> Outcome {
    let s = &ch.settings;
    let server = s.smtp_server.as_deref().unwrap_or_default();
    let Some((from, to)) = &ch.ends else {
        return Err((
            "no-admin-email".into(),
            "no admin e-mail to send to (`system set --admin-email`)".into(),
        ));
    };
    let client = ch.client.as_ref().map_err(Clone::clone)?;
    let body = format!(
        "{}\n\nAlert {} ({}), from pbx-certd.\n",
        a.message, a.key, a.code
    );
    let mail = smtp::Mail {
        server,
        tls: s.smtp_tls,
        auth: s.smtp_user.as_deref().zip(s.smtp_password.as_deref()),
        from,
        to,
        subject: &format!("pbx-certd alert: {}", a.subject),
        body: &body,
    };
    smtp::send(&client.tls_connector(), &mail)
        .await
        .map_err(|e| (e.code().to_owned(), e.to_string()))
}

async fn send_webhook(ch: &Channels, a: &Alert) -> Outcome {
    let s = &ch.settings;
    let url = s.webhook.as_deref().unwrap_or_default();
    let body = webhook_body(a);
    let sig = signature(s.webhook_secret.as_deref().unwrap_or_default(), &body);
    let client = ch.client.as_ref().map_err(Clone::clone)?;
    let resp = client
        .request(
            "POST",
            url,
            &[
                ("Content-Type", "application/json"),
                ("X-Pbx-Certd-Signature", &sig),
            ],
            &body,
        )
        .await
        .map_err(|e| (e.code().to_owned(), e.to_string()))?;
    if (200..300).contains(&resp.status) {
        Ok(())
    } else {
        Err((
            "webhook-status".into(),
            format!("the webhook answered HTTP {}", resp.status),
        ))
    }
}

fn outcome_view(o: &Outcome) -> ChannelOutcome {
    match o {
        Ok(()) => ChannelOutcome {
            ok: true,
            code: None,
            message: None,
        },
        Err((code, message)) => ChannelOutcome {
            ok: false,
            code: Some(code.to_string()),
            message: Some(message.clone()),
        },
    }
}

/// `alert test` in the daemon (the control socket): the store is read on
/// the blocking pool.
pub async fn test_in_daemon(shared: &Arc<Shared>) -> Result<TestReport, Error> {
    let s = shared.clone();
    let ch = smol::unblock(move || channels(s.store())).await?;
    test(&ch).await
}

/// `alert test`: one test alert on every configured channel, each
/// outcome reported (`{"email": {"ok": true}, "webhook": {"ok": false,
/// "code", "message"}}`); nothing is recorded.
pub async fn test(ch: &Channels) -> Result<TestReport, Error> {
    let s = &ch.settings;
    if s.smtp_server.is_none() && s.webhook.is_none() {
        return Err(Error::BadSetting(
            "no alert channel is configured (`alert set --smtp-server` or `--webhook`)".into(),
        ));
    }
    let a = Alert {
        key: format!("test:{}", clock::now()),
        code: "test".into(),
        subject: "test alert".into(),
        message: "This is a test alert from pbx-certd (`alert test`).".into(),
        cert_id: None,
        at: None,
    };
    let mut out = TestReport {
        email: None,
        webhook: None,
    };
    if s.smtp_server.is_some() {
        out.email = Some(outcome_view(&send_mail(ch, &a).await));
    }
    if s.webhook.is_some() {
        out.webhook = Some(outcome_view(&send_webhook(ch, &a).await));
    }
    Ok(out)
}

/// Note one attempt's outcome on a channel (and log it).
fn note(a: &Alert, channel: &str, state: &mut alert::ChannelState, outcome: Outcome) {
    match outcome {
        Ok(()) => {
            log::info!("alert {} ({}): {channel} sent", a.key, a.code);
            state.sent = Some(clock::now());
        }
        Err((code, m)) => {
            log::warn!("alert {}: {channel} failed [{code}]: {m}", a.key);
            state.failed(clock::now(), format!("{code}: {m}"));
        }
    }
}

/// One pass: evaluate, send what is due, record. Returns the earliest
/// retry time (Unix seconds), if any channel waits for one.
async fn pass(shared: &Arc<Shared>) -> Result<Option<i64>, Error> {
    let (open, ch, records) = {
        let shared = shared.clone();
        smol::unblock(move || {
            let store = shared.store();
            let open = alert::evaluate(store, clock::now())?;
            alert::forget_closed(store, &open)?;
            let mut records = Vec::new();
            for a in &open {
                records.push(alert::delivery(store, &a.key)?);
            }
            // The Root CA list is parsed only when there is something to send.
            let ch = if open.is_empty() {
                None
            } else {
                Some(channels(store)?)
            };
            Ok::<_, Error>((open, ch, records))
        })
        .await?
    };
    let Some(ch) = ch else { return Ok(None) };
    let settings = &ch.settings;
    let mut next: Option<i64> = None;
    for (a, record) in open.iter().zip(records) {
        let now = clock::now();
        let is_new = record.is_none();
        let mut d = record.unwrap_or_else(|| Delivery {
            opened: now,
            ..Delivery::default()
        });
        let before = d.clone();
        if settings.smtp_server.is_some() && d.email.due(now) {
            note(a, "e-mail", &mut d.email, send_mail(&ch, a).await);
        }
        if settings.webhook.is_some() && d.webhook.due(now) {
            note(a, "webhook", &mut d.webhook, send_webhook(&ch, a).await);
        }
        for (on, c) in [
            (settings.smtp_server.is_some(), &d.email),
            (settings.webhook.is_some(), &d.webhook),
        ] {
            if on && c.sent.is_none() {
                next = Some(next.map_or(c.next_try, |n| n.min(c.next_try)));
            }
        }
        if d != before || is_new {
            let (shared, key) = (shared.clone(), a.key.clone());
            smol::unblock(move || alert::put_delivery(shared.store(), &key, &d)).await?;
        }
    }
    Ok(next)
}

/// The daemon's alert loop (never returns; polled with the listeners).
pub async fn run(shared: Arc<Shared>) {
    let mut seen: Option<Arc<crate::snapshot::Snapshot>> = None;
    let mut next_eval = 0i64;
    let mut first = true;
    let mut channels: Option<AlertSettings> = None;
    loop {
        let snap = shared.snapshot();
        // A new channel sends the open alerts at once (one key read a tick).
        let now_channels = {
            let shared = shared.clone();
            smol::unblock(move || alert::settings(shared.store()).ok()).await
        };
        let changed =
            seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &snap)) || now_channels != channels;
        channels = now_channels;
        let now = clock::now();
        if changed || now >= next_eval {
            seen = Some(snap);
            next_eval = now + ALERT_EVAL_INTERVAL_SECS;
            match pass(&shared).await {
                Ok(retry) => {
                    if first {
                        // Tests wait for this line (an evaluation happened).
                        log::info!("alerts: first evaluation done");
                        first = false;
                    }
                    if let Some(at) = retry {
                        next_eval = next_eval.min(at);
                    }
                }
                Err(e) => log::warn!("alerts: [{}] {e}", e.code_str()),
            }
        }
        smol::Timer::after(ALERT_TICK).await;
    }
}
