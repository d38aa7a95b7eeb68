//! A minimal HTTP/1.1 client, and samples of Prometheus text.

use std::time::Duration;

/// POSTs `body`; asserts a 200.
pub fn post_ok(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
    let (code, text) = http(addr, "POST", path, headers, body);
    assert_eq!(code, 200, "{path}: {text}");
}

/// POSTs a `deploy.started` of `service` v2 (previous v1), now, with the
/// fields of `extra` added.
pub fn post_started(addr: &str, id: &str, service: &str, extra: serde_json::Value) {
    let mut ev = serde_json::json!({"type": "deploy.started", "deploy_id": id, "service": service,
        "version": "v2", "previous_version": "v1", "at": super::procs::rfc3339_now()});
    if let (Some(ev), serde_json::Value::Object(extra)) = (ev.as_object_mut(), extra) {
        ev.extend(extra);
    }
    post_ok(
        addr,
        "/v1/deploy-events",
        &[("Content-Type", "application/json")],
        ev.to_string().as_bytes(),
    );
}

/// A minimal HTTP/1.1 request: (status, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the agent");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A minimal HTTP/1.1 GET.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http(addr, "GET", path, &[], b"")
}

/// The value of a sample in Prometheus text, e.g. `rollbackd_commands_total{action="rollback",trigger="burn_rate"}`.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
