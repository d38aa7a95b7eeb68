//! Faults of the broker and of the Kafka clients, against noida-db (a
//! broker with transactions): a client that dies of a fatal error is
//! rebuilt and nothing is lost or counted twice; a broker restarted under
//! traffic — for less, or for longer, than `max.poll.interval.ms` — leaves
//! every instance forwarding and deciding once; a stage with work and no
//! progress fails `/healthz`, naming itself, and recovers.
//!
//! tansu is not used here: the prebuilt tansu keeps its topics in memory
//! only, so a restarted tansu is an empty broker.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::fleet::*;
use support::*;

/// Prints the agents' logs if the test fails while it is in scope (a
/// failed request to an agent that exited says nothing of why).
struct LogsOnFailure(Vec<Arc<Mutex<String>>>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if thread::panicking() {
            for (i, log) in self.0.iter().enumerate() {
                let log = log.lock().unwrap_or_else(|p| p.into_inner());
                eprintln!("---- agent {i} ----\n{log}");
            }
        }
    }
}

/// A config with `kafka` keys added to `[kafka]` and `properties` to
/// `[kafka.properties]`; transactions on.
fn heal_config(broker: &Broker, group: &str, kafka: &str, properties: &str) -> PathBuf {
    fleet_config(broker, group, kafka, properties, FLEET_SLO, "")
}

const REBUILT: &str = "kafka client rebuilt after a fatal error";
const EVIDENCE_REBUILDS: &str = r#"rollbackd_kafka_client_rebuilds_total{client="evidence"}"#;
const OWNER_REBUILDS: &str = r#"rollbackd_kafka_client_rebuilds_total{client="owner"}"#;

/// The bad canary gets exactly one command (and one command audit
/// record), the healthy one none.
fn decided_once(broker: &Broker, agents: &[&Agent], bad: &str, good: &str) {
    let got = wait_topic(broker, "rollback-commands", Duration::from_secs(120), |g| {
        !commands_for(g, bad).is_empty()
    });
    assert!(
        !commands_for(&got, bad).is_empty(),
        "no command for {bad}\n{}",
        logs(agents.iter().copied())
    );
    // Long enough for a second command, or one for the healthy canary.
    thread::sleep(Duration::from_secs(5));
    let got = read_topic(broker, "rollback-commands", Duration::ZERO);
    assert_eq!(
        commands_for(&got, bad).len(),
        1,
        "{}",
        logs(agents.iter().copied())
    );
    assert_eq!(
        commands_for(&got, good).len(),
        0,
        "{}",
        logs(agents.iter().copied())
    );
    let audit = read_topic(broker, "rollbackd-audit", Duration::ZERO);
    let audited = audit
        .iter()
        .filter(|a| a.payload["kind"] == "command" && a.payload["deploy_id"] == bad)
        .count();
    assert_eq!(audited, 1, "one command audit record for {bad}");
}

/// The requests behind the evidence on the evidence topic.
fn requests_on_evidence_topic(broker: &Broker) -> u64 {
    read_topic(broker, "rollbackd-evidence", Duration::ZERO)
        .iter()
        .map(|r| {
            let (e, _) = rollbackd::ingest::evidence::decode(&r.raw).expect("evidence");
            e.items
                .iter()
                .map(|i| match i {
                    rollbackd::model::evidence::Item::Counts { counts, .. } => counts.requests,
                    _ => 0,
                })
                .sum::<u64>()
        })
        .sum()
}

/// Before the producer could rebuild its client, intake retried a batch
/// on the same client forever: a client with a fatal error fails every
/// send, so that instance never forwarded again and its lag only grew.
/// Now the client is replaced and the batch sent again whole; the owner
/// applies each raw record once.
#[test]
fn a_fatal_evidence_client_is_rebuilt_and_nothing_is_lost_or_counted_twice() {
    let _serial = serial();
    let broker = Broker::noida();
    let cfg = heal_config(&broker, "g-fatal", "", "");
    let agent = instance(&cfg, "a", &[("ROLLBACKD_FAILPOINT", "evidence-fatal")]);
    agent.wait_ready();
    wait_owned(&[&agent]);
    let agents = [&agent];
    started(&cfg, &agents, "d-bad", "shop");
    started(&cfg, &agents, "d-good", "cart");
    let traffic = Traffic::start(&broker);
    traffic.add("shop", true, 40);
    traffic.add("cart", false, 40);
    assert!(
        agent.wait_log(REBUILT, Duration::from_secs(60)),
        "{}",
        agent.log_text()
    );
    decided_once(&broker, &agents, "d-bad", "d-good");
    let sent = traffic.finish();
    // Every raw record read and committed…
    wait_until(
        &agents,
        "intake lag never drained",
        Duration::from_secs(90),
        || group_lag(&broker, "g-fatal", "otlp_spans") == 0,
    );
    // …and each counted once by the owner, though the first batch of
    // evidence reached the topic twice (once from the dead client).
    let want = sent["cart"];
    wait_until(
        &agents,
        &format!("cart's requests never reached {want}"),
        Duration::from_secs(60),
        || candidate_requests(&agents, "d-good") == Some(want),
    );
    thread::sleep(Duration::from_secs(2));
    assert_eq!(candidate_requests(&agents, "d-good"), Some(want));
    let produced: u64 = sent.values().map(|n| n * 4).sum();
    let on_topic = requests_on_evidence_topic(&broker);
    assert!(
        on_topic > produced,
        "evidence for {on_topic} requests, {produced} produced: nothing was sent twice"
    );
    assert_eq!(sample(&agent, EVIDENCE_REBUILDS), 1.0);
    assert_eq!(sample(&agent, OWNER_REBUILDS), 0.0);
    assert_eq!(agent.count_log(REBUILT), 1, "{}", agent.log_text());
    assert_eq!(agent.get("/healthz").0, 200);
    println!("a dead evidence client: rebuilt once; {want} candidate requests counted once; {on_topic} requests on the evidence topic for {produced} produced");
}

/// The owner's transactional client dies with a command's transaction
/// open (its records sent, not committed): a new client initialises the
/// transactional id again — what the dead one left open is aborted — and
/// publishes the batch. One command, one command audit record.
#[test]
fn a_fatal_owner_client_is_rebuilt_and_the_command_is_published_once() {
    let _serial = serial();
    let broker = Broker::noida();
    let cfg = heal_config(&broker, "g-owner-fatal", "", "");
    let agent = instance(&cfg, "a", &[("ROLLBACKD_FAILPOINT", "owner-fatal")]);
    agent.wait_ready();
    wait_owned(&[&agent]);
    let agents = [&agent];
    started(&cfg, &agents, "d-bad", "shop");
    started(&cfg, &agents, "d-good", "cart");
    let traffic = Traffic::start(&broker);
    traffic.add("shop", true, 40);
    traffic.add("cart", false, 40);
    decided_once(&broker, &agents, "d-bad", "d-good");
    assert!(agent.log_text().contains("failpoint owner-fatal"));
    assert_eq!(agent.count_log(REBUILT), 1, "{}", agent.log_text());
    assert_eq!(sample(&agent, OWNER_REBUILDS), 1.0);
    assert_eq!(sample(&agent, EVIDENCE_REBUILDS), 0.0);
    assert_eq!(agent.get("/healthz").0, 200);
    assert!(
        !agent.log_text().contains("this instance is fenced"),
        "{}",
        agent.log_text()
    );
    let sent = traffic.finish();
    wait_until(
        &agents,
        "intake lag never drained",
        Duration::from_secs(90),
        || group_lag(&broker, "g-owner-fatal", "otlp_spans") == 0,
    );
    let want = sent["cart"];
    wait_until(
        &agents,
        &format!("cart's requests never reached {want}"),
        Duration::from_secs(60),
        || candidate_requests(&agents, "d-good") == Some(want),
    );
}

/// What an orchestrator does for each instance: one that ended is started
/// again — one whose transaction was open through an outage longer than
/// transaction.timeout.ms finds its producer fenced by the broker's abort
/// of that transaction, audits it and exits 1 — and one whose `/healthz`
/// fails is restarted, as a liveness probe would have it.
fn liveness_probe(agents: &mut [Agent], restarted: &mut [bool; 3]) {
    for (i, a) in agents.iter_mut().enumerate() {
        if let Some(status) = a.wait_exit(Duration::from_millis(10)) {
            assert!(
                !status.success(),
                "i{i} stopped by itself\n{}",
                a.log_text()
            );
            let why = a
                .log_text()
                .lines()
                .rev()
                .find(|l| l.contains("ERROR"))
                .unwrap_or_default()
                .to_string();
            println!("i{i} ended ({status}) after the outage: {why}; started again");
            a.restart();
            restarted[i] = true;
        } else if a.get("/healthz").0 == 503 {
            // Stuck (a group that never assigned it anything again,
            // say): restarted, as a liveness probe would have it.
            println!(
                "i{i} stuck after the outage: {}; restarted",
                a.get("/healthz").1.trim()
            );
            a.restart();
            restarted[i] = true;
        }
    }
}

/// Three instances, traffic flowing, the broker stopped for `outage` and
/// started again on the same port and data: every instance forwards
/// again, and the next bad canary gets one command, the healthy one none.
///
/// `held`: every instance's intake holds records it could not send
/// through the outage (evidence gathered for 2 s between sends, the broker
/// killed once all of them have some), so its thread waits on the producer
/// rather than polling its consumer; else the broker is stopped whatever
/// the instances are doing.
fn broker_restart(group: &str, outage: Duration, properties: &str, held: bool) {
    let mut broker = Broker::noida();
    let kafka = if held {
        "evidence_flush = \"2s\"\n"
    } else {
        ""
    };
    let cfg = heal_config(&broker, group, kafka, properties);
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| instance(&cfg, &format!("i{i}"), &[]))
        .collect();
    let _logs = LogsOnFailure(agents.iter().map(|a| a.log.clone()).collect());
    let traffic = Traffic::start(&broker);
    let (revoked, before) = {
        let all: Vec<&Agent> = agents.iter().collect();
        for a in &agents {
            a.wait_ready();
        }
        wait_owned(&all);
        started(&cfg, &all, "d-warm", "warm");
        traffic.add("warm", false, 10_000);
        // Every instance holds telemetry partitions and forwards.
        wait_until(
            &all,
            "not every instance forwards",
            Duration::from_secs(90),
            || {
                all.iter()
                    .all(|a| sample(a, "rollbackd_evidence_records_total") > 0.0)
            },
        );
        if held {
            wait_until(
                &all,
                "not every intake holds records",
                Duration::from_secs(60),
                || {
                    all.iter()
                        .all(|a| sample(a, r#"rollbackd_stage_busy{stage="intake"}"#) == 1.0)
                },
            );
            broker.kill();
        } else {
            broker.stop();
        }
        let revoked: Vec<usize> = all
            .iter()
            .map(|a| a.count_log("partitions revoked"))
            .collect();
        let before: Vec<f64> = all
            .iter()
            .map(|a| sample(a, "rollbackd_evidence_records_total"))
            .collect();
        (revoked, before)
    };
    thread::sleep(outage);
    broker.start_again();
    let back = Instant::now();
    let mut restarted = [false; 3];
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        liveness_probe(&mut agents, &mut restarted);
        let forwarding = agents
            .iter()
            .zip(&before)
            .zip(&restarted)
            .all(|((a, b), r)| {
                let sent = sample(a, "rollbackd_evidence_records_total");
                if *r {
                    sent > 0.0
                } else {
                    sent > *b
                }
            });
        if forwarding {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every instance forwards again after the restart\n{}",
            logs(&agents)
        );
        thread::sleep(Duration::from_millis(250));
    }
    println!(
        "broker down {} s: every instance forwarding again {:.1} s after it was back ({} restarted)",
        outage.as_secs(),
        back.elapsed().as_secs_f64(),
        restarted.iter().filter(|r| **r).count()
    );
    let all: Vec<&Agent> = agents.iter().collect();
    started(&cfg, &all, "d-bad2", "shop2");
    started(&cfg, &all, "d-good2", "cart2");
    traffic.add("shop2", true, 60);
    traffic.add("cart2", false, 60);
    drop(all);
    // The liveness probe goes on while the decision is awaited: after a
    // restart noida-db's owner group can keep rebalancing without
    // assigning some members anything, which their /healthz reports.
    let deadline = Instant::now() + Duration::from_secs(180);
    while commands_for(
        &read_topic(&broker, "rollback-commands", Duration::ZERO),
        "d-bad2",
    )
    .is_empty()
        && Instant::now() < deadline
    {
        liveness_probe(&mut agents, &mut restarted);
        thread::sleep(Duration::from_millis(500));
    }
    let all: Vec<&Agent> = agents.iter().collect();
    decided_once(&broker, &all, "d-bad2", "d-good2");
    for (i, a) in agents.iter().enumerate() {
        assert_eq!(a.get("/healthz").0, 200, "i{i}\n{}", a.log_text());
        // Held past max.poll.interval.ms, each member left its groups and
        // joined them again.
        assert!(
            !held || restarted[i] || a.count_log("partitions revoked") > revoked[i],
            "i{i} kept its partitions through the outage\n{}",
            a.log_text()
        );
        println!(
            "i{i}: {} evidence client rebuilds, {} owner client rebuilds, {} revocations after the outage began",
            sample(a, EVIDENCE_REBUILDS),
            sample(a, OWNER_REBUILDS),
            a.count_log("partitions revoked").saturating_sub(revoked[i]),
        );
    }
    drop(traffic);
}

#[test]
fn a_broker_restarted_under_traffic_leaves_every_instance_forwarding() {
    let _serial = serial();
    broker_restart("g-restart", Duration::from_secs(40), "", false);
}

#[test]
fn a_broker_down_longer_than_max_poll_interval_leaves_every_instance_forwarding() {
    let _serial = serial();
    broker_restart(
        "g-poll",
        Duration::from_secs(25),
        "\"max.poll.interval.ms\" = \"10000\"\n",
        true,
    );
}

/// With the broker away and records in hand, intake makes no progress:
/// `/healthz` says so, naming the stage, and is fine again once the
/// evidence gets through.
#[test]
fn healthz_names_the_stuck_stage_while_the_broker_is_down() {
    let _serial = serial();
    let mut broker = Broker::noida();
    // Evidence held 4 s between flushes: records are in hand most of the
    // time; stuck after 6 s without progress.
    let cfg = heal_config(
        &broker,
        "g-stuck",
        "evidence_flush = \"4s\"\nstuck_after = \"6s\"\n",
        "",
    );
    let agent = instance(&cfg, "a", &[]);
    agent.wait_ready();
    wait_owned(&[&agent]);
    let agents = [&agent];
    started(&cfg, &agents, "d-live", "live");
    let traffic = Traffic::start(&broker);
    traffic.add("live", false, 10_000);
    wait_until(&agents, "no evidence", Duration::from_secs(60), || {
        sample(&agent, "rollbackd_evidence_records_total") > 0.0
    });
    assert_eq!(agent.get("/healthz").0, 200);
    wait_until(
        &agents,
        "intake never busy",
        Duration::from_secs(60),
        || sample(&agent, r#"rollbackd_stage_busy{stage="intake"}"#) == 1.0,
    );
    broker.kill();
    let down = Instant::now();
    wait_until(
        &agents,
        "/healthz never said intake is stuck",
        Duration::from_secs(60),
        || agent.get("/healthz").0 == 503,
    );
    let stuck_after = down.elapsed();
    let (_, health) = agent.get("/healthz");
    assert!(health.contains("intake"), "{health}");
    let (code, body) = agent.get("/readyz");
    assert_eq!(code, 503);
    assert!(body.contains("stuck: intake"), "{body}");
    assert_eq!(
        sample(&agent, r#"rollbackd_stage_stuck{stage="intake"}"#),
        1.0
    );
    let status = http(
        &agent.http_addr(),
        "GET",
        "/v1/status",
        &[("Authorization", "Bearer adm")],
        b"",
    )
    .1;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        status["stuck"]
            .as_str()
            .is_some_and(|s| s.contains("intake")),
        "{status}"
    );
    broker.start_again();
    let back = Instant::now();
    wait_until(
        &agents,
        "/healthz never recovered",
        Duration::from_secs(180),
        || agent.get("/healthz").0 == 200,
    );
    println!(
        "/healthz: 503 ({}) {:.1} s after the broker was killed; 200 again {:.1} s after it was back",
        health.trim(),
        stuck_after.as_secs_f64(),
        back.elapsed().as_secs_f64()
    );
    assert_eq!(
        sample(&agent, r#"rollbackd_stage_stuck{stage="intake"}"#),
        0.0
    );
    drop(traffic);
}
