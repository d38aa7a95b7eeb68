//! The engine through its one door, [`Engine::apply`], one file per
//! part of it; the helpers every file shares are here.

use super::*;
use crate::config::Config;
use crate::model::{
    command_id, Action, AdminAction, AdminCall, AdminRecord, Alert, AlertStatus, Command,
    DataMigration, DeployEvent, DeployEventKind, Refusal, Trigger,
};

fn deploy(e: &mut Engine, ev: DeployEvent) -> Vec<Output> {
    let now = e.now();
    e.apply(Input::Deploy(ev), now)
}

fn alerts(e: &mut Engine, a: &[Alert]) -> Vec<Output> {
    let now = e.now();
    e.apply(Input::Alerts(a.to_vec()), now)
}

fn tick(e: &mut Engine) -> Vec<Output> {
    let now = e.now();
    e.apply(Input::Tick, now)
}

fn set_clock(e: &mut Engine, t: Timestamp) {
    e.apply(Input::Tick, t);
}

fn guard_call(e: &mut Engine, action: AdminAction, actor: &str) -> Vec<Output> {
    let now = e.now();
    let record = AdminRecord {
        schema: crate::model::ADMIN_SCHEMA.into(),
        action,
        actor: actor.into(),
        at: now,
        instance: String::new(),
        maintenance: None,
    };
    e.apply(Input::AdminCall(AdminCall::Guard(record)), now)
}

fn manual(e: &mut Engine, id: &str, reason: &str, actor: &str) -> Result<Vec<Output>, Refusal> {
    let now = e.now();
    let out = e.apply(
        Input::AdminCall(AdminCall::Rollback {
            deploy_id: id.into(),
            reason: reason.into(),
            actor: actor.into(),
        }),
        now,
    );
    match out.iter().find_map(|o| match o {
        Output::Refused(r) => Some(r.clone()),
        _ => None,
    }) {
        Some(r) => Err(r),
        None => Ok(out),
    }
}

const SEC: i64 = 1_000_000_000;

fn engine(extra: &str) -> Engine {
    let mut e = Engine::new(EngineConfig::from(&Config::from_toml(extra).unwrap()));
    set_clock(&mut e, Timestamp(1_000 * SEC));
    e
}

fn started(id: &str, service: &str, migration: DataMigration, at: i64) -> DeployEvent {
    DeployEvent {
        kind: DeployEventKind::Started,
        deploy_id: id.into(),
        service: service.into(),
        version: "v2".into(),
        at: Timestamp(at * SEC),
        environment: None,
        previous_version: Some("v1".into()),
        strategy: None,
        release_id: None,
        data_migration: migration,
        canary_weight: None,
        labels: Default::default(),
    }
}

fn commands(outputs: &[Output]) -> Vec<&Command> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Command(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn alert(service: &str, fingerprint: &str, at: i64) -> Alert {
    Alert {
        status: AlertStatus::Firing,
        labels: [("service", service), ("severity", "critical")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: Default::default(),
        starts_at: Timestamp(at * SEC),
        fingerprint: fingerprint.into(),
        generator_url: None,
    }
}

/// The audit records of `kind` among `outputs`, as JSON.
fn audits(outputs: &[Output], kind: &str) -> Vec<serde_json::Value> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Audit(a) if a.kind() == kind => Some(serde_json::to_value(a).unwrap()),
            _ => None,
        })
        .collect()
}

/// Deploy event `kind` for deploy `id` of `service`, at second `at`.
fn event(kind: DeployEventKind, id: &str, service: &str, at: i64) -> DeployEvent {
    let mut ev = started(id, service, DataMigration::None, at);
    ev.kind = kind;
    ev
}

/// A span export of `service` at `version`: `n` requests ending at
/// second `at`, the first `bad` of them failed.
fn spans(service: &str, version: &str, at: i64, n: usize, bad: usize) -> Input {
    use crate::model::{RequestKind, ResourceIdent, ResourceTelemetry, SpanObs};
    let ident = ResourceIdent {
        service: Some(service.into()),
        version: Some(version.into()),
        ..Default::default()
    };
    let spans = (0..n)
        .map(|i| SpanObs {
            end: Timestamp(at * SEC),
            latency_ns: 40_000_000,
            error: i < bad,
            kind: RequestKind::Http,
        })
        .collect();
    Input::Telemetry(TelemetryBatch {
        resources: vec![ResourceTelemetry {
            ident,
            spans,
            points: Vec::new(),
        }],
    })
}

/// Every second from `from` to `to`: ten requests of `service` at v1
/// (healthy) and ten at v2 of which `bad` failed, each applied at its
/// time and followed by a tick. Returns everything they caused.
fn traffic(e: &mut Engine, service: &str, (from, to): (i64, i64), bad: usize) -> Vec<Output> {
    let mut out = Vec::new();
    for t in from..to {
        let now = Timestamp(t * SEC);
        out.extend(e.apply(spans(service, "v1", t, 10, 0), now));
        out.extend(e.apply(spans(service, "v2", t, 10, bad), now));
        out.extend(e.apply(Input::Tick, now));
    }
    out
}

/// Every second `from..to`, ten requests of each of web's `versions`
/// (version, failed of ten), each applied at its time and followed by a
/// tick. Returns everything they caused.
fn serve(e: &mut Engine, (from, to): (i64, i64), versions: &[(&str, usize)]) -> Vec<Output> {
    let mut out = Vec::new();
    for t in from..to {
        let now = Timestamp(t * SEC);
        for (v, bad) in versions {
            out.extend(e.apply(spans("web", v, t, 10, *bad), now));
        }
        out.extend(e.apply(Input::Tick, now));
    }
    out
}

mod admin;
mod cumulative;
mod decide;
mod evidence;
mod fast_track;
mod fold;
mod gate;
mod guards;
mod infer;
mod judge;
mod lifecycle;
mod maintenance;
mod registry;
mod watch;
