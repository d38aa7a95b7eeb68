//! A notification as a Grafana annotation (`POST /api/annotations`, an
//! organization annotation, or one of `dashboard_uid`): the event in words
//! as its `text`, its time in epoch milliseconds, and tags to find it by.
//!
//! Tags: `rollbackd`, `event:<event>`, `service:<service>`,
//! `environment:<environment>` (when known) and `deploy_id:<id>`. A
//! deploy is marked at its own `at`; a verification whose record says how
//! long recovery took is a region, from the decision (`time`) to the
//! outcome (`timeEnd`); every other event is a point at its record's time.

use serde_json::{json, Value};

use super::message::{Event, Request};
use crate::model::audit::DeployAudit;
use crate::model::{summary, AuditEvent};
use crate::time::Timestamp;

/// Grafana's limit on a tag is its database column's (100 characters);
/// longer labels are cut there rather than refused.
const MAX_TAG_CHARS: usize = 100;

fn millis(t: Timestamp) -> i64 {
    t.0.div_euclid(1_000_000)
}

fn tag(key: &str, value: &str) -> String {
    format!("{key}:{value}")
        .chars()
        .take(MAX_TAG_CHARS)
        .collect()
}

/// The annotation's JSON body.
pub fn annotation(e: &Event, dashboard_uid: &str) -> Value {
    let r = &e.record;
    let mut tags = vec!["rollbackd".to_string(), tag("event", e.kind.as_str())];
    if let Some(s) = &r.service {
        tags.push(tag("service", s));
    }
    if let Some(env) = &e.environment {
        tags.push(tag("environment", env));
    }
    if let Some(d) = &r.deploy_id {
        tags.push(tag("deploy_id", d));
    }
    let mut text = summary::line(r);
    if let Some(numbers) = summary::numbers(r) {
        text.push('\n');
        text.push_str(&numbers);
    }
    // A deploy at its own time, which its record carries.
    let time = match &r.event {
        AuditEvent::Deploy(DeployAudit::Started { at, .. }) => *at,
        _ => r.at,
    };
    let mut body = json!({
        "time": millis(time),
        "tags": tags,
        "text": text,
    });
    if let AuditEvent::Verification(v) = &r.event {
        if let Some(took) = v.time_to_recover {
            body["time"] = json!(millis(r.at.saturating_sub(took)));
            body["timeEnd"] = json!(millis(r.at));
        }
    }
    if !dashboard_uid.is_empty() {
        body["dashboardUID"] = json!(dashboard_uid);
    }
    body
}

/// The request: the annotation, with the service account's token and the
/// event's id.
pub fn request(e: &Event, token: &str, dashboard_uid: &str) -> Request {
    Request {
        body: serde_json::to_vec(&annotation(e, dashboard_uid)).unwrap_or_default(),
        headers: vec![
            ("Authorization", format!("Bearer {token}")),
            ("X-Rollbackd-Event-Id", e.id.clone()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::notify::NotifyEvent;

    fn event(record: Value) -> Event {
        Event::parse(&serde_json::to_vec(&record).unwrap()).expect("a notifiable record")
    }

    #[test]
    fn a_command_is_a_point_tagged_with_its_deploy() {
        let e = event(
            json!({"schema": "rollbackd.audit/v1", "at": "2026-11-26T12:01:30.500Z",
            "kind": "command", "deploy_id": "d-7", "service": "checkout",
            "detail": {"action": "rollback", "command_id": "c1", "environment": "prod",
                "from_version": "v2", "to_version": "v1", "trigger": "burn_rate", "evidence": null}}),
        );
        let a = annotation(&e, "");
        assert_eq!(a["time"], 1_795_694_490_500i64);
        assert!(a.get("timeEnd").is_none());
        assert!(a.get("dashboardUID").is_none());
        assert_eq!(
            a["tags"],
            json!([
                "rollbackd",
                "event:command",
                "service:checkout",
                "environment:prod",
                "deploy_id:d-7"
            ])
        );
        assert_eq!(a["text"], "Rolling back checkout v2 → v1 in prod");
        let r = request(&e, "glsa_x", "abc");
        assert!(r
            .headers
            .contains(&("Authorization", "Bearer glsa_x".to_string())));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["dashboardUID"], "abc");
    }

    #[test]
    fn a_recovery_is_a_region_from_the_decision_to_the_outcome() {
        let mut e = event(
            json!({"schema": "rollbackd.audit/v1", "at": "2026-11-26T12:10:00Z",
            "kind": "verification", "deploy_id": "d-7", "service": "checkout",
            "detail": {"outcome": "recovered", "command_id": "c1", "sli": "errors", "evidence": null,
                "after": {"bad": 0, "ratio": 0.0, "requests": 500}, "before": null, "during": null,
                "restored_version": "v1", "time_to_recover_seconds": 90.0}}),
        );
        assert_eq!(e.kind, NotifyEvent::Recovered);
        e.environment = Some("prod".into());
        let a = annotation(&e, "");
        assert_eq!(a["timeEnd"], 1_795_695_000_000i64);
        assert_eq!(a["time"], 1_795_695_000_000i64 - 90_000);
        assert!(a["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("environment:prod")));
        assert!(a["text"]
            .as_str()
            .unwrap()
            .starts_with("checkout recovered after the rollback of d-7"));
    }
}
