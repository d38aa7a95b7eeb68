//! A notification receiver on loopback: a minimal HTTP/1.1 server that
//! records every request, can fail the first ones with 503, and can hold
//! its answers (a receiver that is slow or hung).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request received, and the status it was answered with.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn ok(&self) -> bool {
        self.status == 200
    }
}

#[derive(Default)]
struct State {
    log: Mutex<Vec<Received>>,
    /// Requests still to answer 503.
    fail: AtomicUsize,
    /// While set, requests are read and recorded as arrived (status 0) but
    /// not answered.
    hold: AtomicBool,
    arrived: AtomicUsize,
}

pub struct Receiver {
    pub url: String,
    state: Arc<State>,
}

impl Receiver {
    /// A receiver answering 503 to its first `fail_first` requests, 200
    /// after.
    pub fn start(fail_first: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        state.fail.store(fail_first, Ordering::SeqCst);
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Receiver { url, state }
    }

    /// Holds (true) or releases (false) the answers.
    pub fn hold(&self, on: bool) {
        self.state.hold.store(on, Ordering::SeqCst);
    }

    /// Requests that arrived, answered or not.
    pub fn arrived(&self) -> usize {
        self.state.arrived.load(Ordering::SeqCst)
    }

    /// The requests answered so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.log.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the requests answered so far.
    pub fn wait(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver: gave up waiting; got {got:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `n` requests arrived (answered or held).
    pub fn wait_arrived(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.arrived() < n {
            assert!(
                Instant::now() < deadline,
                "receiver: {} of {n} requests arrived",
                self.arrived()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(conn: TcpStream, s: &State) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let method = line.split_whitespace().next().unwrap_or("").to_string();
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        s.arrived.fetch_add(1, Ordering::SeqCst);
        while s.hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let fail = s
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let status = if fail { 503 } else { 200 };
        s.log.lock().unwrap().push(Received {
            method,
            path,
            headers,
            body,
            status,
        });
        let reply = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
            if fail { "Service Unavailable" } else { "OK" }
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
