//! Every decoder on arbitrary bytes: an error is fine, a panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollbackd::ingest::{alertmanager, deploy, otlp, result};

fuzz_target!(|data: &[u8]| {
    let _ = otlp::decode_traces_proto(data);
    let _ = otlp::decode_metrics_proto(data);
    let _ = otlp::decode_traces_json(data);
    let _ = otlp::decode_metrics_json(data);
    let _ = deploy::decode(data);
    let _ = alertmanager::decode(data);
    let _ = result::decode(data);
    let _ = rollbackd::model::AdminRecord::decode(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = rollbackd::time::Timestamp::parse_rfc3339(s);
        let _ = rollbackd::time::Duration::parse(s);
        let _ = rollbackd::config::Config::from_toml(s);
    }
});
