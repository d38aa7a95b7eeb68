//! What a notification says: which event an audit record is, its id, and
//! the Slack message and webhook request made of it.
//!
//! Notifications are made from the audit record as it is on the audit
//! topic — its id from the bytes, its words from the record they read as —
//! so that every instance and every restart turns the same record into the
//! same notification with the same id.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::hmac::hmac_sha256;
use crate::config::notify::NotifyEvent;
use crate::model::audit::{
    BreakerAudit, DeployAudit, SuppressedAudit, Suppression, VerificationOutcome,
};
use crate::model::{hex, summary, Action, AuditEvent, AuditRecord};

/// An audit record some sink may want, parsed once.
#[derive(Debug)]
pub struct Event {
    pub kind: NotifyEvent,
    /// `X-Rollbackd-Event-Id`: the first 16 bytes of the SHA-256 of the
    /// record's JSON, in hex. The same record always has the same id, so a
    /// receiver that keeps the ids it saw sees each event once.
    pub id: String,
    /// The record's JSON, as on the audit topic.
    pub payload: Vec<u8>,
    pub record: AuditRecord,
    /// The deploy's environment: from the record when it names it (deploy
    /// started, command), else as the notifier remembers it.
    pub environment: Option<String>,
}

impl Event {
    /// The event an audit record is, if it is one a sink can ask for (a
    /// record that does not read as `rollbackd.audit/v1` is none).
    pub fn parse(payload: &[u8]) -> Option<Event> {
        let record: AuditRecord = serde_json::from_slice(payload).ok()?;
        let kind = classify(&record)?;
        let digest = Sha256::digest(payload);
        let environment = match &record.event {
            AuditEvent::Deploy(DeployAudit::Started { environment, .. }) => Some(environment),
            AuditEvent::Command(c) => Some(&c.environment),
            _ => None,
        }
        .cloned();
        Some(Event {
            kind,
            id: hex(&digest[..16]),
            payload: payload.to_vec(),
            record,
            environment,
        })
    }

    /// The facts of the message, in the order it shows them: what the
    /// record says of its deploy, the verdict, and the command.
    fn facts(&self) -> Vec<(&'static str, &str)> {
        let r = &self.record;
        let mut facts = vec![("Service", r.service.as_deref())];
        match &r.event {
            AuditEvent::Decision(d) => facts.extend([
                ("Deploy", r.deploy_id.as_deref()),
                ("Verdict", Some(d.verdict.as_str())),
            ]),
            AuditEvent::Command(c) => facts.extend([
                ("Environment", Some(c.environment.as_str())),
                ("Deploy", r.deploy_id.as_deref()),
                ("From version", Some(c.from_version.as_str())),
                ("To version", c.to_version.as_deref()),
                ("Trigger", Some(c.trigger.as_str())),
                ("Command", Some(c.command_id.as_str())),
            ]),
            AuditEvent::Suppressed(s) => {
                let trigger = match s {
                    SuppressedAudit::Decision { trigger, .. } => trigger.as_str(),
                    _ => "release",
                };
                let command = match s {
                    SuppressedAudit::ReleaseMember {
                        suppression: Suppression::AlreadyEmitted { command_id },
                    } => Some(command_id.as_str()),
                    _ => None,
                };
                facts.extend([
                    ("Deploy", r.deploy_id.as_deref()),
                    ("Trigger", Some(trigger)),
                    ("Reason", Some(s.reason().as_str())),
                    ("Command", command),
                ]);
            }
            AuditEvent::Verification(v) => facts.extend([
                ("Deploy", r.deploy_id.as_deref()),
                ("Outcome", Some(v.outcome.as_str())),
                ("Command", Some(v.command_id.as_str())),
            ]),
            _ => facts.push(("Deploy", r.deploy_id.as_deref())),
        }
        facts
            .into_iter()
            .filter_map(|(name, v)| Some((name, v?)))
            .collect()
    }
}

fn classify(record: &AuditRecord) -> Option<NotifyEvent> {
    Some(match &record.event {
        AuditEvent::Deploy(DeployAudit::Started { .. }) => NotifyEvent::Deploy,
        AuditEvent::Decision(_) => NotifyEvent::Decision,
        AuditEvent::Command(c) => match c.action {
            Action::Rollback => NotifyEvent::Command,
            Action::ApprovalRequired => NotifyEvent::ApprovalRequired,
        },
        AuditEvent::Suppressed(_) => NotifyEvent::Suppressed,
        AuditEvent::Breaker(BreakerAudit::Opened { .. }) => NotifyEvent::BreakerOpened,
        AuditEvent::Verification(v) => match v.outcome {
            VerificationOutcome::Recovered => NotifyEvent::Recovered,
            VerificationOutcome::NotRecovered => NotifyEvent::NotRecovered,
            VerificationOutcome::Inconclusive => NotifyEvent::Inconclusive,
        },
        _ => return None,
    })
}

/// Where a person acts: rollbackd's admin API.
pub struct Api<'a> {
    /// `http://host:port`, without a trailing slash.
    pub url: &'a str,
    /// The env var that holds the admin token (`http.admin_token_env`).
    pub token_env: &'a str,
}

impl Api<'_> {
    /// The admin call that rolls back (approves) `deploy_id`.
    pub fn approve_url(&self, deploy_id: &str) -> String {
        format!(
            "{}/v1/deploys/{}/rollback",
            self.url,
            path_segment(deploy_id)
        )
    }

    fn approve_command(&self, deploy_id: &str) -> String {
        format!(
            "curl -X POST -H \"Authorization: Bearer ${}\" -d '{{\"reason\":\"approved\",\"actor\":\"'$USER'\"}}' {}",
            self.token_env,
            self.approve_url(deploy_id)
        )
    }
}

/// A deploy id in a URL path: unreserved characters as they are, the rest
/// percent-encoded.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Slack's mrkdwn: `&`, `<` and `>` escaped, so that no text becomes a
/// `<link|…>` or a mention.
fn mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A label in mrkdwn: escaped, and a bare URL in it broken with a word
/// joiner so that Slack does not make it a link.
fn label(s: &str) -> String {
    mrkdwn(s).replace("://", ":\u{2060}//")
}

/// A Slack incoming-webhook message: a header, the facts as fields, the
/// evidence, how to act, links.
pub fn slack(e: &Event, api: &Api<'_>) -> Value {
    let title = summary::line(&e.record);
    let fields: Vec<Value> = e
        .facts()
        .into_iter()
        .take(10)
        .map(|(name, v)| json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", label(v))}))
        .collect();
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&title, 150)},
    })];
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if let Some(line) = summary::numbers(&e.record) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*Evidence*: {}", label(&line))},
        }));
    }
    let deploy = e.record.deploy_id.as_deref();
    let act = match (e.kind, deploy) {
        (NotifyEvent::ApprovalRequired, Some(d)) => Some(format!(
            "*To approve*, roll it back through the admin API (the deploy has an irreversible data migration; the executor will not act on its own):\n```{}```",
            mrkdwn(&api.approve_command(d))
        )),
        (NotifyEvent::BreakerOpened, _) => Some(format!(
            "*To resume* automatic rollbacks once the cause is understood: `curl -X POST -H \"Authorization: Bearer ${}\" {}/v1/breaker/reset`",
            api.token_env, api.url
        )),
        (NotifyEvent::NotRecovered, _) => Some(
            "rollbackd will not roll back again on its own: look for what the rollback did not revert (a data migration, a cache, a dependency).".to_string(),
        ),
        _ => None,
    };
    if let Some(text) = act {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
    }
    let mut context = vec![format!(
        "{} · {} · event {}",
        mrkdwn(&e.record.at.to_string()),
        e.kind.as_str(),
        e.id
    )];
    if let Some(d) = deploy {
        context.push(format!(
            "<{}/v1/deploys/{}|deploy {}>",
            api.url,
            path_segment(d),
            label(&d.replace('|', "/"))
        ));
    }
    context.push(format!("<{}/v1/audit|audit>", api.url));
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": context.join(" · ")}],
    }));
    // `text` (what a phone's notification shows) is mrkdwn too.
    json!({"text": label(&title), "blocks": blocks})
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max_chars - 1).collect();
    t.push('…');
    t
}

/// A request to send: the body and the headers besides `Content-Type`.
pub struct Request {
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// The generic webhook: the audit record's JSON as it is, with
/// `X-Rollbackd-Event`, `X-Rollbackd-Event-Id`, for `approval_required`
/// `X-Rollbackd-Approve-Url`, and with a secret
/// `X-Rollbackd-Signature: sha256=<hex HMAC-SHA256 of the body>`.
pub fn webhook(e: &Event, api: &Api<'_>, secret: Option<&[u8]>) -> Request {
    let mut headers = vec![
        ("X-Rollbackd-Event", e.kind.as_str().to_string()),
        ("X-Rollbackd-Event-Id", e.id.clone()),
    ];
    if let (NotifyEvent::ApprovalRequired, Some(d)) = (e.kind, e.record.deploy_id.as_deref()) {
        headers.push(("X-Rollbackd-Approve-Url", api.approve_url(d)));
    }
    if let Some(key) = secret {
        headers.push((
            "X-Rollbackd-Signature",
            format!("sha256={}", hex(&hmac_sha256(key, &e.payload))),
        ));
    }
    Request {
        body: e.payload.clone(),
        headers,
    }
}

/// The Slack request.
pub fn slack_request(e: &Event, api: &Api<'_>) -> Request {
    Request {
        body: serde_json::to_vec(&slack(e, api)).unwrap_or_default(),
        headers: vec![("X-Rollbackd-Event-Id", e.id.clone())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: Api<'static> = Api {
        url: "http://rollbackd:9464",
        token_env: "ROLLBACKD_ADMIN_TOKEN",
    };

    fn event(record: Value) -> Event {
        Event::parse(&serde_json::to_vec(&record).unwrap()).expect("a notifiable record")
    }

    fn approval() -> Value {
        json!({"schema": "rollbackd.audit/v1", "at": "2026-11-26T12:01:30.500Z", "kind": "command",
            "deploy_id": "d-105", "service": "billing",
            "detail": {"action": "approval_required", "command_id": "db64", "environment": "production",
                "from_version": "v5", "to_version": "v4", "trigger": "burn_rate",
                "evidence": {"sli": "errors", "candidate": {"bad": 20, "requests": 267},
                    "baseline": {"bad": 0, "requests": 1184}, "threshold": 0.0144, "short": "1m", "long": "5m"}}})
    }

    #[test]
    fn records_are_classified_by_kind_and_detail() {
        let kinds = |r: Value| Event::parse(&serde_json::to_vec(&r).unwrap()).map(|e| e.kind);
        assert_eq!(kinds(approval()), Some(NotifyEvent::ApprovalRequired));
        let record = |kind: &str, detail: Value| json!({"schema": "rollbackd.audit/v1", "at": "2026-11-26T12:01:30.500Z", "kind": kind, "detail": detail});
        assert_eq!(
            kinds(record(
                "breaker",
                json!({"state": "open", "automatic_commands": 3, "max": 3, "opened_by_command": null, "window": "1h"})
            )),
            Some(NotifyEvent::BreakerOpened)
        );
        assert_eq!(
            kinds(record(
                "breaker",
                json!({"state": "closed", "actor": "alice", "was_open": true})
            )),
            None
        );
        assert_eq!(
            kinds(record(
                "verification",
                json!({"outcome": "not_recovered", "command_id": "c", "sli": "errors", "evidence": null,
                    "after": {"bad": 1, "ratio": 0.5, "requests": 2}, "before": null, "during": null,
                    "restored_version": "v1"})
            )),
            Some(NotifyEvent::NotRecovered)
        );
        assert_eq!(kinds(record("deploy", json!({"retired": "done"}))), None);
        assert_eq!(
            kinds(record(
                "deploy",
                json!({"event": "deploy.started", "version": "v2", "previous_version": "v1",
                    "environment": "prod", "strategy": null, "release_id": null,
                    "data_migration": "none", "at": "2026-11-26T12:00:00Z"})
            )),
            Some(NotifyEvent::Deploy)
        );
        assert_eq!(kinds(record("forecast", json!({}))), None);
        assert!(Event::parse(b"not json").is_none());
    }

    #[test]
    fn the_id_is_the_records_hash() {
        let a = event(approval());
        let b = event(approval());
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        let mut other = approval();
        other["at"] = json!("2026-11-26T12:01:31Z");
        assert_ne!(event(other).id, a.id);
    }

    #[test]
    fn approval_says_how_to_approve() {
        let e = event(approval());
        let msg = slack(&e, &API).to_string();
        assert!(msg.contains("Approval required: roll back billing v5 → v4 in production?"));
        assert!(
            msg.contains("curl -X POST -H \\\"Authorization: Bearer $ROLLBACKD_ADMIN_TOKEN\\\"")
        );
        assert!(msg.contains("http://rollbackd:9464/v1/deploys/d-105/rollback"));
        assert!(msg.contains("errors 7.49% (20/267 requests) vs baseline 0.00% (0/1184 requests), threshold 1.44% over 1m/5m"));
        let w = webhook(&e, &API, None);
        assert!(w.headers.contains(&(
            "X-Rollbackd-Approve-Url",
            "http://rollbackd:9464/v1/deploys/d-105/rollback".to_string()
        )));
        assert_eq!(w.body, e.payload);
    }

    #[test]
    fn hostile_labels_stay_text() {
        let mut r = approval();
        r["service"] = json!("<!channel> <http://evil|click> & co");
        r["deploy_id"] = json!("d/../x y");
        r["detail"]["environment"] = json!("see https://evil.example");
        let msg = slack(&event(r), &API);
        // Every text Slack renders as mrkdwn is escaped; the header is
        // plain text, which Slack never renders as markup.
        fn mrkdwn_texts(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if m.get("type") == Some(&json!("mrkdwn")) {
                        out.push(m["text"].as_str().unwrap().to_string());
                    }
                    m.values().for_each(|v| mrkdwn_texts(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| mrkdwn_texts(v, out)),
                _ => {}
            }
        }
        let mut texts = vec![msg["text"].as_str().unwrap().to_string()];
        mrkdwn_texts(&msg, &mut texts);
        assert!(texts.len() > 3);
        for t in &texts {
            assert!(
                !t.contains("<!channel>")
                    && !t.contains("<http://evil")
                    && !t.contains("https://evil.example"),
                "{t}"
            );
        }
        assert_eq!(msg["blocks"][0]["text"]["type"], "plain_text");
        let msg = msg.to_string();
        assert!(msg.contains("&lt;!channel&gt; &lt;http:\u{2060}//evil|click&gt; &amp; co"));
        assert!(msg.contains("/v1/deploys/d%2F..%2Fx%20y/rollback"));
    }

    proptest::proptest! {
        /// Whatever a record holds, its messages are made without a panic.
        #[test]
        fn any_record_formats(
            kind in proptest::sample::select(vec!["decision", "command", "suppressed", "breaker", "verification"]),
            s in "\\PC{0,200}",
            n in proptest::prelude::any::<i64>(),
            f in proptest::prelude::any::<f64>(),
        ) {
            let r = json!({"kind": kind, "service": s, "deploy_id": s, "at": s, "detail": {
                "action": if n % 2 == 0 { "rollback" } else { "approval_required" },
                "state": "open", "outcome": "not_recovered", "verdict": s, "reason": s,
                "from_version": s, "to_version": s, "environment": s, "window": s,
                "automatic_commands": n, "sli": s, "after": {"ratio": f}, "during": {"ratio": f},
                "time_to_recover_from_result_seconds": f,
                "evidence": {"sli": s, "candidate": {"bad": n, "requests": n}, "baseline": {"bad": 0, "requests": n},
                             "threshold": f, "short": s, "long": s}}});
            if let Some(e) = Event::parse(&serde_json::to_vec(&r).unwrap()) {
                let msg = slack(&e, &API);
                proptest::prop_assert!(msg["text"].is_string());
                let w = webhook(&e, &API, Some(b"k"));
                proptest::prop_assert_eq!(w.body, e.payload.clone());
            }
        }
    }

    #[test]
    fn signatures_cover_the_body() {
        let e = event(approval());
        let w = webhook(&e, &API, Some(b"s3cret"));
        let sig = &w
            .headers
            .iter()
            .find(|(k, _)| *k == "X-Rollbackd-Signature")
            .unwrap()
            .1;
        assert_eq!(
            sig,
            &format!("sha256={}", hex(&hmac_sha256(b"s3cret", &w.body)))
        );
    }
}
