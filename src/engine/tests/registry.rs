//! The registry on its own: its indexes (id, seq, service and
//! environment, release, version for correlation) kept in step through
//! retirement, and its schedule of what is due.

use std::sync::Arc;

use super::*;
use crate::engine::registry::{Deploy, Registry};
use crate::model::evidence::Role;
use crate::model::ResourceIdent;
use crate::time::Duration;

/// A registry with deploys `d-web` (web v2 over v1, release r-1, prod),
/// `d-api` (api v4 over v3, release r-1) and `d-web-staging` (web v2 over
/// v1, staging), started at second 900 and due at second 1000.
fn registry() -> Registry {
    let mut r = Registry::default();
    let policy = Arc::clone(&Config::default().default_policy);
    for (id, service, version, previous, env) in [
        ("d-web", "web", "v2", "v1", "prod"),
        ("d-api", "api", "v4", "v3", "prod"),
        ("d-web-staging", "web", "v2", "v1", "staging"),
    ] {
        let mut ev = started(id, service, DataMigration::None, 900);
        ev.version = version.into();
        ev.previous_version = Some(previous.into());
        ev.environment = Some(env.into());
        ev.release_id = (env == "prod").then(|| "r-1".to_string());
        r.insert(ev, policy.clone(), Timestamp(1_000 * SEC));
    }
    r
}

fn ids<'a>(deploys: impl Iterator<Item = &'a Deploy>) -> Vec<&'a str> {
    deploys.map(|d| d.id()).collect()
}

fn ident(service: &str, version: &str, env: Option<&str>) -> ResourceIdent {
    ResourceIdent {
        service: Some(service.into()),
        version: Some(version.into()),
        environment: env.map(String::from),
        ..Default::default()
    }
}

/// Where `ident`'s telemetry goes: (deploy id, side).
fn targets<'a>(r: &'a Registry, ident: &ResourceIdent) -> Vec<(&'a str, Role)> {
    r.correlate(ident)
        .into_iter()
        .map(|t| (t.deploy.id(), t.role))
        .collect()
}

#[test]
fn deploys_are_found_by_id_seq_service_and_release_in_arrival_order() {
    let r = registry();
    assert_eq!(r.len(), 3);
    assert_eq!(ids(r.iter()), ["d-web", "d-api", "d-web-staging"]);
    let web = r.get("d-web").unwrap();
    assert_eq!(r.by_seq(web.seq).unwrap().id(), "d-web");
    assert_eq!(ids(r.of_service("web", None)), ["d-web", "d-web-staging"]);
    assert_eq!(ids(r.of_service("web", Some("staging"))), ["d-web-staging"]);
    assert!(ids(r.of_service("mail", None)).is_empty());
    assert_eq!(ids(r.of_release("r-1")), ["d-web", "d-api"]);
}

#[test]
fn telemetry_goes_to_the_candidate_or_the_baseline_of_its_deploys() {
    let r = registry();
    let mut by_id = ident("web", "build-9", None);
    by_id.deployment_id = Some("d-api".into());
    assert_eq!(targets(&r, &by_id), [("d-api", Role::Candidate)]);
    assert_eq!(
        targets(&r, &ident("web", "v2", Some("prod"))),
        [("d-web", Role::Candidate)]
    );
    assert_eq!(
        targets(&r, &ident("web", "v1", None)),
        [("d-web", Role::Baseline), ("d-web-staging", Role::Baseline)],
        "no environment on the telemetry: every environment"
    );
    assert!(targets(&r, &ident("web", "v1", Some("dev"))).is_empty());
    assert!(targets(&r, &ident("web", "v7", None)).is_empty());
    assert!(targets(&r, &ResourceIdent::default()).is_empty());
}

#[test]
fn a_retired_deploy_leaves_every_index_and_is_remembered() {
    let mut r = registry();
    assert_eq!(r.retire("d-web").unwrap().id(), "d-web");
    assert!(r.get("d-web").is_none());
    assert!(r.was_retired("d-web"));
    assert!(r.retire("d-web").is_none());
    assert_eq!(ids(r.of_service("web", None)), ["d-web-staging"]);
    assert_eq!(ids(r.of_release("r-1")), ["d-api"]);
    assert!(targets(&r, &ident("web", "v2", Some("prod"))).is_empty());
    r.retire("d-api");
    assert!(ids(r.of_release("r-1")).is_empty());
    assert_eq!(r.take_due(Timestamp(2_000 * SEC)).len(), 1);
}

#[test]
fn the_schedule_gives_what_is_due_and_what_was_touched_in_arrival_order() {
    let mut r = registry();
    let at = |s: i64| Timestamp(s * SEC);
    assert!(r.take_due(at(999)).is_empty());
    let seqs = r.take_due(at(1_000));
    assert_eq!(seqs.len(), 3);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // Taken off the schedule until it is rescheduled.
    assert!(r.take_due(at(1_000)).is_empty());
    r.update("d-api", |d| d.next_eval = at(1_010));
    assert!(r.take_due(at(1_009)).is_empty());
    let api = r.get("d-api").unwrap().seq;
    assert_eq!(r.take_due(at(1_010)), [api]);
    // Touched: due at once, whenever it is scheduled.
    let web = r.get("d-web").unwrap().seq;
    r.update("d-web", |d| d.next_eval = at(5_000));
    r.touch(web);
    r.touch(api);
    assert_eq!(r.take_due(at(1_011)), [web, api]);
}

#[test]
fn a_completed_deploy_is_due_when_its_watch_ends() {
    let mut r = registry();
    r.take_due(Timestamp(1_000 * SEC));
    let watch = Config::default().default_policy.watch_after_complete;
    let until = r
        .update("d-web", |d| {
            d.next_eval = Timestamp(i64::MAX);
            d.completed_at = Some(Timestamp(1_000 * SEC));
            d.watched_until()
        })
        .flatten();
    assert_eq!(until, Some(Timestamp(1_000 * SEC).saturating_add(watch)));
    let web = r.get("d-web").unwrap().seq;
    assert!(r
        .take_due(until.unwrap().saturating_sub(Duration::from_secs(1)))
        .is_empty());
    assert_eq!(r.take_due(until.unwrap()), [web]);
}
