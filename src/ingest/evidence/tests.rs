//! The evidence record format both ways: round trips, old records, bad input.

use super::*;

fn sample() -> Evidence {
    let raw = |o| {
        Some(RawOffset {
            topic: "otlp_spans".into(),
            partition: 2,
            offset: o,
        })
    };
    Evidence {
        key: Key {
            service: "checkout".into(),
            environment: "prod".into(),
        },
        origin: Origin::Kafka(vec![("otlp_spans".into(), 2, 41)]),
        items: vec![
            Item::Counts {
                deploy_id: "d-1".into(),
                role: Role::Candidate,
                raw: raw(40),
                at: Timestamp(1_000_000_000),
                metrics: false,
                counts: Counts {
                    requests: 10,
                    errors: 2,
                    slow: 1,
                    points: 0,
                },
            },
            Item::Counts {
                deploy_id: "d-1".into(),
                role: Role::Baseline,
                raw: raw(41),
                at: Timestamp(1_000_000_000),
                metrics: true,
                counts: Counts {
                    requests: 90,
                    errors: 0,
                    slow: 0,
                    points: 3,
                },
            },
            Item::Cumulative {
                deploy_id: "d-1".into(),
                role: Role::Candidate,
                raw: raw(41),
                series: u64::MAX,
                start: Timestamp(5),
                time: Timestamp(6),
                count: 7,
                slow: 1,
                error: true,
                resume: None,
            },
            Item::Seen {
                version: "v3".into(),
                raw: raw(41),
                at: Timestamp(2_000_000_000),
                metrics: false,
                counts: Counts {
                    requests: 4,
                    errors: 1,
                    slow: 0,
                    points: 0,
                },
            },
        ],
    }
}

#[test]
fn round_trips_and_refuses_other_versions() {
    let e = sample();
    let envelope = Envelope {
        instance: "pod-1".into(),
        consumed_at: Some(Timestamp(1_700_000_000_123_456_789)),
    };
    let bytes = encode(&e, &envelope);
    let (back, env) = decode(&bytes).unwrap();
    assert_eq!(back, e);
    assert_eq!(env, envelope);
    let mut msg = EvidenceMsg::decode(&bytes[..]).unwrap();
    msg.version = 2;
    assert!(decode(&msg.encode_to_vec()).is_err());
    msg.version = VERSION;
    msg.counts[0].deploy = 9;
    assert!(decode(&msg.encode_to_vec()).is_err());
    assert!(decode(b"\xff\xff\xff").is_err());
}

#[test]
fn resumed_points_and_handovers_round_trip_and_refuse_unknown_deploys() {
    let mut e = sample();
    // Decoded grouped by kind: counts, cumulative points, seen, handovers.
    e.items.insert(
        3,
        Item::Cumulative {
            deploy_id: "d-2".into(),
            role: Role::Baseline,
            raw: e.items[0].raw().cloned(),
            series: 9,
            start: Timestamp(5),
            time: Timestamp(6),
            count: 7,
            slow: 0,
            error: false,
            resume: Some(0),
        },
    );
    e.items.push(Item::Handover {
        topic: "otlp_metrics".into(),
        partition: 3,
        next: 120,
        points: vec![HandedPoint {
            deploy_id: "d-3".into(),
            role: Role::Baseline,
            series: u64::MAX,
            start: Timestamp(1),
            time: Timestamp(2),
            count: 3,
            slow: 1,
        }],
    });
    let bytes = encode(&e, &Envelope::default());
    let (back, _) = decode(&bytes).unwrap();
    assert_eq!(back, e);
    let mut msg = EvidenceMsg::decode(&bytes[..]).unwrap();
    msg.handovers[0].points[0].deploy = 99;
    let err = decode(&msg.encode_to_vec()).unwrap_err();
    assert!(err.0.contains("no deploy #99"), "{err:?}");
    // A record written before resumptions existed reads as before.
    let mut old = EvidenceMsg::decode(&bytes[..]).unwrap();
    old.handovers.clear();
    old.cumulative.iter_mut().for_each(|c| c.resume = None);
    let (back, _) = decode(&old.encode_to_vec()).unwrap();
    assert!(back.items.iter().all(|i| matches!(
        i,
        Item::Cumulative { resume: None, .. } | Item::Counts { .. } | Item::Seen { .. }
    )));
}

#[test]
fn an_http_request_keeps_its_id() {
    let envelope = Envelope::default();
    for origin in [
        Origin::Http(Some(RequestId::of("/v1/traces", b"body"))),
        Origin::Http(None),
        Origin::Local,
    ] {
        let e = Evidence {
            origin,
            items: Vec::new(),
            ..sample()
        };
        let (back, _) = decode(&encode(&e, &envelope)).unwrap();
        assert_eq!(back.origin, e.origin);
    }
}

#[test]
fn alerts_and_a_rollback_round_trip() {
    let alert = |firing, n: &str| Alert {
        status: if firing {
            AlertStatus::Firing
        } else {
            AlertStatus::Resolved
        },
        labels: BTreeMap::from([("service".into(), "checkout".into())]),
        annotations: BTreeMap::from([("summary".into(), n.into())]),
        starts_at: Timestamp(7),
        fingerprint: n.into(),
        generator_url: (n == "a").then(|| "http://prom".into()),
    };
    let mut e = sample();
    e.items
        .push(Item::Alerts(vec![alert(true, "a"), alert(false, "b")]));
    e.items.push(Item::Rollback {
        deploy_id: "d-1".into(),
        reason: "manual".into(),
        actor: "ops".into(),
    });
    let (back, _) = decode(&encode(&e, &Envelope::default())).unwrap();
    assert_eq!(back, e);
}
