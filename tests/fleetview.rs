//! One view of the whole fleet: three instances on one broker, four
//! canaries; every instance's `GET /v1/status` (and its page, in headless
//! Chromium) lists all four as their owners evaluated them, with whose view
//! and how old; an owner killed with SIGKILL leaves its deploys listed —
//! its last view, "owner changing", then the new owner's.

mod support;

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fleet::{started, wait_owned, wait_until, Traffic, ADMIN, FLEET_SLO};
use support::*;

const DEPLOYS: [(&str, &str, bool); 4] = [
    ("d-shop", "shop", true),
    ("d-cart", "cart", false),
    ("d-pay", "pay", false),
    ("d-web", "web", false),
];

fn status(agent: &Agent) -> Value {
    let (code, body) = http(
        &agent.http_addr(),
        "GET",
        "/v1/status",
        &[("Authorization", "Bearer adm")],
        b"",
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// The deploys of a status by id.
fn deploys(s: &Value) -> HashMap<String, Value> {
    s["deploys"]
        .as_array()
        .expect("deploys")
        .iter()
        .map(|d| (d["deploy_id"].as_str().unwrap().to_string(), d.clone()))
        .collect()
}

/// Whether a deploy's view in a status is its owner's, evaluated on
/// evidence: an owner named, requests counted, a history to chart.
fn evaluated(d: &Value) -> bool {
    let requests = d["evaluation"]["pairs"][0]["candidate_long"]["requests"]
        .as_u64()
        .unwrap_or(0);
    (d["view"] == "live" || d["view"] == "published")
        && d["owner"].as_str().is_some_and(|o| o.starts_with('i'))
        && requests > 0
        && d["history"].as_array().is_some_and(|h| !h.is_empty())
}

#[test]
fn every_instance_shows_the_whole_fleet_and_a_dead_owners_deploys_stay() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config_with_slo(&broker, "g-view", FLEET_SLO, "");
    // A dead member keeps its partitions for 30 s, its session timeout:
    // longer than a view stays fresh (15 s), so the others show its keys
    // as "owner changing" before a new owner's view comes.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let longer = text.replace(
        "\"session.timeout.ms\" = \"6000\"",
        "\"session.timeout.ms\" = \"30000\"",
    );
    assert_ne!(text, longer, "the test agents' session timeout");
    std::fs::write(&cfg, longer).unwrap();
    // Dynamic members, named by their host name: the group gives a dead
    // member's partitions to the others once its session times out (a
    // static member keeps them until it comes back).
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| Agent::start_with_env(&cfg, &[("HOSTNAME", &format!("i{i}")), ADMIN]))
        .collect();
    for a in &agents {
        a.wait_ready();
    }
    let all: Vec<&Agent> = agents.iter().collect();
    wait_owned(&all);
    let traffic = Traffic::start(&broker);
    for (deploy, service, bad) in DEPLOYS {
        started(&cfg, &all, deploy, service);
        traffic.add(service, bad, 240);
    }

    // Every instance: all four, each as its owner evaluated it.
    wait_until(
        &all,
        "every instance shows four evaluated deploys",
        Duration::from_secs(90),
        || {
            agents.iter().all(|a| {
                let d = deploys(&status(a));
                DEPLOYS
                    .iter()
                    .all(|(id, _, _)| d.get(*id).is_some_and(evaluated))
            })
        },
    );
    wait_until(
        &all,
        "every instance shows the rollback",
        Duration::from_secs(60),
        || {
            agents
                .iter()
                .all(|a| deploys(&status(a))["d-shop"]["state"] == "rollback")
        },
    );
    let mut owners: HashMap<String, String> = HashMap::new();
    for a in &agents {
        let s = status(a);
        let me = s["instance"].as_str().unwrap().to_string();
        for (id, d) in deploys(&s) {
            let owner = d["owner"].as_str().unwrap().to_string();
            // Its own view for the keys it owns; the owner's for the others.
            assert_eq!(d["view"] == "live", owner == me, "{id} on {me}: {d}");
            assert!(
                d["as_of"].is_string() && d["view_age_seconds"].is_number(),
                "{d}"
            );
            assert_eq!(
                *owners.entry(id.clone()).or_insert(owner.clone()),
                owner,
                "{id}: one owner"
            );
        }
    }
    // The page of an instance that owns none of some deploys shows them
    // all, with their owner.
    let viewer = agents
        .iter()
        .find(|a| {
            let s = status(a);
            deploys(&s).values().any(|d| d["view"] == "published")
        })
        .expect("an instance that owns not every deploy");
    let page = load(
        &format!("http://{}/#token=adm", viewer.http_addr()),
        Some(&screenshot_path("fleet-status-page.png")),
    );
    for (id, _, _) in DEPLOYS {
        let card = card(&page.dom, id);
        assert!(card.contains(&format!("by {}", owners[id])), "{card}");
        assert!(card.contains("<svg"), "a chart: {card}");
    }
    assert!(card(&page.dom, "d-shop").contains(">rollback<"));

    // The owner of a healthy canary is killed: on the others its deploys
    // stay listed — its last view, then "owner changing" — and end with a
    // new owner's view.
    let victim_id = owners["d-cart"].clone();
    let victim = agents
        .iter()
        .position(|a| status(a)["instance"] == victim_id.as_str())
        .unwrap();
    let theirs: Vec<String> = owners
        .iter()
        .filter(|(_, o)| **o == victim_id)
        .map(|(id, _)| id.clone())
        .collect();
    agents[victim].kill9();
    let alive: Vec<&Agent> = agents
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, a)| a)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Per instance and deploy, the views shown one after the other.
    let mut seen: HashMap<(String, String), Vec<String>> = HashMap::new();
    loop {
        let mut moved = true;
        for a in &alive {
            let s = status(a);
            let me = s["instance"].as_str().unwrap().to_string();
            let d = deploys(&s);
            for id in &theirs {
                let v = d
                    .get(id)
                    .unwrap_or_else(|| panic!("{id} vanished on {me}: {d:?}"));
                let step = format!(
                    "{} by {}",
                    v["view"].as_str().unwrap(),
                    v["owner"].as_str().unwrap_or("-")
                );
                let steps = seen.entry((me.clone(), id.clone())).or_default();
                if steps.last() != Some(&step) {
                    steps.push(step);
                }
                moved &= v["owner"] != victim_id.as_str() && evaluated(v);
            }
        }
        if moved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new owner: {seen:?}\n{}",
            logs(alive.iter().copied())
        );
        thread::sleep(Duration::from_millis(250));
    }
    println!("after the owner {victim_id} was killed: {seen:?}");
    let old = format!("published by {victim_id}");
    for (key, steps) in &seen {
        // The dead owner's view, then marked "owner changing", then the
        // new owner's: never back to the dead owner's as if fresh.
        let new = steps
            .iter()
            .position(|s| !s.ends_with(&format!("by {victim_id}")));
        let new = new.expect("a new owner");
        let changing = format!("owner changing by {victim_id}");
        assert!(new > 0 && steps[new - 1] == changing, "{key:?}: {steps:?}");
        assert!(
            steps[..new]
                .iter()
                .all(|s| *s == old || *s == format!("owner changing by {victim_id}")),
            "{key:?}: {steps:?}"
        );
        assert!(
            steps[new..].iter().all(|s| !s.contains(&victim_id)),
            "{key:?}: {steps:?}"
        );
    }
    drop(traffic);
}
