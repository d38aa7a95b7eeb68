//! Chaos: three instances on noida-db (transactions on, static
//! membership), and in random order, one per iteration, the faults a
//! fleet meets — an instance killed with SIGKILL and restarted, an owner
//! frozen (SIGSTOP) past its session timeout and woken, the broker
//! restarted, the broker away for longer than `max.poll.interval.ms` —
//! each with a bad canary, a healthy one and a firing Alertmanager alert
//! in flight. Per fault it counts what a safety net must get right:
//! exactly one command per bad and per alerted deploy, none per healthy
//! one, every request of the healthy canary counted once (none lost, none
//! doubled), and no instance stuck (every `/healthz` answers 200 and the
//! telemetry group's lag drains to 0).
//!
//! `ROLLBACKD_CHAOS_ITERATIONS` (default 4: each fault once) and
//! `ROLLBACKD_CHAOS_SEED` set the run; `scripts/chaos.sh` runs it longer.

mod support;

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use rollbackd::rng::Rng;
use serde_json::json;
use support::fleet::*;
use support::*;

/// Every bad deploy is decided: no breaker holds the later ones back.
const GUARDS: &str = "[guards]\nbreaker_max_rollbacks = 100000\n";

/// Shorter than an outage, so that an outage outlasts it.
const MAX_POLL_MS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill9,
    FreezeOwner,
    BrokerRestart,
    BrokerOutage,
}

impl Fault {
    const ALL: [Fault; 4] = [
        Fault::Kill9,
        Fault::FreezeOwner,
        Fault::BrokerRestart,
        Fault::BrokerOutage,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill -9 of an instance",
            Fault::FreezeOwner => "owner frozen past its session timeout",
            Fault::BrokerRestart => "broker restart",
            Fault::BrokerOutage => "broker outage > max.poll.interval.ms",
        }
    }
}

/// What the iterations of one fault came to.
#[derive(Debug, Default)]
struct Outcome {
    iterations: usize,
    /// Commands for the bad deploys and the alerted ones (want 1 each).
    bad_commands: Vec<usize>,
    alert_commands: Vec<usize>,
    /// Commands for the healthy deploys (want 0).
    healthy_commands: usize,
    /// Healthy canary requests not counted, and counted more than once.
    lost: u64,
    /// Requests sent that the broker did not keep, less those it kept
    /// twice (not rollbackd's).
    broker_lost: u64,
    /// Instances that ended by themselves and were started again.
    restarted: usize,
    doubled: u64,
    /// Instances not healthy, or lag not drained, after the iteration.
    stuck: usize,
}

impl Outcome {
    /// What a safety net must never do: miss or repeat a command, lose or
    /// double-count a request, or go stuck.
    fn perfect(&self) -> bool {
        self.bad_commands.iter().all(|&n| n == 1)
            && self.alert_commands.iter().all(|&n| n == 1)
            && self.healthy_commands == 0
            && self.lost == 0
            && self.doubled == 0
            && self.stuck == 0
    }

    fn row(&self, fault: Fault) -> String {
        let ones = |v: &[usize]| v.iter().filter(|&&n| n == 1).count();
        format!(
            "| {} | {} | {}/{} | {}/{} | {} | {} / {} | {} | {} | {} |",
            fault.name(),
            self.iterations,
            ones(&self.bad_commands),
            self.bad_commands.len(),
            ones(&self.alert_commands),
            self.alert_commands.len(),
            self.healthy_commands,
            self.lost,
            self.doubled,
            self.stuck,
            self.restarted,
            self.broker_lost
        )
    }
}

/// Every fault once per round, in a random order.
fn schedule(rng: &mut Rng, iterations: usize) -> Vec<Fault> {
    let mut out = Vec::with_capacity(iterations);
    while out.len() < iterations {
        let mut round = Fault::ALL.to_vec();
        for i in (1..round.len()).rev() {
            round.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        out.extend(round);
    }
    out.truncate(iterations);
    out
}

/// A firing critical alert for `service`, POSTed to `agent` until it
/// answers 200 (Alertmanager re-sends the same way).
fn fire_alert(agent: &Agent, service: &str) {
    let body =
        json!({"version": "4", "groupKey": "{}", "status": "firing", "receiver": "rollbackd",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [{"status": "firing",
                    "labels": {"alertname": "Errors", "service": service, "severity": "critical"},
                    "annotations": {}, "startsAt": rfc3339_now(), "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": format!("fp-{service}")}]})
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, text) = http(
            &agent.http_addr(),
            "POST",
            "/v1/alerts/alertmanager",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        if code == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "alert never taken: {code} {text}"
        );
        thread::sleep(Duration::from_secs(1));
    }
}

/// Starts again every instance that ended by itself (a Kafka client it
/// could not rebuild, fenced after waking), as its orchestrator would —
/// loud, not silent; says so in `what`. Returns how many.
fn revive(agents: &mut [Agent], what: &mut String) -> usize {
    let mut n = 0;
    for (i, a) in agents.iter_mut().enumerate() {
        if let Some(status) = a.wait_exit(Duration::from_millis(100)) {
            what.push_str(&format!("; i{i} ended ({status}) and was started again"));
            a.restart();
            a.wait_ready();
            n += 1;
        }
    }
    n
}

/// Injects `fault`; returns what it did, in words.
fn inject(fault: Fault, rng: &mut Rng, broker: &mut Broker, agents: &mut [Agent]) -> String {
    let victim = (rng.next_u64() % agents.len() as u64) as usize;
    match fault {
        Fault::Kill9 => {
            agents[victim].kill9();
            thread::sleep(Duration::from_millis(rng.next_u64() % 1_500));
            agents[victim].restart();
            agents[victim].wait_ready();
            format!("killed i{victim}")
        }
        Fault::FreezeOwner => {
            // Past the 6 s session timeout.
            let frozen = Duration::from_millis(8_000 + (rng.next_u64() % 4_000));
            agents[victim].signal("STOP");
            thread::sleep(frozen);
            agents[victim].signal("CONT");
            thread::sleep(Duration::from_secs(2));
            format!("froze i{victim} for {:.1} s", frozen.as_secs_f64())
        }
        Fault::BrokerRestart => {
            let down = Duration::from_millis(1_000 + (rng.next_u64() % 5_000));
            broker.stop();
            thread::sleep(down);
            broker.start_again();
            format!("broker down {:.1} s", down.as_secs_f64())
        }
        Fault::BrokerOutage => {
            let down = Duration::from_millis(MAX_POLL_MS + 3_000 + (rng.next_u64() % 5_000));
            broker.stop();
            thread::sleep(down);
            broker.start_again();
            format!("broker down {:.1} s", down.as_secs_f64())
        }
    }
}

#[test]
fn faults_in_random_order_leave_one_command_per_bad_deploy() {
    let _serial = serial();
    let (iterations, seed) = chaos_run(4);
    let mut rng = Rng::new(seed);
    let faults = schedule(&mut rng, iterations);
    let mut broker = Broker::noida();
    let properties = format!("\"max.poll.interval.ms\" = \"{MAX_POLL_MS}\"\n");
    let cfg = fleet_config(&broker, "g-chaos", "", &properties, FLEET_SLO, GUARDS);
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| instance(&cfg, &format!("i{i}"), &[]))
        .collect();
    for a in &agents {
        a.wait_ready();
    }
    wait_owned(&agents.iter().collect::<Vec<_>>());
    let traffic = Traffic::start(&broker);
    let mut outcomes: BTreeMap<Fault, Outcome> = BTreeMap::new();
    let started_at = Instant::now();
    for (i, &fault) in faults.iter().enumerate() {
        let (bad, good, alerted) = (
            format!("bad-{i}"),
            format!("good-{i}"),
            format!("alerted-{i}"),
        );
        {
            let all: Vec<&Agent> = agents.iter().collect();
            for svc in [&bad, &good, &alerted] {
                started(&cfg, &all, &format!("d-{svc}"), svc);
            }
        }
        // The bad canary serves until well past the fault, as a real one
        // does until it is rolled back; the healthy one's requests are
        // counted once it stopped.
        traffic.add(&bad, true, 120);
        traffic.add(&good, false, 30);
        traffic.add(&alerted, false, 30);
        fire_alert(&agents[(rng.next_u64() % 3) as usize], &alerted);
        thread::sleep(Duration::from_millis(1_000 + (rng.next_u64() % 4_000)));
        let mut what = inject(fault, &mut rng, &mut broker, &mut agents);
        outcomes.entry(fault).or_default().restarted += revive(&mut agents, &mut what);
        let all: Vec<&Agent> = agents.iter().collect();
        let (d_bad, d_good, d_alerted) = (
            format!("d-{bad}"),
            format!("d-{good}"),
            format!("d-{alerted}"),
        );
        wait_topic(
            &broker,
            "rollback-commands",
            Duration::from_secs(180),
            |g| !commands_for(g, &d_bad).is_empty() && !commands_for(g, &d_alerted).is_empty(),
        );
        // Every request of the iteration sent, read and applied.
        let deadline = Instant::now() + Duration::from_secs(180);
        while !(traffic.done(&good) && traffic.done(&alerted)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
        }
        let drained = {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if group_lag(&broker, "g-chaos", "otlp_spans") == 0 {
                    break true;
                }
                if Instant::now() > deadline {
                    break false;
                }
                thread::sleep(Duration::from_millis(500));
            }
        };
        // Against what the broker kept: one restarted mid-write may lose
        // records, or keep a retried one twice — neither is rollbackd's.
        let sent = traffic.sent(&good);
        let want = candidate_spans_on_topic(&broker, &good);
        let counted = {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let n = candidate_requests(&all, &d_good).unwrap_or(0);
                if n == want || Instant::now() > deadline {
                    break n;
                }
                thread::sleep(Duration::from_millis(250));
            }
        };
        if counted != want {
            for (n, a) in all.iter().enumerate() {
                let v: serde_json::Value =
                    serde_json::from_str(&deploy_view(a, &d_good).1).unwrap_or_default();
                let pair = &v["evaluation"]["pairs"][0];
                println!(
                    "{d_good} on i{n}: candidate_long {} baseline_long {}",
                    pair["candidate_long"]["requests"], pair["baseline_long"]["requests"]
                );
            }
        }
        // Long enough for a second command, or one for the healthy canary.
        thread::sleep(Duration::from_secs(3));
        let restarted = revive(&mut agents, &mut what);
        outcomes.entry(fault).or_default().restarted += restarted;
        let healthy = agents.iter().filter(|a| a.get("/healthz").0 == 200).count();
        let commands = read_topic(&broker, "rollback-commands", Duration::ZERO);
        for d in [&d_bad, &d_alerted] {
            if commands_for(&commands, d).len() != 1 {
                println!("{d}: as the instances show it:");
                for a in &agents {
                    println!("  {}", deploy_view(a, d).1);
                }
            }
        }
        let o = outcomes.entry(fault).or_default();
        o.iterations += 1;
        o.bad_commands.push(commands_for(&commands, &d_bad).len());
        o.alert_commands
            .push(commands_for(&commands, &d_alerted).len());
        o.healthy_commands += commands_for(&commands, &d_good).len();
        o.broker_lost += sent.abs_diff(want);
        o.lost += want.saturating_sub(counted);
        o.doubled += counted.saturating_sub(want);
        o.stuck += (agents.len() - healthy) + usize::from(!drained);
        println!(
            "iteration {i}: {} ({what}); commands bad {} alerted {} healthy {}; healthy canary {counted}/{want} requests ({sent} sent); {healthy}/3 healthy, lag drained: {drained}",
            fault.name(),
            commands_for(&commands, &d_bad).len(),
            commands_for(&commands, &d_alerted).len(),
            commands_for(&commands, &d_good).len(),
        );
    }
    drop(traffic);
    println!(
        "chaos: {iterations} faults in {:.0} s, seed {seed}\n| fault | iterations | bad deploys with exactly 1 command | alerted deploys with exactly 1 command | commands for healthy deploys | requests lost / doubled | stuck instances | instances that ended and were restarted | requests the broker kept differently (lost or twice) |\n|---|---|---|---|---|---|---|---|---|",
        started_at.elapsed().as_secs_f64()
    );
    for (fault, o) in &outcomes {
        println!("{}", o.row(*fault));
    }
    for (fault, o) in &outcomes {
        assert!(
            o.perfect(),
            "{}: {o:?} (seed {seed})\n{}",
            fault.name(),
            logs(agents.iter())
        );
    }
}
