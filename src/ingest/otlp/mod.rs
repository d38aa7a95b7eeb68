//! OTLP traces and metrics (`docs/formats.md#otlp-telemetry`) → request observations.
//!
//! Protobuf is read in place from the wire format (`proto`, `wire`):
//! only the fields the SLIs need are decoded, the rest of an export is
//! passed over without being copied or allocated (see `proto` for what is
//! read, and for what is not checked where prost would: the contents of
//! fields never read). `reference`, the whole decode with
//! `opentelemetry-proto`'s prost types, is what it is tested and measured
//! against; it is not built into rollbackd. OTLP/JSON is
//! decoded with borrowed serde structs that read only the fields the SLIs
//! need (unknown fields, ids and names are skipped without being copied),
//! following OTLP/JSON's rules: lowerCamelCase keys, 64-bit integers as
//! strings (numbers are accepted too), enums as integers.
//!
//! What counts (`semconv`): SERVER spans of HTTP and RPC servers,
//! CONSUMER spans that processed a message, and the request-duration
//! histograms of each (`http.server.request.duration`,
//! `rpc.server.call.duration`, `rpc.server.duration`,
//! `messaging.process.duration`) in `s` or `ms`, each observation tagged
//! with its [`RequestKind`] (which kinds a service counts is its policy's,
//! applied by the fold). Everything else in an export is ignored, not an
//! error.

use super::DecodeError;
use crate::model::{
    HistPoint, RequestKind, ResourceIdent, ResourceTelemetry, SpanObs, TelemetryBatch, Temporality,
};
use crate::time::Timestamp;
use semconv::Facts;
pub use semconv::{HTTP_DURATION, MESSAGING_DURATION, RPC_CALL_DURATION, RPC_DURATION};

const TEMPORALITY_DELTA: i32 = 1;
const TEMPORALITY_CUMULATIVE: i32 = 2;

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub fn decode_traces_json(bytes: &[u8]) -> Result<TelemetryBatch, DecodeError> {
    require_object(bytes)?;
    let req: JTraceRequest<'_> = serde_json::from_slice(bytes).map_err(json_error)?;
    let mut batch = TelemetryBatch::default();
    for rs in &req.resource_spans {
        let attrs = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes);
        let spans = rs.scope_spans.iter().flat_map(|ss| &ss.spans).map(|s| {
            let code = s.status.as_ref().map_or(0, |st| st.code);
            (
                s.kind,
                s.start_time_unix_nano.0,
                s.end_time_unix_nano.0,
                code,
                &s.attributes[..],
            )
        });
        push_spans(&mut batch, resource_ident(attrs), spans)?;
    }
    Ok(batch)
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn decode_metrics_json(bytes: &[u8]) -> Result<TelemetryBatch, DecodeError> {
    require_object(bytes)?;
    let req: JMetricsRequest<'_> = serde_json::from_slice(bytes).map_err(json_error)?;
    let mut batch = TelemetryBatch::default();
    for rm in req.resource_metrics {
        let attrs = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes);
        let mut out = ResourceTelemetry {
            ident: resource_ident(attrs),
            ..Default::default()
        };
        let has_call_duration = rm
            .scope_metrics
            .iter()
            .flat_map(|sm| &sm.metrics)
            .any(|m| m.name == RPC_CALL_DURATION);
        for sm in rm.scope_metrics {
            let scope_hash = hash_str(sm.scope.as_ref().map_or("", |s| s.name.as_ref()));
            for m in sm.metrics {
                let Some(h) = m.histogram else { continue };
                let Some(hist) = duration_histogram(
                    &m.name,
                    &m.unit,
                    h.aggregation_temporality,
                    has_call_duration,
                )?
                else {
                    continue;
                };
                for dp in h.data_points {
                    let (attrs_hash, facts) = point_identity(&dp.attributes);
                    let series =
                        series_hash(out.ident.attrs_hash, scope_hash ^ hist.salt, attrs_hash);
                    out.points.extend(hist_point(
                        &hist,
                        series,
                        dp.start_time_unix_nano.0,
                        dp.time_unix_nano.0,
                        dp.count.0,
                        dp.explicit_bounds.into_iter().map(|b| b.0).collect(),
                        dp.bucket_counts.into_iter().map(|c| c.0).collect(),
                        facts.error(hist.kind, 0),
                    )?);
                }
            }
        }
        if !out.points.is_empty() {
            batch.resources.push(out);
        }
    }
    Ok(batch)
}

/// An attribute of either representation.
trait Kv {
    fn key(&self) -> &str;
    fn attr(&self) -> Attr<'_>;
}

impl Kv for JKeyValue<'_> {
    fn key(&self) -> &str {
        &self.key
    }
    fn attr(&self) -> Attr<'_> {
        json_attr(self)
    }
}

fn resource_ident<K: Kv>(attrs: &[K]) -> ResourceIdent {
    let mut ident = IdentBuilder::default();
    for kv in attrs {
        ident.push(kv.key(), kv.attr());
    }
    ident.finish()
}

/// What a span's attributes say about its request.
fn facts<K: Kv>(attrs: &[K]) -> Facts {
    let mut facts = Facts::default();
    for kv in attrs {
        facts.push(kv.key(), kv.attr());
    }
    facts
}

/// A data point's attributes: their order-independent hash, and what they
/// say about its requests.
fn point_identity<K: Kv>(attrs: &[K]) -> (u64, Facts) {
    let mut facts = Facts::default();
    let mut hash = 0u64;
    for kv in attrs {
        let v = kv.attr();
        hash = hash.wrapping_add(hash_kv(kv.key(), v));
        facts.push(kv.key(), v);
    }
    (hash, facts)
}

/// Adds the requests among `spans` — (kind, start, end, status code,
/// attributes) — as one resource's observations.
fn push_spans<'a, K: Kv + 'a>(
    batch: &mut TelemetryBatch,
    ident: ResourceIdent,
    spans: impl Iterator<Item = (i32, u64, u64, i32, &'a [K])>,
) -> Result<(), DecodeError> {
    let mut out = ResourceTelemetry {
        ident,
        ..Default::default()
    };
    for (span_kind, start, end, code, attrs) in spans {
        if !semconv::may_be_request(span_kind) {
            continue;
        }
        let facts = facts(attrs);
        let Some(kind) = facts.span_kind(span_kind) else {
            continue;
        };
        out.spans
            .extend(span_obs(start, end, facts.error(kind, code), kind)?);
    }
    if !out.spans.is_empty() {
        batch.resources.push(out);
    }
    Ok(())
}

/// A request-duration histogram being read: what its points are.
struct Histogram<'a> {
    name: &'a str,
    kind: RequestKind,
    unit_per_sec: f64,
    temporality: Temporality,
    /// Mixed into the scope's hash for its series' identity: the metric's
    /// name, so that two histograms of one scope never share a series (0
    /// for `http.server.request.duration`, whose series keep the identity
    /// they always had).
    salt: u64,
}

/// Whether a metric is a request-duration histogram rollbackd reads, and
/// if so what its points are. `has_call_duration`: the resource exports
/// `rpc.server.call.duration` (its older name is then skipped).
fn duration_histogram<'a>(
    name: &'a str,
    unit: &str,
    temporality_code: i32,
    has_call_duration: bool,
) -> Result<Option<Histogram<'a>>, DecodeError> {
    let Some((kind, conventional_unit)) = semconv::duration_metric(name) else {
        return Ok(None);
    };
    if name == RPC_DURATION && has_call_duration {
        return Ok(None);
    }
    let unit = if unit.is_empty() {
        conventional_unit
    } else {
        unit
    };
    let Some(unit_per_sec) = unit_per_sec(unit) else {
        return Ok(None);
    };
    Ok(Some(Histogram {
        name,
        kind,
        unit_per_sec,
        temporality: temporality(name, temporality_code)?,
        salt: if kind == RequestKind::Http {
            0
        } else {
            hash_str(name)
        },
    }))
}

// ---------------------------------------------------------------------------
// Shared reduction rules.

#[derive(Clone, Copy, Debug)]
enum Attr<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Double(f64),
    Other,
}

fn json_attr<'a>(kv: &'a JKeyValue<'_>) -> Attr<'a> {
    match &kv.value {
        Some(v) => {
            if let Some(s) = &v.string_value {
                Attr::Str(s)
            } else if let Some(i) = v.int_value {
                Attr::Int(i.0)
            } else if let Some(b) = v.bool_value {
                Attr::Bool(b)
            } else if let Some(d) = v.double_value {
                Attr::Double(d.0)
            } else {
                Attr::Other
            }
        }
        None => Attr::Other,
    }
}

fn status_code(v: Attr<'_>) -> Option<i64> {
    match v {
        Attr::Int(i) => Some(i),
        Attr::Str(s) => s.trim().parse().ok(),
        Attr::Double(d) if d.is_finite() => Some(d as i64),
        _ => None,
    }
}

fn attr_string(v: Attr<'_>) -> Option<String> {
    match v {
        Attr::Str(s) if !s.is_empty() => Some(s.to_string()),
        Attr::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

#[derive(Default)]
struct IdentBuilder {
    ident: ResourceIdent,
    legacy_environment: Option<String>,
}

impl IdentBuilder {
    fn push(&mut self, key: &str, v: Attr<'_>) {
        match key {
            "service.name" => self.ident.service = attr_string(v),
            "service.version" => self.ident.version = attr_string(v),
            "deployment.environment.name" => self.ident.environment = attr_string(v),
            "deployment.environment" => self.legacy_environment = attr_string(v),
            "deployment.id" => self.ident.deployment_id = attr_string(v),
            _ => {}
        }
        self.ident.attrs_hash = self.ident.attrs_hash.wrapping_add(hash_kv(key, v));
    }

    fn finish(mut self) -> ResourceIdent {
        if self.ident.environment.is_none() {
            self.ident.environment = self.legacy_environment;
        }
        self.ident
    }
}

fn nanos(v: u64, what: &str) -> Result<Timestamp, DecodeError> {
    Timestamp::from_unix_nanos(v)
        .ok_or_else(|| DecodeError::new(format!("{what} {v} is out of range")))
}

fn span_obs(
    start: u64,
    end: u64,
    error: bool,
    kind: RequestKind,
) -> Result<Option<SpanObs>, DecodeError> {
    if end == 0 {
        // A span without an end time never finished: no request to count.
        return Ok(None);
    }
    let end = nanos(end, "span endTimeUnixNano")?;
    let start = nanos(start, "span startTimeUnixNano")?;
    let latency_ns = if start.0 == 0 {
        0
    } else {
        (end.0 - start.0).max(0)
    };
    Ok(Some(SpanObs {
        end,
        latency_ns,
        error,
        kind,
    }))
}

fn unit_per_sec(unit: &str) -> Option<f64> {
    match unit {
        "s" => Some(1.0),
        "ms" => Some(1000.0),
        _ => None,
    }
}

fn temporality(name: &str, t: i32) -> Result<Temporality, DecodeError> {
    match t {
        TEMPORALITY_DELTA => Ok(Temporality::Delta),
        TEMPORALITY_CUMULATIVE => Ok(Temporality::Cumulative),
        other => Err(DecodeError::new(format!(
            "histogram {name}: aggregation temporality {other} is neither delta (1) nor cumulative (2)"
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn hist_point(
    hist: &Histogram<'_>,
    series: u64,
    start: u64,
    time: u64,
    count: u64,
    bounds: Vec<f64>,
    bucket_counts: Vec<u64>,
    error: bool,
) -> Result<Option<HistPoint>, DecodeError> {
    let name = hist.name;
    if time == 0 {
        return Ok(None);
    }
    if !bucket_counts.is_empty() && bucket_counts.len() != bounds.len() + 1 {
        return Err(DecodeError::new(format!(
            "histogram {name}: {} bucket counts for {} explicit bounds (want bounds + 1)",
            bucket_counts.len(),
            bounds.len()
        )));
    }
    if bounds
        .windows(2)
        .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
        || bounds.iter().any(|b| b.is_nan())
    {
        return Err(DecodeError::new(format!(
            "histogram {name}: explicit bounds must be strictly increasing"
        )));
    }
    Ok(Some(HistPoint {
        series,
        start: nanos(start, "data point startTimeUnixNano")?,
        time: nanos(time, "data point timeUnixNano")?,
        count,
        bounds,
        bucket_counts,
        unit_per_sec: hist.unit_per_sec,
        error,
        temporality: hist.temporality,
        kind: hist.kind,
    }))
}

fn json_error(e: serde_json::Error) -> DecodeError {
    DecodeError::new(format!("invalid OTLP/JSON export: {e}"))
}

fn require_object(bytes: &[u8]) -> Result<(), DecodeError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(DecodeError::new("OTLP/JSON export must be a JSON object")),
    }
}

// FNV-1a with a final avalanche, so that sums of per-attribute hashes (order
// independent) stay well spread.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn hash_str(s: &str) -> u64 {
    mix(fnv(FNV_OFFSET, s.as_bytes()))
}

fn hash_kv(key: &str, v: Attr<'_>) -> u64 {
    let h = fnv(FNV_OFFSET, key.as_bytes());
    let h = match v {
        Attr::Str(s) => fnv(fnv(h, b"\0s"), s.as_bytes()),
        Attr::Int(i) => fnv(fnv(h, b"\0i"), &i.to_le_bytes()),
        Attr::Bool(b) => fnv(h, if b { b"\0t" } else { b"\0f" }),
        Attr::Double(d) => fnv(fnv(h, b"\0d"), &d.to_bits().to_le_bytes()),
        Attr::Other => fnv(h, b"\0o"),
    };
    mix(h)
}

fn series_hash(resource: u64, scope: u64, point: u64) -> u64 {
    mix(resource ^ mix(scope.wrapping_add(0x9e37_79b9_7f4a_7c15)) ^ mix(point).rotate_left(17))
}

#[cfg(test)]
mod differential;
mod json;
mod proto;
#[cfg(any(test, feature = "otlp-reference"))]
pub mod reference;
mod semconv;
#[cfg(test)]
mod tests;
mod wire;

use json::*;
pub use proto::{decode_metrics_proto, decode_traces_proto};
