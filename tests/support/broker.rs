//! A broker process on a free loopback port — tansu (no working
//! transactions), or noida-db (transactions) — and librdkafka clients that
//! produce to it and read its topics.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::procs::{free_port, noida, tansu, unique_dir};

pub const TOPICS: [(&str, i32); 10] = [
    ("deploy-events", 1),
    ("rollback-commands", 1),
    ("rollback-results", 1),
    ("rollbackd-audit", 1),
    ("rollbackd-dlq", 1),
    ("rollbackd-admin", 1),
    ("otlp_spans", 3),
    ("otlp_metrics", 3),
    ("rollbackd-evidence", 6),
    ("rollbackd-views", 1),
];

/// A tansu broker process (in-memory storage: the prebuilt tansu has no
/// durable engine).
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub noida: bool,
}

impl Broker {
    /// A tansu broker with every topic created.
    pub fn start() -> Broker {
        Broker::launch(false)
    }

    /// A noida-db broker (transactions work) with every topic created.
    pub fn noida() -> Broker {
        Broker::launch(true)
    }

    fn launch(noida: bool) -> Broker {
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir: unique_dir("broker"),
            noida,
        };
        b.spawn();
        for (t, p) in TOPICS {
            b.create_topic(t, p);
        }
        b
    }

    fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .unwrap();
        let mut cmd = if self.noida {
            let data = self.dir.join("data");
            let mut c = Command::new(noida());
            c.arg("start").arg("--data-dir").arg(&data).args([
                "--only",
                "kafka",
                "--kafka-port",
                &self.port.to_string(),
            ]);
            c
        } else {
            let mut c = Command::new(tansu());
            c.args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ]);
            c
        };
        // Its own process group: stopped with whatever it started.
        let child = cmd
            .current_dir(&self.dir)
            .process_group(0)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the broker");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "broker did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let out = Command::new(tansu())
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
                "--partitions",
                &partitions.to_string(),
                name,
            ])
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success() || String::from_utf8_lossy(&out.stderr).contains("exist"),
            "create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The broker's process id (for tansu, the broker itself), while it
    /// runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker: SIGTERM, then SIGKILL if it lingers.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let group = format!("-{}", c.id());
            let _ = Command::new("kill")
                .args(["-s", "TERM", "--", &group])
                .stderr(std::process::Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &group])
                .stderr(std::process::Stdio::null())
                .status();
            let _ = c.wait();
        }
    }

    /// Kills the broker at once (SIGKILL to its process group), as a
    /// crashed machine would stop it: nothing it was answering gets out.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", c.id())])
                .stderr(std::process::Stdio::null())
                .status();
            let _ = c.wait();
        }
    }

    /// Starts a stopped broker again on the same port and data directory
    /// (noida-db keeps its topics there; tansu, in memory, keeps nothing).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is still running");
        self.spawn();
    }

    /// Freezes the broker (SIGSTOP): to its clients it is unreachable —
    /// requests time out — and it keeps every record.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Thaws a frozen broker (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-s", sig, &c.id().to_string()])
                .status();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.thaw();
        self.stop();
    }
}

pub fn producer(broker: &Broker) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

pub fn produce(p: &BaseProducer, topic: &str, key: Option<&str>, payload: &[u8]) {
    let mut rec = BaseRecord::<str, [u8]>::to(topic).payload(payload);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    let mut rec = Some(rec);
    while let Some(r) = rec.take() {
        if let Err((e, r)) = p.send(r) {
            assert!(
                matches!(
                    e,
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull
                    )
                ),
                "{e}"
            );
            p.poll(Duration::from_millis(10));
            rec = Some(r);
        }
    }
    p.poll(Duration::ZERO);
}

pub fn flush(p: &BaseProducer) {
    p.flush(Duration::from_secs(20)).expect("flush");
}

/// A consumed record with its headers.
#[derive(Debug, Clone)]
pub struct Got {
    pub key: Option<String>,
    pub payload: serde_json::Value,
    pub raw: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Reads every record of `topic` from the beginning: at least up to the
/// end it had when called (however long that takes on a loaded machine),
/// and whatever else arrives within `wait`.
pub fn read_topic(broker: &Broker, topic: &str, wait: Duration) -> Vec<Got> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
            let (_, high) = c
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            if high > 0 {
                ends.push((p.id(), high));
            }
        }
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + wait;
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    // The offset after the last record read, per partition.
    let mut next = std::collections::HashMap::new();
    let behind = |next: &std::collections::HashMap<i32, i64>| {
        rollbackd::kafka::behind(&c, topic, ends.iter().copied(), |p| next.get(&p).copied())
            .unwrap_or(1)
    };
    while behind(&next) > 0 || Instant::now() < deadline {
        assert!(
            Instant::now() < give_up,
            "{topic}: not read to its end within 60 s"
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            next.insert(m.partition(), m.offset() + 1);
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let raw = m.payload().unwrap_or_default().to_vec();
            out.push(Got {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
                raw,
                headers,
            });
        }
    }
    out
}

/// Polls `topic` until `pred` holds for what was read, or `timeout`.
pub fn wait_topic(
    broker: &Broker,
    topic: &str,
    timeout: Duration,
    pred: impl Fn(&[Got]) -> bool,
) -> Vec<Got> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = read_topic(broker, topic, Duration::from_millis(1500));
        if pred(&got) || Instant::now() > deadline {
            return got;
        }
    }
}

/// Records of `topic` that consumer group `group` has not committed:
/// the sum over its partitions of high watermark minus committed offset
/// (none committed: from the low watermark).
pub fn group_lag(broker: &Broker, group: &str, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = c
        .committed_offsets(tpl.clone(), Duration::from_secs(10))
        .unwrap();
    tpl.elements()
        .iter()
        .map(|e| {
            let (low, high) = c
                .fetch_watermarks(topic, e.partition(), Duration::from_secs(10))
                .unwrap();
            let at = match committed
                .find_partition(topic, e.partition())
                .map(|p| p.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => low,
            };
            (high - at).max(0)
        })
        .sum()
}
