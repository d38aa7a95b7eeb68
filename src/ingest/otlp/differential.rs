//! The in-place protobuf decoder against the reference (prost's whole
//! decode, then the same rules): the same batch for random valid exports —
//! every attribute value type, unknown fields at every level, fields out of
//! order and messages split in several occurrences, repeated resources,
//! empty things — and the same verdict on mutated ones.

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::trace::v1 as pt;
use proptest::prelude::*;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

use super::{decode_metrics_proto, decode_traces_proto, reference, DecodeError};
use super::{HTTP_DURATION, MESSAGING_DURATION, RPC_CALL_DURATION, RPC_DURATION};
use crate::model::TelemetryBatch;
use crate::rng::Rng;

/// A message as its fields: bytes already encoded, or a message field
/// whose fields are themselves nodes (so that they can be reordered, split
/// and sprinkled with unknown fields before being encoded).
enum Node {
    Raw(Vec<u8>),
    Msg(u32, Vec<Node>),
}

fn encode(nodes: &[Node], out: &mut Vec<u8>) {
    for n in nodes {
        match n {
            Node::Raw(b) => out.extend_from_slice(b),
            Node::Msg(field, inner) => {
                let mut body = Vec::new();
                encode(inner, &mut body);
                encode_key(*field, WireType::LengthDelimited, out);
                encode_varint(body.len() as u64, out);
                out.extend_from_slice(&body);
            }
        }
    }
}

/// A field of prost message `m` as a node.
fn field<M: Message>(tag: u32, m: &M) -> Node {
    let mut b = Vec::new();
    prost::encoding::message::encode(tag, m, &mut b);
    Node::Raw(b)
}

/// An unknown field of every wire type (groups included).
fn junk(rng: &mut Rng) -> Node {
    let tag = 40 + (rng.next_u64() % 20) as u32;
    let mut b = Vec::new();
    match rng.next_u64() % 5 {
        0 => {
            encode_key(tag, WireType::Varint, &mut b);
            encode_varint(rng.next_u64() >> (rng.next_u64() % 64), &mut b);
        }
        1 => {
            encode_key(tag, WireType::SixtyFourBit, &mut b);
            b.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        2 => {
            encode_key(tag, WireType::ThirtyTwoBit, &mut b);
            b.extend_from_slice(&[1, 2, 3, 4]);
        }
        3 => {
            encode_key(tag, WireType::LengthDelimited, &mut b);
            encode_varint(3, &mut b);
            b.extend_from_slice(&[0xff, 0x00, 0x80]);
        }
        _ => {
            encode_key(tag, WireType::StartGroup, &mut b);
            encode_key(tag + 1, WireType::Varint, &mut b);
            encode_varint(7, &mut b);
            encode_key(tag, WireType::EndGroup, &mut b);
        }
    }
    Node::Raw(b)
}

/// Reorders some messages' fields and adds unknown fields, at every level.
fn scramble(nodes: &mut Vec<Node>, rng: &mut Rng) {
    for n in nodes.iter_mut() {
        if let Node::Msg(_, inner) = n {
            scramble(inner, rng);
        }
    }
    if rng.next_u64() % 4 == 0 && nodes.len() > 1 {
        let k = (rng.next_u64() % nodes.len() as u64) as usize;
        nodes.rotate_left(k);
    }
    if rng.next_u64() % 4 == 0 {
        let at = (rng.next_u64() % (nodes.len() as u64 + 1)) as usize;
        nodes.insert(at, junk(rng));
    }
}

fn pick<'a, T>(rng: &mut Rng, from: &'a [T]) -> &'a T {
    &from[(rng.next_u64() % from.len() as u64) as usize]
}

const KEYS: [&str; 18] = [
    "service.name",
    "service.version",
    "deployment.environment.name",
    "deployment.environment",
    "deployment.id",
    "http.response.status_code",
    "http.status_code",
    "rpc.system",
    "rpc.system.name",
    "rpc.grpc.status_code",
    "rpc.response.status_code",
    "error.type",
    "messaging.system",
    "messaging.operation.type",
    "messaging.operation",
    "url.path",
    "",
    "k",
];

const STRINGS: [&str; 10] = [
    "",
    "checkout",
    "v2",
    "500",
    " 503 ",
    "UNAVAILABLE",
    "not_found",
    "process",
    "receive",
    "é",
];

fn value(rng: &mut Rng, depth: u32) -> Option<AnyValue> {
    use any_value::Value as V;
    let v = match rng.next_u64() % (if depth > 1 { 6 } else { 9 }) {
        0 => return None,
        1 => None,
        2 => Some(V::StringValue(pick(rng, &STRINGS).to_string())),
        3 => Some(V::IntValue(*pick(
            rng,
            &[0, 2, 5, 14, 200, 404, 500, 503, -1],
        ))),
        4 => Some(V::BoolValue(rng.next_u64() % 2 == 0)),
        5 => Some(V::DoubleValue(*pick(
            rng,
            &[0.0, 500.0, 14.2, f64::NAN, -1e300],
        ))),
        6 => Some(V::BytesValue(vec![0xff, 0xfe])),
        7 => Some(V::ArrayValue(ArrayValue {
            values: (0..2).filter_map(|_| value(rng, depth + 1)).collect(),
        })),
        _ => Some(V::KvlistValue(KeyValueList {
            values: attributes(rng, depth + 1, 2),
        })),
    };
    Some(AnyValue { value: v })
}

fn attributes(rng: &mut Rng, depth: u32, max: u64) -> Vec<KeyValue> {
    (0..rng.next_u64() % (max + 1))
        .map(|_| KeyValue {
            key: pick(rng, &KEYS).to_string(),
            value: value(rng, depth),
            ..Default::default()
        })
        .collect()
}

/// A time: mostly plausible, sometimes 0, sometimes out of range.
fn time(rng: &mut Rng) -> u64 {
    match rng.next_u64() % 64 {
        0..=3 => 0,
        4 => u64::MAX,
        5 => 7,
        _ => 1_795_694_400_000_000_000 + rng.next_u64() % 1_000_000_000,
    }
}

/// A resource's attributes as one or two `resource` fields (they merge).
fn resource_nodes(rng: &mut Rng) -> Vec<Node> {
    let attrs: Vec<Node> = attributes(rng, 0, 6)
        .iter()
        .map(|kv| field(1, kv))
        .collect();
    match rng.next_u64() % 4 {
        0 => Vec::new(),
        1 if attrs.len() > 1 => {
            let mut attrs = attrs;
            let tail = attrs.split_off(attrs.len() / 2);
            vec![Node::Msg(1, attrs), Node::Msg(1, tail)]
        }
        _ => vec![Node::Msg(1, attrs)],
    }
}

fn span(rng: &mut Rng) -> Node {
    let core = pt::Span {
        trace_id: rng.next_u64().to_be_bytes().to_vec(),
        name: "GET /".into(),
        kind: *pick(rng, &[0, 1, 2, 2, 2, 3, 4, 5, 5]),
        start_time_unix_nano: time(rng),
        end_time_unix_nano: time(rng),
        events: if rng.next_u64() % 8 == 0 {
            vec![pt::span::Event {
                name: "e".into(),
                attributes: attributes(rng, 0, 2),
                ..Default::default()
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let mut nodes = vec![Node::Raw(core.encode_to_vec())];
    nodes.extend(attributes(rng, 0, 5).iter().map(|kv| field(9, kv)));
    if rng.next_u64() % 3 != 0 {
        let status = pt::Status {
            code: *pick(rng, &[0, 1, 2, 2]),
            message: "m".into(),
        };
        nodes.push(field(15, &status));
    }
    Node::Msg(2, nodes)
}

/// A random valid-looking trace export (some are rejected by both: times
/// out of range).
fn trace_export(rng: &mut Rng) -> Vec<u8> {
    let mut top = Vec::new();
    for _ in 0..rng.next_u64() % 4 {
        let mut rs = resource_nodes(rng);
        for _ in 0..rng.next_u64() % 3 {
            let mut ss = Vec::new();
            if rng.next_u64() % 2 == 0 {
                let scope = InstrumentationScope {
                    name: "gen".into(),
                    ..Default::default()
                };
                ss.push(field(1, &scope));
            }
            ss.extend((0..rng.next_u64() % 9).map(|_| span(rng)));
            rs.push(Node::Msg(2, ss));
        }
        top.push(Node::Msg(1, rs));
    }
    scramble(&mut top, rng);
    let mut out = Vec::new();
    encode(&top, &mut out);
    out
}

fn point(rng: &mut Rng) -> pm::HistogramDataPoint {
    let bounds: Vec<f64> = match rng.next_u64() % 32 {
        0..=3 => vec![],
        4 => vec![2.0, 1.0],
        _ => vec![0.1, 0.5, 1.0],
    };
    let counts: Vec<u64> = match rng.next_u64() % 32 {
        0..=3 => vec![],
        4 => vec![1],
        _ => (0..=bounds.len() as u64).collect(),
    };
    pm::HistogramDataPoint {
        attributes: attributes(rng, 0, 4),
        start_time_unix_nano: time(rng),
        time_unix_nano: time(rng),
        count: counts.iter().sum(),
        sum: Some(1.5),
        bucket_counts: counts,
        explicit_bounds: bounds,
        ..Default::default()
    }
}

fn histogram(rng: &mut Rng) -> Node {
    let mut nodes = Vec::new();
    let temporality = *pick(rng, &[1, 2, 1, 2, 1, 2, 1, 2, 0, 3, 1, 2, 1, 2, 1, 2]);
    let mut t = Vec::new();
    prost::encoding::int32::encode(2, &temporality, &mut t);
    nodes.push(Node::Raw(t));
    nodes.extend((0..rng.next_u64() % 4).map(|_| field(1, &point(rng))));
    Node::Msg(9, nodes)
}

fn metric(rng: &mut Rng) -> Node {
    let m = pm::Metric {
        name: pick(
            rng,
            &[
                HTTP_DURATION,
                RPC_CALL_DURATION,
                RPC_DURATION,
                MESSAGING_DURATION,
                "other",
            ],
        )
        .to_string(),
        unit: pick(rng, &["", "s", "ms", "min"]).to_string(),
        description: "d".into(),
        ..Default::default()
    };
    let mut nodes = vec![Node::Raw(m.encode_to_vec())];
    let sum = || {
        field(
            7,
            &pm::Sum {
                aggregation_temporality: 1,
                ..Default::default()
            },
        )
    };
    match rng.next_u64() % 6 {
        0 => nodes.push(sum()),
        1 => nodes.extend([histogram(rng), sum()]),
        2 => nodes.extend([sum(), histogram(rng)]),
        3 => nodes.extend([histogram(rng), histogram(rng)]),
        _ => nodes.push(histogram(rng)),
    }
    Node::Msg(2, nodes)
}

/// A random valid-looking metrics export (some are rejected by both:
/// temporalities, bounds, bucket counts, times).
fn metrics_export(rng: &mut Rng) -> Vec<u8> {
    let mut top = Vec::new();
    for _ in 0..rng.next_u64() % 4 {
        let mut rm = resource_nodes(rng);
        for _ in 0..rng.next_u64() % 3 {
            let mut sm = Vec::new();
            if rng.next_u64() % 2 == 0 {
                let scope = InstrumentationScope {
                    name: pick(rng, &["gen", "", "x"]).to_string(),
                    ..Default::default()
                };
                sm.push(field(1, &scope));
            }
            sm.extend((0..rng.next_u64() % 5).map(|_| metric(rng)));
            rm.push(Node::Msg(2, sm));
        }
        top.push(Node::Msg(1, rm));
    }
    scramble(&mut top, rng);
    let mut out = Vec::new();
    encode(&top, &mut out);
    out
}

fn same(
    bytes: &[u8],
    got: Result<TelemetryBatch, DecodeError>,
    want: Result<TelemetryBatch, DecodeError>,
) -> Result<(), TestCaseError> {
    match (got, want) {
        (Ok(got), Ok(want)) => prop_assert_eq!(got, want, "{:?}", bytes),
        (Err(_), Err(_)) => {}
        (got, want) => prop_assert!(false, "{bytes:?}: got {got:?}, the reference {want:?}"),
    }
    Ok(())
}

/// The places of an export the in-place decoder never reads, so never
/// checks: prost rejects a fault there, it does not (prost's error names
/// the messages and fields it was in).
const NEVER_READ: &[&str] = &[
    "Span.name",
    "Span.trace_state",
    "Span.events",
    "Span.links",
    "Status.message",
    "ResourceSpans.schema_url",
    "ScopeSpans.scope",
    "ScopeSpans.schema_url",
    "ResourceMetrics.schema_url",
    "ScopeMetrics.schema_url",
    "Resource.entity_refs",
    "ArrayValue.",
    "KeyValueList.",
    "InstrumentationScope.version",
    "InstrumentationScope.attributes",
    "Metric.description",
    "Metric.metadata",
    "Exemplar.",
    "Gauge.",
    "Sum.",
    "Summary.",
    "ExponentialHistogram.",
    // The attributes of spans that are no request, and the points of
    // histograms that are no request durations (which the reference's
    // error cannot tell from the others).
    "Span.attributes",
    "Histogram.data_points",
];

/// The verdict on mutated bytes: what the reference accepts is decoded the
/// same; what it rejects is rejected, unless prost's fault is where the
/// in-place decoder never reads.
fn same_verdict(
    bytes: &[u8],
    got: Result<TelemetryBatch, DecodeError>,
    want: Result<TelemetryBatch, DecodeError>,
) -> Result<(), TestCaseError> {
    match (got, want) {
        (Ok(got), Ok(want)) => prop_assert_eq!(got, want, "{:?}", bytes),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => {
            // A oneof's member passed over (a sum, an array) fails in
            // the oneof's place.
            let innermost = e.0.split("Protobuf message: ").nth(1).unwrap_or("");
            let unread = innermost.starts_with("Metric.data: ")
                || innermost.starts_with("AnyValue.value: ")
                || (innermost.contains(": ") && NEVER_READ.iter().any(|p| e.0.contains(p)));
            prop_assert!(unread, "{bytes:?}: accepted, the reference says {e}");
        }
        (Err(e), Ok(_)) => prop_assert!(false, "{bytes:?}: {e}, the reference accepts it"),
    }
    Ok(())
}

/// `bytes` with a mutation: truncated, bits flipped, or a byte dropped.
fn mutate(mut bytes: Vec<u8>, rng: &mut Rng) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    let at = (rng.next_u64() % bytes.len() as u64) as usize;
    match rng.next_u64() % 3 {
        0 => bytes.truncate(at),
        1 => {
            for _ in 0..=rng.next_u64() % 3 {
                let i = (rng.next_u64() % bytes.len() as u64) as usize;
                bytes[i] ^= 1 << (rng.next_u64() % 8);
            }
        }
        _ => drop(bytes.remove(at)),
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn trace_exports_decode_as_the_reference_does(seed in any::<u64>()) {
        let b = trace_export(&mut Rng::new(seed));
        same(&b, decode_traces_proto(&b), reference::decode_traces(&b))?;
    }

    #[test]
    fn metrics_exports_decode_as_the_reference_does(seed in any::<u64>()) {
        let b = metrics_export(&mut Rng::new(seed));
        same(&b, decode_metrics_proto(&b), reference::decode_metrics(&b))?;
    }

    #[test]
    fn mutated_exports_get_the_reference_verdict(seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let t = mutate(trace_export(&mut rng), &mut rng);
        same_verdict(&t, decode_traces_proto(&t), reference::decode_traces(&t))?;
        let m = mutate(metrics_export(&mut rng), &mut rng);
        same_verdict(&m, decode_metrics_proto(&m), reference::decode_metrics(&m))?;
    }
}

/// Whether the in-place decoder and the reference accept `b`, as traces
/// and as metrics.
fn verdicts(b: &[u8]) -> [bool; 4] {
    [
        decode_traces_proto(b).is_ok(),
        reference::decode_traces(b).is_ok(),
        decode_metrics_proto(b).is_ok(),
        reference::decode_metrics(b).is_ok(),
    ]
}

/// `body` as field `tag` (length-delimited) of a message.
fn ld(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    encode_key(tag, WireType::LengthDelimited, &mut b);
    encode_varint(body.len() as u64, &mut b);
    b.extend_from_slice(body);
    b
}

/// `span` (its fields) as the one span of a trace export.
fn in_span(span: &[u8]) -> Vec<u8> {
    ld(1, &ld(2, &ld(2, span)))
}

#[test]
fn malformed_wire_is_rejected_as_prost_rejects_it() {
    let ff9 = [0xff; 9];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a truncated key", vec![0x80]),
        ("a truncated length", vec![0x0a, 0x80]),
        ("a length past the end", vec![0x0a, 0x05, 0x00]),
        (
            "an 11-byte varint",
            [&[0x10][..], &[0xff; 10], &[0x01]].concat(),
        ),
        (
            "a 10th varint byte above 1",
            [&[0x10][..], &ff9, &[0x02]].concat(),
        ),
        ("field number 0", vec![0x00, 0x00]),
        ("wire type 6", vec![0x0e]),
        ("wire type 7", vec![0x0f, 0x00]),
        ("a known field's wrong wire type", vec![0x08, 0x01]),
        ("an end group without start", vec![0x14]),
        ("a group ended as another", vec![0x13, 0x1c]),
        ("a group never ended", vec![0x13, 0x18, 0x01]),
        (
            "a key above u32::MAX",
            [&[0xff][..], &[0xff; 4], &[0x7f]].concat(),
        ),
    ];
    for (what, b) in cases {
        assert_eq!(verdicts(&b), [false; 4], "{what}: {b:?}");
    }
    let spans: Vec<(&str, Vec<u8>)> = vec![
        ("a span's kind as a string", in_span(&ld(6, b"x"))),
        ("a span's end time as a varint", in_span(&[0x40, 0x01])),
        ("a span's truncated status", in_span(&[0x7a, 0x02, 0x18])),
        (
            "a request's attribute key not UTF-8",
            in_span(&[&[0x30, 0x02][..], &ld(9, &ld(1, b"messaging.\xff"))].concat()),
        ),
        (
            "a resource's attribute value not UTF-8",
            ld(1, &ld(1, &ld(1, &ld(2, &ld(1, &[0xc3]))))),
        ),
    ];
    for (what, b) in spans {
        assert_eq!(verdicts(&b)[..2], [false; 2], "{what}: {b:?}");
    }
    // A 10-byte varint whose last byte is 1 is u64::MAX's: fine.
    let fine = [&[0x10][..], &ff9, &[0x01]].concat();
    assert_eq!(verdicts(&fine), [true; 4]);
    assert_eq!(verdicts(&[]), [true; 4]);
}

/// `n` groups nested in one another (an unknown field 50), around a
/// varint (field 51).
fn groups(n: usize) -> Vec<u8> {
    let start = [0x93, 0x03].repeat(n);
    let end = [0x94, 0x03].repeat(n);
    [start, vec![0x98, 0x03, 0x01], end].concat()
}

#[test]
fn groups_nest_as_deep_as_prost_lets_them() {
    for n in [1, 50, 97, 98, 99, 100, 101, 150] {
        let top = verdicts(&groups(n));
        assert_eq!(top[0], top[1], "{n} groups in the request");
        assert_eq!(top[2], top[3], "{n} groups in the request");
        assert_eq!(top[0], n < 100, "{n} groups in the request");
        let deep = in_span(&[&[0x30, 0x02][..], &groups(n)].concat());
        let [lazy, reference, ..] = verdicts(&deep);
        assert_eq!((lazy, reference), (n < 97, n < 97), "{n} groups in a span");
    }
}

#[test]
fn what_is_never_read_is_never_checked() {
    // Values nested past prost's recursion limit, in a resource attribute
    // (an array is never looked into)...
    let mut nested = vec![0x18, 0x01];
    for _ in 0..120 {
        nested = ld(5, &ld(1, &nested));
    }
    let resource = ld(1, &ld(1, &[&ld(1, b"k")[..], &ld(2, &nested)].concat()));
    let b = [
        resource,
        ld(2, &ld(2, &[0x30, 0x02, 0x41, 1, 0, 0, 0, 0, 0, 0, 0])),
    ]
    .concat();
    let [lazy, reference, ..] = verdicts(&ld(1, &b));
    assert_eq!((lazy, reference), (true, false));
    // ... a span's name that is not UTF-8, the attributes of a CLIENT
    // span, an attribute `semconv` does not read.
    let unread = ld(
        9,
        &[&ld(1, b"url.path")[..], &ld(2, &ld(1, &[0xff]))].concat(),
    );
    for span in [
        [&[0x30, 0x02][..], &ld(5, &[0xff])].concat(),
        [&[0x30, 0x03][..], &ld(9, &[0x0f])].concat(),
        [&[0x30, 0x02][..], &unread].concat(),
    ] {
        let [lazy, reference, ..] = verdicts(&in_span(&span));
        assert_eq!((lazy, reference), (true, false), "{span:?}");
    }
}

#[test]
fn merged_occurrences_decode_as_the_reference_does() {
    let status_code = |key: &[u8], values: &[Vec<u8>]| {
        let value: Vec<u8> = values.iter().flat_map(|v| ld(2, v)).collect();
        ld(9, &[&ld(1, key)[..], &value].concat())
    };
    // An int value below 128 (a one-byte varint).
    let int = |i: u8| vec![0x18, i];
    let string = |s: &[u8]| ld(1, s);
    let end = [0x41, 0, 0, 0, 0, 0, 0, 0, 0x20];
    let start = [0x39, 0, 0, 0, 0, 0, 0, 0, 0x10];
    let key = b"http.response.status_code";
    let spans = [
        // A value in two occurrences (the last member wins), one of them
        // a member in two.
        status_code(key, &[string(b"200"), int(100)]),
        status_code(key, &[[string(b"503"), ld(7, b"x")].concat()]),
        status_code(key, &[int(100), vec![]]),
        // The kind after the attributes, a status in two occurrences.
        [
            &status_code(key, &[int(99)])[..],
            &ld(15, &[0x18, 0x02]),
            &ld(15, &ld(2, b"m")),
        ]
        .concat(),
    ];
    let mut scope = Vec::new();
    for attrs in &spans {
        let span = [&attrs[..], &start, &end, &[0x30, 0x02]].concat();
        scope.extend(ld(2, &span));
    }
    // The resource after its spans, in two occurrences.
    let resource = |k: &[u8], v: &[u8]| ld(1, &ld(1, &[&ld(1, k)[..], &ld(2, &ld(1, v))].concat()));
    let b = ld(
        1,
        &[
            &ld(2, &scope)[..],
            &resource(b"service.name", b"web"),
            &resource(b"service.version", b"v2"),
        ]
        .concat(),
    );
    let got = decode_traces_proto(&b).unwrap();
    assert_eq!(got, reference::decode_traces(&b).unwrap());
    let r = &got.resources[0];
    assert_eq!(r.ident.version.as_deref(), Some("v2"));
    let errors: Vec<bool> = r.spans.iter().map(|s| s.error).collect();
    assert_eq!(errors, [false, false, false, true]);
}
