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

use serde_json::{json, Value};

use crate::alert::{self, Alert, AlertSettings, Delivery};
use crate::clock;
use crate::daemon::Shared;
use crate::error::Error;
use crate::limits::{ALERT_EVAL_INTERVAL_SECS, ALERT_TICK};
use crate::store::Store;

/// Why a channel failed (`code: message`), or `Ok`.
type Outcome = Result<(), (String, String)>;

/// The e-mail recipient and sender, if e-mail is configured.
fn mail_ends(s: &AlertSettings, store: &Store) -> Result<Option<(String, String)>, Error> {
    if s.smtp_server.is_none() {
        return Ok(None);
    }
    let to = store.system()?.admin_email;
    Ok(to.map(|to| (s.from.clone().unwrap_or_else(|| to.clone()), to)))
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

async fn send_mail(store: &Store, s: &AlertSettings, a: &Alert) -> Outcome {
    let fail = |code: &str, m: String| Err((code.to_owned(), m));
    let server = s.smtp_server.as_deref().unwrap_or_default();
    let ends = mail_ends(s, store).map_err(|e| (e.code_str().to_owned(), e.to_string()))?;
    let Some((from, to)) = ends else {
        return fail(
            "no-admin-email",
            "no admin e-mail to send to (`system set --admin-email`)".into(),
        );
    };
    let client = match crate::outbound::Client::from_store(store) {
        Ok(c) => c,
        Err(e) => return fail(e.code(), e.to_string()),
    };
    let body = format!(
        "{}\n\nAlert {} ({}), from pbx-certd.\n",
        a.message, a.key, a.code
    );
    let mail = smtp::Mail {
        server,
        tls: s.smtp_tls,
        auth: s.smtp_user.as_deref().zip(s.smtp_password.as_deref()),
        from: &from,
        to: &to,
        subject: &format!("pbx-certd alert: {}", a.subject),
        body: &body,
    };
    smtp::send(&client.tls_connector(), &mail)
        .await
        .map_err(|e| (e.code().to_owned(), e.to_string()))
}

async fn send_webhook(store: &Store, s: &AlertSettings, a: &Alert) -> Outcome {
    let url = s.webhook.as_deref().unwrap_or_default();
    let body = webhook_body(a);
    let sig = signature(s.webhook_secret.as_deref().unwrap_or_default(), &body);
    let client = crate::outbound::Client::from_store(store)
        .map_err(|e| (e.code().to_owned(), e.to_string()))?;
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

fn outcome_json(o: &Outcome) -> Value {
    match o {
        Ok(()) => json!({"ok": true}),
        Err((code, message)) => json!({"ok": false, "code": code, "message": message}),
    }
}

/// `alert test`: one test alert on every configured channel, each
/// outcome reported (`{"email": {"ok": true}, "webhook": {"ok": false,
/// "code", "message"}}`); nothing is recorded.
pub async fn test(store: &Store) -> Result<Value, Error> {
    let s = alert::settings(store)?;
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
    let mut out = serde_json::Map::new();
    if s.smtp_server.is_some() {
        out.insert(
            "email".into(),
            outcome_json(&send_mail(store, &s, &a).await),
        );
    }
    if s.webhook.is_some() {
        out.insert(
            "webhook".into(),
            outcome_json(&send_webhook(store, &s, &a).await),
        );
    }
    Ok(Value::Object(out))
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
    let (open, settings, records) = {
        let shared = shared.clone();
        smol::unblock(move || {
            let store = shared.store();
            let open = alert::evaluate(store, clock::now())?;
            alert::forget_closed(store, &open)?;
            let mut records = Vec::new();
            for a in &open {
                records.push(alert::delivery(store, &a.key)?);
            }
            Ok::<_, Error>((open, alert::settings(store)?, records))
        })
        .await?
    };
    let store = shared.store();
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
            note(
                a,
                "e-mail",
                &mut d.email,
                send_mail(store, &settings, a).await,
            );
        }
        if settings.webhook.is_some() && d.webhook.due(now) {
            note(
                a,
                "webhook",
                &mut d.webhook,
                send_webhook(store, &settings, a).await,
            );
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
