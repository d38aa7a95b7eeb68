//! The guard chain, on its own: each guard in the contract's order (once
//! per deploy, pause, maintenance, dry run, cooldown, breaker), which
//! chain checks which, and the state behind them. Approval, decided before
//! the chain with the command's action, is in `decide`; maintenance
//! windows through the engine, in `maintenance`.

use super::*;
use crate::engine::guards::{Chain, Guards};
use crate::model::audit::Suppression;

/// Guards with a 10 minute cooldown and a breaker of 2 in 15 minutes.
fn guards() -> Guards {
    let toml =
        "[guards]\ncooldown = \"10m\"\nbreaker_max_rollbacks = 2\nbreaker_window = \"15m\"\n";
    Guards::new(&Config::from_toml(toml).unwrap().guards)
}

/// An automatic rollback of `deploy_id` of `service`, decided at second `at`.
fn command(deploy_id: &str, service: &str, trigger: Trigger, at: i64) -> Command {
    Command {
        schema: crate::model::COMMAND_SCHEMA.into(),
        command_id: command_id(deploy_id, Action::Rollback),
        action: Action::Rollback,
        trigger,
        deploy_id: deploy_id.into(),
        release_id: None,
        service: service.into(),
        environment: "default".into(),
        from_version: "v2".into(),
        to_version: Some("v1".into()),
        strategy: None,
        labels: Default::default(),
        evidence: serde_json::Value::Null,
        decided_at: Timestamp(at * SEC),
        issued_at: Timestamp(at * SEC),
    }
}

/// The reason the first guard of `chain` holds `cmd` back at second `at`.
fn held(
    g: &Guards,
    chain: Chain,
    cmd: Option<&Command>,
    dry_run: bool,
    at: i64,
) -> Option<&'static str> {
    g.check(chain, cmd, dry_run, Timestamp(at * SEC))
        .map(|s| s.reason().as_str())
}

#[test]
fn the_chain_stops_at_the_first_guard_in_the_contracts_order() {
    let mut g = guards();
    let first = command("d-1", "web", Trigger::BurnRate, 1_000);
    assert_eq!(held(&g, Chain::AUTOMATIC, Some(&first), false, 1_000), None);
    // Every guard holds now: the command was emitted (a cooldown of web
    // runs), the breaker opened with a second service, automation paused.
    assert!(!g.record(&first, true));
    assert!(g.record(&command("d-2", "api", Trigger::BurnRate, 1_001), true));
    assert!(g.set_paused(true, Timestamp(1_002 * SEC), "oncall"));
    let again = command("d-1", "web", Trigger::BurnRate, 1_010);
    let next = command("d-3", "web", Trigger::BurnRate, 1_010);
    let other = command("d-4", "mail", Trigger::BurnRate, 1_010);
    let chain = Chain::AUTOMATIC;
    assert_eq!(
        held(&g, chain, Some(&again), true, 1_010),
        Some("already_emitted")
    );
    assert_eq!(held(&g, chain, Some(&next), true, 1_010), Some("paused"));
    g.set_paused(false, Timestamp(1_003 * SEC), "oncall");
    assert_eq!(held(&g, chain, Some(&next), true, 1_010), Some("dry_run"));
    assert_eq!(held(&g, chain, Some(&next), false, 1_010), Some("cooldown"));
    assert_eq!(
        held(&g, chain, Some(&other), false, 1_010),
        Some("breaker_open")
    );
    assert!(g.reset_breaker_at(Timestamp(1_005 * SEC)));
    assert_eq!(held(&g, chain, Some(&other), false, 1_010), None);
}

#[test]
fn each_chain_checks_only_its_guards() {
    let mut g = guards();
    g.record(&command("d-1", "web", Trigger::BurnRate, 1_000), true);
    g.record(&command("d-2", "api", Trigger::BurnRate, 1_000), true);
    g.set_paused(true, Timestamp(1_000 * SEC), "oncall");
    let emitted = command("d-1", "web", Trigger::Manual, 1_010);
    let fresh = command("d-3", "web", Trigger::Release, 1_010);
    // A person: only once per deploy.
    assert_eq!(held(&g, Chain::MANUAL, Some(&fresh), true, 1_010), None);
    assert_eq!(
        held(&g, Chain::MANUAL, Some(&emitted), false, 1_010),
        Some("already_emitted")
    );
    // One more deploy of a release: once, and dry run.
    assert_eq!(
        held(&g, Chain::RELEASE_MEMBER, Some(&fresh), false, 1_010),
        None
    );
    assert_eq!(
        held(&g, Chain::RELEASE_MEMBER, Some(&fresh), true, 1_010),
        Some("dry_run")
    );
    // A release as a whole (no command of its own): pause, then breaker.
    assert_eq!(held(&g, Chain::RELEASE, None, true, 1_010), Some("paused"));
    g.set_paused(false, Timestamp(1_001 * SEC), "oncall");
    assert_eq!(
        held(&g, Chain::RELEASE, None, true, 1_010),
        Some("breaker_open")
    );
}

#[test]
fn the_latest_pause_or_resume_wins_whatever_order_they_are_read_in() {
    let mut g = guards();
    let at = |s: i64| Timestamp(s * SEC);
    assert!(g.set_paused(true, at(10), "alice"));
    assert!(!g.set_paused(true, at(11), "bob"), "already paused");
    assert_eq!(g.paused(), Some(&(at(10), "alice".to_string())));
    assert!(g.set_paused(false, at(20), "alice"));
    assert!(!g.set_paused(true, at(15), "bob"), "older than the resume");
    assert!(g.paused().is_none());
}

#[test]
fn a_cooldown_runs_per_service_and_environment_from_the_last_automatic_command() {
    let mut g = guards();
    g.record(&command("d-1", "web", Trigger::Alert, 1_000), true);
    let until = Timestamp(1_600 * SEC);
    let running = g.cooldown_until("web", "default", Timestamp(1_599 * SEC));
    assert_eq!(running, Some(until));
    assert_eq!(g.cooldown_until("web", "default", until), None);
    assert_eq!(
        g.cooldown_until("web", "prod", Timestamp(1_100 * SEC)),
        None
    );
    // A person's command starts no cooldown and counts for no breaker.
    g.record(&command("d-2", "api", Trigger::Manual, 1_000), true);
    assert_eq!(
        g.cooldown_until("api", "default", Timestamp(1_100 * SEC)),
        None
    );
    assert_eq!(g.breaker_count(Timestamp(1_100 * SEC)), 1);
}

#[test]
fn the_breaker_counts_within_its_window_and_a_reset_forgets_what_came_before() {
    let mut g = guards();
    let at = |s: i64| Timestamp(s * SEC);
    assert!(!g.count_for_breaker(at(1_000)));
    // 15 minutes later the first one is out of the window.
    assert!(!g.count_for_breaker(at(1_900)));
    assert_eq!(g.breaker_count(at(1_900)), 1);
    assert!(g.count_for_breaker(at(1_950)));
    assert_eq!(g.breaker_open_since(), Some(at(1_950)));
    assert!(!g.reset_breaker_at(at(1_940)), "a reset before it opened");
    assert!(g.breaker_open_since().is_some());
    assert!(g.reset_breaker_at(at(1_950)));
    assert!(!g.reset_breaker_at(at(1_950)), "the same reset again");
    assert_eq!(g.breaker_count(at(1_950)), 0);
}

#[test]
fn commands_read_back_restore_the_guards_once() {
    let mut g = guards();
    let c = command("d-1", "web", Trigger::BurnRate, 1_000);
    assert!(!g.restore(&c));
    assert!(!g.restore(&c));
    assert!(g.was_emitted(&c.command_id));
    assert_eq!(g.emitted_at(&c.command_id), Some(Timestamp(1_000 * SEC)));
    assert_eq!(g.breaker_count(Timestamp(1_000 * SEC)), 1, "counted once");
    // A release member's command read back counts for no breaker.
    g.restore(&command("d-2", "api", Trigger::Release, 1_001));
    assert_eq!(g.breaker_count(Timestamp(1_001 * SEC)), 1);
    assert!(matches!(
        g.check(Chain::AUTOMATIC, Some(&c), false, Timestamp(1_001 * SEC)),
        Some(Suppression::AlreadyEmitted { .. })
    ));
}
