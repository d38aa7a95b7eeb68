//! Evidence into windows: lateness, read-back before owning a key,
//! revoked partitions and repeated HTTP requests.

use super::*;

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

#[test]
fn evidence_later_than_the_lateness_is_counted_and_audited_once_per_deploy() {
    let mut e = engine("[slo]\nallowed_lateness = \"10s\"\n");
    deploy(&mut e, started("d-late", "pay", DataMigration::None, 1_000));
    // 5 s after its event time: in time.
    let out = e.apply(late_span(1_010), Timestamp(1_015 * SEC));
    let t = telemetry_outcome(&out);
    assert_eq!((t.observations, t.too_late, t.label()), (1, 0, "ok"));
    assert!(audits(&out, "late_data").is_empty());
    // 30 s after: counted, in the windows, audited once.
    let out = e.apply(late_span(1_020), Timestamp(1_050 * SEC));
    let t = telemetry_outcome(&out);
    assert_eq!((t.observations, t.too_late, t.label()), (1, 1, "late"));
    let late = audits(&out, "late_data");
    assert_eq!(late.len(), 1, "{late:?}");
    let d = &late[0]["detail"];
    assert_eq!(late[0]["deploy_id"], "d-late");
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
    assert!(audits(&out, "late_data").is_empty());
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
    assert!(audits(&out, "late_data").is_empty());
    // Once it decides for the key, late evidence is audited.
    let all = crate::model::evidence::Ownership::Partitions {
        count: 1,
        owned: [0].into(),
        reading: Default::default(),
    };
    e.apply(Input::Own(all), Timestamp(1_050 * SEC));
    let out = e.apply(late_span(1_030), Timestamp(1_060 * SEC));
    assert_eq!(audits(&out, "late_data").len(), 1);
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
