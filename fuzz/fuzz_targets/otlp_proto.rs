//! The in-place OTLP protobuf decoder against the reference (prost's whole
//! decode, then the same rules): what the reference accepts is decoded to
//! the same batch, and what the in-place decoder rejects the reference
//! rejects too. (The reference may reject what the in-place decoder
//! accepts: a fault inside a field it never reads, see
//! `rollbackd::ingest::otlp`.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollbackd::ingest::otlp::{self, reference};

fuzz_target!(|data: &[u8]| {
    for (got, want) in [
        (otlp::decode_traces_proto(data), reference::decode_traces(data)),
        (otlp::decode_metrics_proto(data), reference::decode_metrics(data)),
    ] {
        match (got, want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(e), Ok(_)) => panic!("rejected what the reference accepts: {e}"),
            _ => {}
        }
    }
});
