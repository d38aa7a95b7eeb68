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

#[test]
fn admin_records_apply_once_and_in_time_order() {
    let mut e = engine("[guards]\nbreaker_max_rollbacks = 1\n");
    let rec = |action, at: i64| AdminRecord {
        schema: crate::model::ADMIN_SCHEMA.into(),
        action,
        actor: "alice".into(),
        at: Timestamp(at * SEC),
        instance: String::new(),
    };
    assert!(e.admin_record(&rec(AdminAction::Pause, 900)));
    assert!(e.paused());
    assert!(!e.admin_record(&rec(AdminAction::Pause, 900)), "read back");
    assert!(e.admin_record(&rec(AdminAction::Resume, 950)));
    assert!(
        !e.admin_record(&rec(AdminAction::Pause, 900)),
        "an older pause read late does not undo the resume"
    );
    assert!(!e.paused());
    // The breaker (max 1) opens at 1000; a reset taken before that
    // does not close it, one taken after does, once.
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    assert_eq!(
        commands(&alerts(&mut e, &[alert("web", "a", 950)])).len(),
        1
    );
    assert!(e.breaker_open());
    assert!(!e.admin_record(&rec(AdminAction::BreakerReset, 999)));
    assert!(e.breaker_open());
    assert!(e.admin_record(&rec(AdminAction::BreakerReset, 1000)));
    assert!(!e.breaker_open());
    assert!(!e.admin_record(&rec(AdminAction::BreakerReset, 1000)));
    // Decoding: the schema is checked, garbage refused.
    let ok = serde_json::to_vec(&rec(AdminAction::Pause, 1)).unwrap();
    assert!(AdminRecord::decode(&ok).is_ok());
    let other = String::from_utf8(ok)
        .unwrap()
        .replace("admin/v1", "admin/v9");
    assert!(AdminRecord::decode(other.as_bytes()).is_err());
    assert!(AdminRecord::decode(b"{\"action\": \"explode\"}").is_err());
}

#[test]
fn burn_summary_counts_states_with_bounded_keys() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 990));
    deploy(
        &mut e,
        started("d-2", "db", DataMigration::Irreversible, 990),
    );
    deploy(&mut e, started("d-3", "api", DataMigration::None, 990));
    assert_eq!(
        e.burn_summary().states,
        [("pending", 3)].into_iter().collect()
    );
    tick(&mut e);
    let out = alerts(&mut e, &[alert("web", "a", 995), alert("db", "b", 995)]);
    assert_eq!(commands(&out).len(), 2);
    let s = e.burn_summary();
    assert_eq!(
        s.states,
        [("awaiting_approval", 1), ("commanded", 1), ("healthy", 1)]
            .into_iter()
            .collect()
    );
    // One key per SLI and window pair of the default policy.
    let keys: Vec<_> = s.max_burn.keys().cloned().collect();
    assert_eq!(
        keys,
        [
            ("errors", "1m/5m".to_string()),
            ("errors", "5m/30m".to_string()),
            ("latency", "1m/5m".to_string()),
            ("latency", "5m/30m".to_string())
        ]
    );
}

#[test]
fn manual_rollback_bypasses_pause_cooldown_breaker_and_approval_but_not_once() {
    let mut e = engine("[guards]\nbreaker_max_rollbacks = 1\n[slo.services.db]\ndry_run = true\n");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    // An automatic rollback opens the breaker (max 1) and starts web's cooldown.
    let out = alerts(&mut e, &[alert("web", "a", 950)]);
    assert_eq!(commands(&out).len(), 1);
    assert!(e.breaker_open());
    guard_call(&mut e, AdminAction::Pause, "oncall");
    // A new web deploy: paused, in cooldown, breaker open — and
    // irreversible, and its service is not dry-run… a person decides.
    deploy(
        &mut e,
        started("d-2", "web", DataMigration::Irreversible, 990),
    );
    let out = alerts(&mut e, &[alert("web", "b", 995)]);
    assert!(commands(&out).is_empty(), "automatic: suppressed");
    let out = manual(&mut e, "d-2", "broken", "alice").unwrap();
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].trigger, Trigger::Manual);
    assert_eq!(
        cmds[0].action,
        Action::Rollback,
        "a manual rollback is the approval"
    );
    assert_eq!(cmds[0].evidence["actor"], "alice");
    // Never twice.
    assert_eq!(
        manual(&mut e, "d-2", "again", "bob"),
        Err(Refusal::AlreadyEmitted(command_id("d-2", Action::Rollback)))
    );
    assert!(matches!(
        manual(&mut e, "nope", "x", "y"),
        Err(Refusal::NotFound(_))
    ));
    // Dry run for a service: audited, not emitted; a person still can.
    guard_call(&mut e, AdminAction::Resume, "oncall");
    guard_call(&mut e, AdminAction::BreakerReset, "oncall");
    deploy(&mut e, started("d-3", "db", DataMigration::None, 999));
    let out = alerts(&mut e, &[alert("db", "c", 999)]);
    assert!(commands(&out).is_empty());
    assert!(out.iter().any(|o| matches!(o, Output::Audit(a) if a.kind() == "suppressed" && a.detail()["reason"] == "dry_run")));
    assert_eq!(commands(&manual(&mut e, "d-3", "x", "y").unwrap()).len(), 1);
}

#[test]
fn restored_commands_are_never_emitted_again() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let out = alerts(&mut e, &[alert("web", "a", 950)]);
    let cmd = commands(&out)[0].clone();
    // A fresh engine (a restart) that reads the command back first.
    let mut fresh = engine("");
    let now = fresh.now();
    fresh.apply(Input::Command(cmd.clone()), now);
    deploy(&mut fresh, started("d-1", "web", DataMigration::None, 900));
    let out = alerts(&mut fresh, &[alert("web", "a2", 960)]);
    assert!(commands(&out).is_empty());
    assert!(fresh.deploy_view("d-1").unwrap().command_id.is_some());
    // The cooldown came back too: another web deploy waits.
    deploy(&mut fresh, started("d-2", "web", DataMigration::None, 970));
    let out = alerts(&mut fresh, &[alert("web", "b", 975)]);
    assert!(commands(&out).is_empty());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Audit(a) if a.detail()["reason"] == "cooldown")));
}

#[test]
fn completed_deploys_are_watched_then_retired() {
    let mut e = engine("[slo]\nwatch_after_complete = \"1m\"\n");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let mut done = started("d-1", "web", DataMigration::None, 990);
    done.kind = DeployEventKind::Completed;
    deploy(&mut e, done);
    tick(&mut e);
    assert_eq!(e.active_deploys(), 1);
    set_clock(&mut e, Timestamp(1_051 * SEC));
    tick(&mut e);
    assert_eq!(e.active_deploys(), 0);
    // A late event for it does not bring it back.
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    assert_eq!(e.active_deploys(), 0);
}

#[test]
fn resolved_alerts_clear_a_held_back_trigger() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    guard_call(&mut e, AdminAction::Pause, "oncall");
    assert!(commands(&alerts(&mut e, &[alert("web", "a", 950)])).is_empty());
    let mut resolved = alert("web", "a", 950);
    resolved.status = AlertStatus::Resolved;
    alerts(&mut e, &[resolved]);
    guard_call(&mut e, AdminAction::Resume, "oncall");
    set_clock(&mut e, Timestamp(1_010 * SEC));
    assert!(
        commands(&tick(&mut e)).is_empty(),
        "the alert resolved while paused"
    );
}

/// The restored version's requests `from..to` (seconds), `rps` a second,
/// as evidence for checkout's baseline.
fn baseline_traffic(id: &str, from: i64, to: i64, rps: u64) -> Input {
    use crate::model::evidence::{Evidence, Item, Key, Origin, Role};
    Input::Evidence(Evidence {
        key: Key {
            service: "checkout".into(),
            environment: "default".into(),
        },
        origin: Origin::Local,
        items: (from..to)
            .map(|t| Item::Counts {
                deploy_id: id.into(),
                role: Role::Baseline,
                raw: None,
                at: Timestamp(t * SEC),
                metrics: false,
                counts: crate::model::evidence::Counts {
                    requests: rps,
                    ..Default::default()
                },
            })
            .collect(),
    })
}

fn verification_after(outputs: &[Output]) -> Vec<serde_json::Value> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Audit(a) if a.kind() == "verification" => {
                Some(serde_json::to_value(a).unwrap()["detail"]["after"].clone())
            }
            _ => None,
        })
        .collect()
}

/// A restart during the watch of a restored version reads its traffic
/// back after the result: what it served before the rollback must not
/// count as "after".
#[test]
fn verification_after_a_restart_counts_only_traffic_since_the_rollback() {
    let cfg = "[verify]\nwindow = \"2m\"\n";
    let ev = started("d-v", "checkout", DataMigration::None, 1000);
    let result = |cmd: &str| {
        Input::Result(crate::model::ExecutorResult {
            command_id: cmd.into(),
            deploy_id: "d-v".into(),
            status: crate::model::ResultStatus::Succeeded,
            at: Timestamp(1060 * SEC),
            executor: "x".into(),
            message: String::new(),
        })
    };
    // Live: the rollback at 1001, its result at 1060, traffic throughout.
    let mut live = engine(cfg);
    deploy(&mut live, ev.clone());
    set_clock(&mut live, Timestamp(1001 * SEC));
    let out = manual(&mut live, "d-v", "bad", "alice").unwrap();
    let cmd = commands(&out)[0].clone();
    live.apply(
        baseline_traffic("d-v", 1000, 1060, 10),
        Timestamp(1060 * SEC),
    );
    live.apply(result(&cmd.command_id), Timestamp(1060 * SEC));
    live.apply(
        baseline_traffic("d-v", 1060, 1120, 10),
        Timestamp(1120 * SEC),
    );
    let live_after = verification_after(&live.apply(Input::Tick, Timestamp(1300 * SEC)));
    assert_eq!(live_after.len(), 1);
    assert_eq!(live_after[0]["requests"], 600);
    // Restarted at 1120: control records first, then the evidence read
    // back, from before the rollback too.
    let mut restarted = engine(cfg);
    set_clock(&mut restarted, Timestamp(1120 * SEC));
    deploy(&mut restarted, ev);
    restarted.apply(Input::Command(cmd.clone()), Timestamp(1120 * SEC));
    restarted.apply(result(&cmd.command_id), Timestamp(1120 * SEC));
    restarted.apply(
        baseline_traffic("d-v", 1000, 1120, 10),
        Timestamp(1120 * SEC),
    );
    let after = verification_after(&restarted.apply(Input::Tick, Timestamp(1300 * SEC)));
    assert_eq!(after, live_after);
}

/// One failed SERVER span of `pay` v2 ending at second `end_s`, decoded.
fn late_span(end_s: i64) -> Input {
    use prost::Message;
    let end = (end_s * SEC) as u64;
    let export = crate::loadgen::trace_export(
        crate::loadgen::resource("pay", "v2", None),
        vec![crate::loadgen::server_span(
            end,
            end - SEC as u64 / 10,
            end,
            500,
        )],
    );
    crate::ingest::decode(
        crate::ingest::Source::Spans,
        &export.encode_to_vec(),
        crate::config::OtlpEncoding::Proto,
    )
    .unwrap()
}

fn telemetry_outcome(out: &[Output]) -> TelemetryOutcome {
    out.iter()
        .find_map(|o| match o {
            Output::Telemetry(t) => Some(*t),
            _ => None,
        })
        .unwrap()
}

fn late_audits(out: &[Output]) -> Vec<serde_json::Value> {
    out.iter()
        .filter_map(|o| match o {
            Output::Audit(a) if a.kind() == "late_data" => Some(serde_json::to_value(a).unwrap()),
            _ => None,
        })
        .collect()
}

#[test]
fn evidence_later_than_the_lateness_is_counted_and_audited_once_per_deploy() {
    let mut e = engine("[slo]\nallowed_lateness = \"10s\"\n");
    deploy(&mut e, started("d-late", "pay", DataMigration::None, 1_000));
    // 5 s after its event time: in time.
    let out = e.apply(late_span(1_010), Timestamp(1_015 * SEC));
    let t = telemetry_outcome(&out);
    assert_eq!((t.observations, t.too_late, t.label()), (1, 0, "ok"));
    assert!(late_audits(&out).is_empty());
    // 30 s after: counted, in the windows, audited once.
    let out = e.apply(late_span(1_020), Timestamp(1_050 * SEC));
    let t = telemetry_outcome(&out);
    assert_eq!((t.observations, t.too_late, t.label()), (1, 1, "late"));
    let audits = late_audits(&out);
    assert_eq!(audits.len(), 1, "{audits:?}");
    let d = &audits[0]["detail"];
    assert_eq!(audits[0]["deploy_id"], "d-late");
    assert_eq!(d["side"], "candidate");
    assert_eq!(d["allowed_lateness"], "10s");
    assert_eq!(d["observations"], 1);
    assert_eq!(
        d["late_by_seconds"], 29.0,
        "from the end of its one-second slot"
    );
    let c = e.windows[&(e.registry.get("d-late").unwrap().seq, Role::Candidate)].totals();
    assert_eq!((c.requests, c.errors), (2, 2));
    // Later again: counted, not audited again.
    let out = e.apply(late_span(1_030), Timestamp(1_080 * SEC));
    assert_eq!(telemetry_outcome(&out).too_late, 1);
    assert!(late_audits(&out).is_empty());
    assert_eq!(e.deploy_view("d-late").unwrap().late_observations, 2);
}

#[test]
fn evidence_read_back_before_taking_a_key_over_is_not_audited_late() {
    let mut e = engine("[slo]\nallowed_lateness = \"10s\"\n");
    deploy(&mut e, started("d-back", "pay", DataMigration::None, 1_000));
    let none = crate::model::evidence::Ownership::Partitions {
        count: 1,
        owned: Default::default(),
        reading: [0].into(),
    };
    e.apply(Input::Own(none), Timestamp(1_000 * SEC));
    let out = e.apply(late_span(1_020), Timestamp(1_050 * SEC));
    assert!(late_audits(&out).is_empty());
    // Once it decides for the key, late evidence is audited.
    let all = crate::model::evidence::Ownership::Partitions {
        count: 1,
        owned: [0].into(),
        reading: Default::default(),
    };
    e.apply(Input::Own(all), Timestamp(1_050 * SEC));
    let out = e.apply(late_span(1_030), Timestamp(1_060 * SEC));
    assert_eq!(late_audits(&out).len(), 1);
}

/// A partition revoked while it was read back, then assigned again and
/// read back from the start: its requests count once, not once per read.
#[test]
fn a_partition_revoked_while_read_back_counts_its_evidence_once() {
    use crate::model::evidence::{Evidence, Item, Key, Origin, Ownership, RawOffset, Role};
    let mut e = engine("");
    deploy(
        &mut e,
        started("d-once", "checkout", DataMigration::None, 1_000),
    );
    let own = |e: &mut Engine, owned: &[i32], reading: &[i32]| {
        let o = Ownership::Partitions {
            count: 1,
            owned: owned.iter().copied().collect(),
            reading: reading.iter().copied().collect(),
        };
        e.apply(Input::Own(o), Timestamp(1_030 * SEC));
    };
    let evidence = || {
        Input::Evidence(Evidence {
            key: Key {
                service: "checkout".into(),
                environment: "default".into(),
            },
            origin: Origin::Kafka(vec![("otlp_spans".into(), 0, 9)]),
            items: (0..10)
                .map(|i| Item::Counts {
                    deploy_id: "d-once".into(),
                    role: Role::Candidate,
                    raw: Some(RawOffset {
                        topic: "otlp_spans".into(),
                        partition: 0,
                        offset: i,
                    }),
                    at: Timestamp((1_001 + i) * SEC),
                    metrics: false,
                    counts: crate::model::evidence::Counts {
                        requests: 1,
                        ..Default::default()
                    },
                })
                .collect(),
        })
    };
    own(&mut e, &[], &[0]);
    e.apply(evidence(), Timestamp(1_030 * SEC));
    // Revoked mid-read, assigned again, read back from the start.
    own(&mut e, &[], &[]);
    own(&mut e, &[], &[0]);
    e.apply(evidence(), Timestamp(1_030 * SEC));
    own(&mut e, &[0], &[]);
    tick(&mut e);
    let view = e.deploy_view("d-once").unwrap();
    assert_eq!(
        view.evaluation.pairs[0].candidate_long.requests, 10,
        "{:?}",
        view.evaluation.pairs[0]
    );
}

/// An HTTP request whose evidence reached some owners before its 503 is
/// sent again by its exporter: each key counts it once — also when the
/// key's partition is read back again — while a different request counts.
#[test]
fn an_http_request_sent_again_counts_once() {
    use crate::model::evidence::{Evidence, Item, Key, Origin, Ownership, RequestId, Role};
    let mut e = engine("");
    deploy(
        &mut e,
        started("d-http", "checkout", DataMigration::None, 1_000),
    );
    let request = |body: &[u8]| {
        Input::Evidence(Evidence {
            key: Key {
                service: "checkout".into(),
                environment: "default".into(),
            },
            origin: Origin::Http(Some(RequestId::of("otlp_spans", body))),
            items: vec![Item::Counts {
                deploy_id: "d-http".into(),
                role: Role::Candidate,
                raw: None,
                at: Timestamp(1_001 * SEC),
                metrics: false,
                counts: crate::model::evidence::Counts {
                    requests: 10,
                    ..Default::default()
                },
            }],
        })
    };
    let repeated = |out: &[Output]| {
        out.iter()
            .find_map(|o| match o {
                Output::Telemetry(t) => Some(t.repeated),
                _ => None,
            })
            .unwrap()
    };
    let at = Timestamp(1_002 * SEC);
    assert_eq!(repeated(&e.apply(request(b"one"), at)), 0);
    assert_eq!(repeated(&e.apply(request(b"one"), at)), 10);
    assert_eq!(repeated(&e.apply(request(b"two"), at)), 0);
    let requests = |e: &Engine| {
        e.deploy_view("d-http").unwrap().evaluation.pairs[0]
            .candidate_long
            .requests
    };
    tick(&mut e);
    assert_eq!(requests(&e), 20);
    // The key's partition moves away and back: read back, both requests
    // count again, once each.
    let own = |e: &mut Engine, owned: &[i32], reading: &[i32]| {
        let o = Ownership::Partitions {
            count: 1,
            owned: owned.iter().copied().collect(),
            reading: reading.iter().copied().collect(),
        };
        e.apply(Input::Own(o), at);
    };
    own(&mut e, &[], &[]);
    own(&mut e, &[], &[0]);
    for body in [b"one", b"two", b"one"] {
        e.apply(request(body), at);
    }
    own(&mut e, &[0], &[]);
    tick(&mut e);
    assert_eq!(requests(&e), 20);
}
