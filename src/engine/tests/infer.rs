//! Deploys found in the telemetry: what starts one, what must not, how it
//! ends, and announced deploys of the same version.

use super::*;

const INFER: &str = "[deploys]\ninfer = true\ninfer_settle = \"10s\"\n\
                     [slo]\nwarmup = \"5s\"\nmin_requests = 20\nwatch_after_complete = \"30s\"\n";

/// The deploy events among `outputs` the engine published.
fn published(outputs: &[Output]) -> Vec<&DeployEvent> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Deploy(ev) => Some(ev),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_version_serving_starts_a_deploy_and_a_bad_one_gets_one_command() {
    let mut e = engine(INFER);
    let mut out = serve(&mut e, (1_000, 1_030), &[("v1", 0)]);
    assert!(published(&out).is_empty());
    out.extend(serve(&mut e, (1_030, 1_090), &[("v1", 0), ("v2", 3)]));
    let events = published(&out);
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = events[0];
    assert_eq!(ev.deploy_id, "inferred:web:default:v2");
    assert_eq!(ev.kind, DeployEventKind::Started);
    assert_eq!(ev.previous_version.as_deref(), Some("v1"));
    assert_eq!(ev.strategy.as_deref(), Some("inferred"));
    assert_eq!(
        ev.at,
        Timestamp(1_030 * SEC),
        "started at v2's first request"
    );
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].deploy_id, "inferred:web:default:v2");
    assert_eq!(cmds[0].strategy.as_deref(), Some("inferred"));
    assert_eq!(cmds[0].to_version.as_deref(), Some("v1"));
    // Its first seconds count: v2's first request was in its windows.
    let view = e.deploy_view("inferred:web:default:v2").unwrap();
    assert_eq!(view.strategy.as_deref(), Some("inferred"));
}

#[test]
fn a_healthy_version_completes_once_the_old_one_is_gone_and_is_known_good() {
    let mut e = engine(INFER);
    let mut out = serve(&mut e, (1_000, 1_030), &[("v1", 0)]);
    out.extend(serve(&mut e, (1_030, 1_060), &[("v1", 0), ("v2", 0)]));
    out.extend(serve(&mut e, (1_060, 1_120), &[("v2", 0)]));
    assert!(commands(&out).is_empty());
    let events = published(&out);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].kind, DeployEventKind::Completed);
    assert_eq!(events[1].at, Timestamp(1_059 * SEC), "v1's last request");
    assert_eq!(
        e.active_deploys(),
        0,
        "watched 30 s after v1 left, then retired"
    );
    // Applied again from the deploy-events topic: nothing new.
    for ev in events.into_iter().cloned().collect::<Vec<_>>() {
        assert!(deploy(&mut e, ev).is_empty());
    }
}

#[test]
fn two_versions_serving_side_by_side_start_nothing() {
    let mut e = engine(INFER);
    // Both from the first request on, and one a few seconds after the
    // other (within infer_settle of the first sight).
    let out = serve(&mut e, (1_000, 1_005), &[("v1", 0)]);
    let out2 = serve(&mut e, (1_005, 1_200), &[("v1", 0), ("v2", 0)]);
    assert!(published(&out).is_empty() && published(&out2).is_empty());
    assert_eq!(e.active_deploys(), 0);
}

#[test]
fn a_version_flapping_back_starts_nothing() {
    let mut e = engine(INFER);
    let mut out = serve(&mut e, (1_000, 1_030), &[("v1", 0)]);
    // v2 serves once, v1 alone again, then v2 for good: one deploy.
    out.extend(serve(&mut e, (1_030, 1_031), &[("v1", 0), ("v2", 0)]));
    out.extend(serve(&mut e, (1_031, 1_060), &[("v1", 0)]));
    out.extend(serve(&mut e, (1_060, 1_100), &[("v1", 0), ("v2", 0)]));
    let started: Vec<_> = published(&out)
        .into_iter()
        .filter(|ev| ev.kind == DeployEventKind::Started)
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    // v2 leaves; the deploy completes; v1 coming back later is not known
    // good (it was only ever the baseline): nothing starts.
    let mut e = engine(INFER);
    serve(&mut e, (1_000, 1_030), &[("v1", 0)]);
    serve(&mut e, (1_030, 1_060), &[("v1", 0), ("v2", 0)]);
    serve(&mut e, (1_060, 1_120), &[("v2", 0)]);
    let back = serve(&mut e, (1_120, 1_200), &[("v2", 0), ("v1", 0)]);
    assert!(published(&back).is_empty(), "{:?}", published(&back));
}

#[test]
fn a_service_restarting_or_without_a_version_starts_nothing() {
    let mut e = engine(INFER);
    let mut out = serve(&mut e, (1_000, 1_030), &[("v1", 0)]);
    // A quiet minute (a restart), then the same version.
    out.extend(serve(&mut e, (1_090, 1_150), &[("v1", 0)]));
    // Resources without service.version.
    for t in 1_150..1_200 {
        let now = Timestamp(t * SEC);
        let Input::Telemetry(mut batch) = spans("web", "x", t, 10, 5) else {
            unreachable!()
        };
        batch.resources[0].ident.version = None;
        out.extend(e.apply(Input::Telemetry(batch), now));
        out.extend(serve(&mut e, (t, t + 1), &[("v1", 0)]));
    }
    assert!(published(&out).is_empty());
    assert_eq!(e.active_deploys(), 0);
}

#[test]
fn a_new_version_after_a_quiet_spell_has_no_baseline_and_starts_nothing() {
    let mut e = engine(INFER);
    let mut out = serve(&mut e, (1_000, 1_030), &[("v1", 0)]);
    out.extend(serve(&mut e, (1_100, 1_150), &[("v2", 5)]));
    assert!(published(&out).is_empty());
    assert!(commands(&out).is_empty());
}

#[test]
fn an_announced_deploy_of_the_version_wins() {
    // Announced first: the version is claimed, nothing is inferred.
    let mut e = engine(INFER);
    serve(&mut e, (1_000, 1_030), &[("v1", 0)]);
    let mut ev = started("d-1", "web", DataMigration::None, 1_030);
    ev.version = "v2".into();
    deploy(&mut e, ev.clone());
    let out = serve(&mut e, (1_030, 1_090), &[("v1", 0), ("v2", 3)]);
    assert!(published(&out).is_empty());
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].deploy_id, "d-1");

    // Inferred first, announced a few seconds later: the announced deploy
    // takes the inferred one's windows over; one deploy, one command.
    let mut e = engine(INFER);
    serve(&mut e, (1_000, 1_030), &[("v1", 0)]);
    let mut out = serve(&mut e, (1_030, 1_033), &[("v1", 0), ("v2", 3)]);
    assert_eq!(published(&out).len(), 1);
    out.extend(deploy(&mut e, ev));
    assert_eq!(e.active_deploys(), 1);
    assert!(e.deploy_view("d-1").is_some());
    out.extend(serve(&mut e, (1_033, 1_090), &[("v1", 0), ("v2", 3)]));
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert_eq!(cmds[0].deploy_id, "d-1");
    let retired = audits(&out, "deploy")
        .into_iter()
        .any(|a| a["detail"]["retired"] == "announced as d-1");
    assert!(retired);
}

#[test]
fn an_announced_deploy_of_a_version_already_decided_is_not_a_second_deploy() {
    let mut e = engine(INFER);
    serve(&mut e, (1_000, 1_030), &[("v1", 0)]);
    let out = serve(&mut e, (1_030, 1_090), &[("v1", 0), ("v2", 3)]);
    assert_eq!(commands(&out).len(), 1);
    let mut ev = started("d-1", "web", DataMigration::None, 1_030);
    ev.version = "v2".into();
    let out = deploy(&mut e, ev);
    let ignored = audits(&out, "deploy");
    assert!(
        ignored[0]["detail"]["ignored"]
            .as_str()
            .unwrap()
            .contains("inferred"),
        "{ignored:?}"
    );
    let out = serve(&mut e, (1_090, 1_200), &[("v1", 0), ("v2", 3)]);
    assert!(commands(&out).is_empty());
}

#[test]
fn only_the_owner_infers_and_what_it_reads_back_is_learnt() {
    use crate::model::evidence::{Counts, Evidence, Item, Key, Origin};
    let mut e = engine(INFER);
    let key = Key {
        service: "web".into(),
        environment: "default".into(),
    };
    e.apply(
        Input::Own(Ownership::Partitions {
            count: 1,
            owned: Default::default(),
            reading: [0].into_iter().collect(),
        }),
        Timestamp(1_000 * SEC),
    );
    let seen = |version: &str, t: i64| Item::Seen {
        version: version.into(),
        raw: None,
        at: Timestamp(t * SEC),
        metrics: false,
        counts: Counts {
            requests: 10,
            ..Default::default()
        },
    };
    let read_back: Vec<Item> = (1_000..1_020)
        .map(|t| seen("v1", t))
        .chain((1_015..1_020).map(|t| seen("v2", t)))
        .collect();
    let evidence = |items| {
        Input::Evidence(Evidence {
            key: key.clone(),
            origin: Origin::Local,
            items,
        })
    };
    let out = e.apply(evidence(read_back), Timestamp(1_020 * SEC));
    assert!(published(&out).is_empty(), "a reader does not infer");
    e.apply(Input::Own(Ownership::All), Timestamp(1_020 * SEC));
    let out = e.apply(
        evidence(
            (1_020..1_040)
                .flat_map(|t| [seen("v1", t), seen("v2", t)])
                .collect(),
        ),
        Timestamp(1_040 * SEC),
    );
    assert!(published(&out).is_empty(), "v2 was read back: known");
    let out = e.apply(evidence(vec![seen("v3", 1_041)]), Timestamp(1_041 * SEC));
    assert_eq!(published(&out).len(), 1);
}

#[test]
fn memory_per_service_is_bounded() {
    let mut book = crate::engine::infer::VersionBook::default();
    for i in 0..100 {
        book.note(&format!("v{i}"), Timestamp(i * SEC));
    }
    assert_eq!(book.len(), crate::engine::infer::MAX_VERSIONS);
}
