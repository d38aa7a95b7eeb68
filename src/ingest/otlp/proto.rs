//! OTLP protobuf, read in place ([`wire`](super::wire)): of an export only
//! what the SLIs need is decoded — resource attributes (every one is
//! hashed into the resource's identity), span kinds, times and status
//! codes, of the spans that may be requests the attributes `semconv`
//! reads, and the request-duration histograms' points — and everything
//! else (ids, names, events, links, other attributes, scopes' attributes,
//! other metrics) is passed over without being copied.
//!
//! Protobuf lets a field come in any order and a message field come more
//! than once (its occurrences merge: repeated fields append, the last
//! scalar wins, a oneof keeps its last member), and the reading here
//! follows that: what a value depends on that may come after it on the
//! wire (a span's kind after its attributes, a resource after its spans,
//! a scope's name after its metrics) is read first, in a pass over the
//! message's fields that decodes nothing else.
//!
//! An export is rejected for the structural faults prost rejects
//! ([`wire`](super::wire)) in every message read, for a field of a known
//! number with the wrong wire type, and for a string read that is not
//! UTF-8 — the same verdict as prost's whole decode (`reference`) but for
//! one deliberate difference: what is never read is never checked. A
//! length-delimited field passed over is taken as its length says, so
//! prost's faults inside it go unseen: a span's name, trace state, events
//! and links, a status message, schema URLs, scopes (but for the name of
//! a metrics scope), entity refs, arrays and key-value lists in attribute
//! values (and their nesting depth), the attributes of spans that cannot
//! be requests and those of request spans that `semconv` does not read,
//! metric descriptions and metadata, exemplars, and every metric but the
//! request-duration histograms' points. None of them changes an
//! observation.

use super::semconv::{self, Facts};
use super::wire::Reader;
use super::{span_obs, Attr, IdentBuilder};
use crate::ingest::DecodeError;
use crate::model::{ResourceTelemetry, SpanObs, TelemetryBatch};

/// Decodes a protobuf `ExportTraceServiceRequest`.
pub fn decode_traces_proto(bytes: &[u8]) -> Result<TelemetryBatch, DecodeError> {
    let mut batch = TelemetryBatch::default();
    let mut r = Reader::new(bytes);
    while let Some((field, v)) = r.next()? {
        if field == 1 {
            let rs = v.bytes("ExportTraceServiceRequest.resource_spans")?;
            resource_spans(&mut batch, r.nested(rs))?;
        }
    }
    Ok(batch)
}

/// Decodes a protobuf `ExportMetricsServiceRequest`.
pub fn decode_metrics_proto(bytes: &[u8]) -> Result<TelemetryBatch, DecodeError> {
    let mut batch = TelemetryBatch::default();
    let mut r = Reader::new(bytes);
    while let Some((field, v)) = r.next()? {
        if field == 1 {
            let rm = v.bytes("ExportMetricsServiceRequest.resource_metrics")?;
            resource_metrics(&mut batch, r.nested(rm))?;
        }
    }
    Ok(batch)
}

// ---------------------------------------------------------------------------
// Shared messages: resources and attributes.

/// A `Resource`: its attributes, into the resource's identity.
fn resource(ident: &mut IdentBuilder, mut r: Reader<'_>) -> Result<(), DecodeError> {
    while let Some((field, v)) = r.next()? {
        match field {
            1 => {
                let (key, value) = attribute(r.nested(v.bytes("Resource.attributes")?))?;
                ident.push(key, value);
            }
            2 => drop(v.varint("Resource.dropped_attributes_count")?),
            3 => drop(v.bytes("Resource.entity_refs")?),
            _ => {}
        }
    }
    Ok(())
}

/// A `KeyValue`: its key and (scalar) value.
fn attribute<'a>(mut r: Reader<'a>) -> Result<(&'a str, Attr<'a>), DecodeError> {
    let mut key = "";
    let mut value = Attr::Other;
    while let Some((field, v)) = r.next()? {
        match field {
            1 => key = v.str("KeyValue.key")?,
            2 => any_value(&mut value, r.nested(v.bytes("KeyValue.value")?))?,
            3 => drop(v.varint("KeyValue.key_strindex")?),
            _ => {}
        }
    }
    Ok((key, value))
}

/// A `KeyValue`'s key, not yet checked to be UTF-8, its value not read.
fn key_of<'a>(mut r: Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let mut key: &[u8] = &[];
    while let Some((field, v)) = r.next()? {
        match field {
            1 => key = v.bytes("KeyValue.key")?,
            2 => drop(v.bytes("KeyValue.value")?),
            3 => drop(v.varint("KeyValue.key_strindex")?),
            _ => {}
        }
    }
    Ok(key)
}

/// An `AnyValue`, merged into `value`: its last member wins; arrays,
/// key-value lists and bytes are [`Attr::Other`] and are not looked into.
fn any_value<'a>(value: &mut Attr<'a>, mut r: Reader<'a>) -> Result<(), DecodeError> {
    while let Some((field, v)) = r.next()? {
        *value = match field {
            1 => Attr::Str(v.str("AnyValue.string_value")?),
            2 => Attr::Bool(v.varint("AnyValue.bool_value")? != 0),
            3 => Attr::Int(v.varint("AnyValue.int_value")? as i64),
            4 => Attr::Double(f64::from_bits(v.fixed64("AnyValue.double_value")?)),
            5..=7 => {
                v.bytes("AnyValue.array_value, kvlist_value or bytes_value")?;
                Attr::Other
            }
            8 => {
                v.varint("AnyValue.string_value_strindex")?;
                Attr::Other
            }
            _ => continue,
        };
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Traces.

/// A `ResourceSpans`: its requests, as one resource's observations.
fn resource_spans(batch: &mut TelemetryBatch, mut r: Reader<'_>) -> Result<(), DecodeError> {
    let mut ident = IdentBuilder::default();
    let mut spans = Vec::new();
    while let Some((field, v)) = r.next()? {
        match field {
            1 => resource(&mut ident, r.nested(v.bytes("ResourceSpans.resource")?))?,
            2 => scope_spans(&mut spans, r.nested(v.bytes("ResourceSpans.scope_spans")?))?,
            3 => drop(v.bytes("ResourceSpans.schema_url")?),
            _ => {}
        }
    }
    if !spans.is_empty() {
        batch.resources.push(ResourceTelemetry {
            ident: ident.finish(),
            spans,
            points: Vec::new(),
        });
    }
    Ok(())
}

/// A `ScopeSpans`: its requests, into `out`.
fn scope_spans(out: &mut Vec<SpanObs>, mut r: Reader<'_>) -> Result<(), DecodeError> {
    while let Some((field, v)) = r.next()? {
        match field {
            1 => drop(v.bytes("ScopeSpans.scope")?),
            2 => out.extend(span(r.nested(v.bytes("ScopeSpans.spans")?))?),
            3 => drop(v.bytes("ScopeSpans.schema_url")?),
            _ => {}
        }
    }
    Ok(())
}

/// A `Span`, if it is a request. Its kind, times and status come first;
/// its attributes are read only if the kind can be a request's, over the
/// range of the span where they are, and of those only the ones `semconv`
/// reads are decoded (most are not: `url.*`, `server.*`, ...).
fn span(mut r: Reader<'_>) -> Result<Option<SpanObs>, DecodeError> {
    let (mut kind, mut start, mut end, mut code) = (0i32, 0u64, 0u64, 0i32);
    let mut attrs: Option<(usize, usize)> = None;
    loop {
        let at = r.pos();
        let Some((field, v)) = r.next()? else { break };
        match field {
            1 | 2 | 4 => drop(v.bytes("Span.trace_id, span_id or parent_span_id")?),
            3 | 5 => drop(v.bytes("Span.trace_state or name")?),
            6 => kind = v.varint("Span.kind")? as i32,
            7 => start = v.fixed64("Span.start_time_unix_nano")?,
            8 => end = v.fixed64("Span.end_time_unix_nano")?,
            9 => {
                v.bytes("Span.attributes")?;
                attrs = Some((attrs.map_or(at, |(from, _)| from), r.pos()));
            }
            10 | 12 | 14 => drop(v.varint("Span.dropped_*_count")?),
            11 | 13 => drop(v.bytes("Span.events or links")?),
            15 => status(&mut code, r.nested(v.bytes("Span.status")?))?,
            16 => drop(v.fixed32("Span.flags")?),
            _ => {}
        }
    }
    if !semconv::may_be_request(kind) {
        return Ok(None);
    }
    let mut facts = Facts::default();
    if let Some((from, to)) = attrs {
        let mut a = r.range(from, to);
        while let Some((field, v)) = a.next()? {
            if field == 9 {
                let kv = a.nested(v.bytes("Span.attributes")?);
                if semconv::reads(key_of(kv)?) {
                    let (key, value) = attribute(kv)?;
                    facts.push(key, value);
                }
            }
        }
    }
    let Some(kind) = facts.span_kind(kind) else {
        return Ok(None);
    };
    span_obs(start, end, facts.error(kind, code), kind)
}

/// A span's `Status`: its code, merged into `code`.
fn status(code: &mut i32, mut r: Reader<'_>) -> Result<(), DecodeError> {
    while let Some((field, v)) = r.next()? {
        match field {
            2 => drop(v.bytes("Status.message")?),
            3 => *code = v.varint("Status.code")? as i32,
            _ => {}
        }
    }
    Ok(())
}

mod metrics;
use metrics::resource_metrics;
