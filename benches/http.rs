//! OTLP/HTTP load on loopback: how many spans per second `rollbackd run`
//! (without Kafka) accepts, and its request latency at half that load.
//! Bounded in time; loopback only. Run with `cargo bench --bench http`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

const SPANS_PER_EXPORT: usize = 512;

/// A keep-alive HTTP/1.1 client for one connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn new(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn post(&mut self, path: &str, ctype: &str, body: &[u8]) -> u16 {
        write!(self.writer, "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
        self.writer.write_all(body).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).unwrap();
        status
    }
}

fn load(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("rollbackd-httpbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        "[http]\nlisten = \"127.0.0.1:0\"\nallow_unauthenticated = true\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("ROLLBACKD_LOG", "warn,rollbackd=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = support::http_addr_from_stderr(&mut child);
    for (id, svc) in [("d-a", "svc-a"), ("d-b", "svc-b")] {
        let ev = format!(
            r#"{{"type":"deploy.started","deploy_id":"{id}","service":"{svc}","version":"v2","previous_version":"v1","at":"{}"}}"#,
            support::rfc3339_now()
        );
        assert_eq!(
            Conn::new(&addr).post("/v1/deploy-events", "application/json", ev.as_bytes()),
            200
        );
    }
    let exports: Vec<Vec<u8>> = (0..32)
        .map(|i| {
            let svc = if i % 2 == 0 { "svc-a" } else { "svc-b" };
            let version = if i % 4 < 2 { "v1" } else { "v2" };
            common::span_export(svc, version, i, SPANS_PER_EXPORT, support::now_ns())
        })
        .collect();

    // Saturation: two client connections as fast as they can, 10 s.
    let secs = 10.0;
    let totals: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|t| {
                let (addr, exports) = (&addr, &exports);
                s.spawn(move || {
                    let mut conn = Conn::new(addr);
                    let start = Instant::now();
                    let mut n = 0;
                    while start.elapsed().as_secs_f64() < secs {
                        assert_eq!(
                            conn.post(
                                "/v1/traces",
                                "application/x-protobuf",
                                &exports[(n + t) % exports.len()]
                            ),
                            200
                        );
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let spans_per_sec = totals.iter().sum::<usize>() as f64 * SPANS_PER_EXPORT as f64 / secs;
    println!(
        "http: OTLP/HTTP protobuf, 2 keep-alive connections: {spans_per_sec:.0} spans/s accepted ({} requests of {SPANS_PER_EXPORT} spans, {} bytes each, in {secs}s)",
        totals.iter().sum::<usize>(),
        exports[0].len()
    );

    // Latency at half that load, paced.
    let rate = spans_per_sec / 2.0 / SPANS_PER_EXPORT as f64; // requests per second
    let mut lat: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|t| {
                let (addr, exports) = (&addr, &exports);
                s.spawn(move || {
                    let mut conn = Conn::new(addr);
                    let every = Duration::from_secs_f64(2.0 / rate);
                    let start = Instant::now();
                    let mut out = Vec::new();
                    let mut k = 0u32;
                    while start.elapsed().as_secs_f64() < secs {
                        let due = start + every * k;
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        let t0 = Instant::now();
                        assert_eq!(
                            conn.post(
                                "/v1/traces",
                                "application/x-protobuf",
                                &exports[(k as usize + t) % exports.len()]
                            ),
                            200
                        );
                        out.push(t0.elapsed());
                        k += 1;
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    lat.sort();
    let q = |x: f64| lat[((lat.len() as f64 - 1.0) * x).round() as usize].as_secs_f64() * 1e3;
    println!(
        "http: at half load ({:.0} spans/s, {} requests): request latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        rate * SPANS_PER_EXPORT as f64,
        lat.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
    let _ = child.kill();
    let _ = child.wait();
    c.bench_function("http_load/done", |b| b.iter(|| 0));
}

criterion_group!(benches, load);
criterion_main!(benches);
