//! OTLP traces and metrics (CONTRACT §1.2) → request observations.
//!
//! Protobuf is decoded with `opentelemetry-proto`'s prost types. OTLP/JSON is
//! decoded with borrowed serde structs that read only the fields the SLIs
//! need (unknown fields, ids and names are skipped without being copied),
//! following OTLP/JSON's rules: lowerCamelCase keys, 64-bit integers as
//! strings (numbers are accepted too), enums as integers.
//!
//! What counts: SERVER spans (kind 2), error when `status.code` = 2 or the
//! HTTP status code ≥ 500; and `http.server.request.duration` histograms in
//! `s` or `ms`. Everything else in an export is ignored, not an error.

use std::borrow::Cow;
use std::fmt;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::DecodeError;
use crate::model::{
    HistPoint, ResourceIdent, ResourceTelemetry, SpanObs, TelemetryBatch, Temporality,
};
use crate::time::Timestamp;

/// The metric that carries request counts and latencies.
pub const DURATION_METRIC: &str = "http.server.request.duration";
const SPAN_KIND_SERVER: i32 = 2;
const STATUS_CODE_ERROR: i32 = 2;
const TEMPORALITY_DELTA: i32 = 1;
const TEMPORALITY_CUMULATIVE: i32 = 2;

/// Decodes a protobuf `ExportTraceServiceRequest`.
pub fn decode_traces_proto(bytes: &[u8]) -> Result<TelemetryBatch, DecodeError> {
    let req = ExportTraceServiceRequest::decode(bytes)?;
    let mut batch = TelemetryBatch::default();
    for rs in &req.resource_spans {
        let attrs = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes);
        let spans = rs.scope_spans.iter().flat_map(|ss| &ss.spans).map(|s| {
            let code = s.status.as_ref().map_or(0, |st| st.code);
            (
                s.kind,
                s.start_time_unix_nano,
                s.end_time_unix_nano,
                code,
                &s.attributes[..],
            )
        });
        push_spans(&mut batch, resource_ident(attrs), spans)?;
    }
    Ok(batch)
}

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

/// Decodes a protobuf `ExportMetricsServiceRequest`.
pub fn decode_metrics_proto(bytes: &[u8]) -> Result<TelemetryBatch, DecodeError> {
    let req = ExportMetricsServiceRequest::decode(bytes)?;
    let mut batch = TelemetryBatch::default();
    for rm in req.resource_metrics {
        let attrs = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes);
        let mut out = ResourceTelemetry {
            ident: resource_ident(attrs),
            ..Default::default()
        };
        for sm in rm.scope_metrics {
            let scope_hash = hash_str(sm.scope.as_ref().map_or("", |s| s.name.as_str()));
            for m in sm.metrics {
                let Some(metric::Data::Histogram(h)) = m.data else {
                    continue;
                };
                let Some((unit_per_sec, temporality)) =
                    duration_histogram(&m.name, &m.unit, h.aggregation_temporality)?
                else {
                    continue;
                };
                for dp in h.data_points {
                    let (attrs_hash, http_status) = point_identity(&dp.attributes);
                    let series = series_hash(out.ident.attrs_hash, scope_hash, attrs_hash);
                    out.points.extend(hist_point(
                        series,
                        dp.start_time_unix_nano,
                        dp.time_unix_nano,
                        dp.count,
                        dp.explicit_bounds,
                        dp.bucket_counts,
                        unit_per_sec,
                        http_status,
                        temporality,
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
        for sm in rm.scope_metrics {
            let scope_hash = hash_str(sm.scope.as_ref().map_or("", |s| s.name.as_ref()));
            for m in sm.metrics {
                let Some(h) = m.histogram else { continue };
                let Some((unit_per_sec, temporality)) =
                    duration_histogram(&m.name, &m.unit, h.aggregation_temporality)?
                else {
                    continue;
                };
                for dp in h.data_points {
                    let (attrs_hash, http_status) = point_identity(&dp.attributes);
                    let series = series_hash(out.ident.attrs_hash, scope_hash, attrs_hash);
                    out.points.extend(hist_point(
                        series,
                        dp.start_time_unix_nano.0,
                        dp.time_unix_nano.0,
                        dp.count.0,
                        dp.explicit_bounds.into_iter().map(|b| b.0).collect(),
                        dp.bucket_counts.into_iter().map(|c| c.0).collect(),
                        unit_per_sec,
                        http_status,
                        temporality,
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

impl Kv for KeyValue {
    fn key(&self) -> &str {
        &self.key
    }
    fn attr(&self) -> Attr<'_> {
        proto_attr(self)
    }
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

fn http_status<K: Kv>(attrs: &[K]) -> Option<i64> {
    attrs
        .iter()
        .filter(|kv| is_status_key(kv.key()))
        .fold(None, |found, kv| status_code(kv.attr()).or(found))
}

/// A data point's attributes: their order-independent hash, and the HTTP
/// status code among them.
fn point_identity<K: Kv>(attrs: &[K]) -> (u64, Option<i64>) {
    let hash = attrs
        .iter()
        .fold(0u64, |h, kv| h.wrapping_add(hash_kv(kv.key(), kv.attr())));
    (hash, http_status(attrs))
}

/// Adds the SERVER spans among `spans` — (kind, start, end, status code,
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
    for (kind, start, end, code, attrs) in spans {
        if kind != SPAN_KIND_SERVER {
            continue;
        }
        out.spans
            .extend(span_obs(start, end, code, http_status(attrs))?);
    }
    if !out.spans.is_empty() {
        batch.resources.push(out);
    }
    Ok(())
}

/// Whether a metric is the request-duration histogram rollbackd reads, and
/// if so its unit scale and temporality.
fn duration_histogram(
    name: &str,
    unit: &str,
    temporality_code: i32,
) -> Result<Option<(f64, Temporality)>, DecodeError> {
    if name != DURATION_METRIC {
        return Ok(None);
    }
    let Some(unit_per_sec) = unit_per_sec(unit) else {
        return Ok(None);
    };
    Ok(Some((unit_per_sec, temporality(temporality_code)?)))
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

fn proto_attr(kv: &KeyValue) -> Attr<'_> {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Attr::Str(s),
        Some(any_value::Value::IntValue(i)) => Attr::Int(*i),
        Some(any_value::Value::BoolValue(b)) => Attr::Bool(*b),
        Some(any_value::Value::DoubleValue(d)) => Attr::Double(*d),
        _ => Attr::Other,
    }
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

fn is_status_key(key: &str) -> bool {
    key == "http.response.status_code" || key == "http.status_code"
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
    status: i32,
    http_status: Option<i64>,
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
        error: status == STATUS_CODE_ERROR || http_status.is_some_and(|c| c >= 500),
    }))
}

fn unit_per_sec(unit: &str) -> Option<f64> {
    match unit {
        "s" | "" => Some(1.0),
        "ms" => Some(1000.0),
        _ => None,
    }
}

fn temporality(t: i32) -> Result<Temporality, DecodeError> {
    match t {
        TEMPORALITY_DELTA => Ok(Temporality::Delta),
        TEMPORALITY_CUMULATIVE => Ok(Temporality::Cumulative),
        other => Err(DecodeError::new(format!(
            "histogram {DURATION_METRIC}: aggregation temporality {other} is neither delta (1) nor cumulative (2)"
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn hist_point(
    series: u64,
    start: u64,
    time: u64,
    count: u64,
    bounds: Vec<f64>,
    bucket_counts: Vec<u64>,
    unit_per_sec: f64,
    http_status: Option<i64>,
    temporality: Temporality,
) -> Result<Option<HistPoint>, DecodeError> {
    if time == 0 {
        return Ok(None);
    }
    if !bucket_counts.is_empty() && bucket_counts.len() != bounds.len() + 1 {
        return Err(DecodeError::new(format!(
            "histogram {DURATION_METRIC}: {} bucket counts for {} explicit bounds (want bounds + 1)",
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
            "histogram {DURATION_METRIC}: explicit bounds must be strictly increasing"
        )));
    }
    Ok(Some(HistPoint {
        series,
        start: nanos(start, "data point startTimeUnixNano")?,
        time: nanos(time, "data point timeUnixNano")?,
        count,
        bounds,
        bucket_counts,
        unit_per_sec,
        error: http_status.is_some_and(|c| c >= 500),
        temporality,
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

// ---------------------------------------------------------------------------
// OTLP/JSON: only the fields the SLIs read.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JTraceRequest<'a> {
    #[serde(default, borrow)]
    resource_spans: Vec<JResourceSpans<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JResourceSpans<'a> {
    #[serde(default, borrow)]
    resource: Option<JResource<'a>>,
    #[serde(default, borrow)]
    scope_spans: Vec<JScopeSpans<'a>>,
}

#[derive(Deserialize)]
struct JResource<'a> {
    #[serde(default, borrow)]
    attributes: Vec<JKeyValue<'a>>,
}

#[derive(Deserialize)]
struct JScopeSpans<'a> {
    #[serde(default, borrow)]
    spans: Vec<JSpan<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JSpan<'a> {
    #[serde(default)]
    kind: i32,
    #[serde(default)]
    start_time_unix_nano: JU64,
    #[serde(default)]
    end_time_unix_nano: JU64,
    #[serde(default, borrow)]
    attributes: Vec<JKeyValue<'a>>,
    #[serde(default)]
    status: Option<JStatus>,
}

#[derive(Deserialize)]
struct JStatus {
    #[serde(default)]
    code: i32,
}

#[derive(Deserialize)]
struct JKeyValue<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(default, borrow)]
    value: Option<JAnyValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JAnyValue<'a> {
    #[serde(default, borrow)]
    string_value: Option<Cow<'a, str>>,
    #[serde(default)]
    int_value: Option<JI64>,
    #[serde(default)]
    bool_value: Option<bool>,
    #[serde(default)]
    double_value: Option<JF64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JMetricsRequest<'a> {
    #[serde(default, borrow)]
    resource_metrics: Vec<JResourceMetrics<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JResourceMetrics<'a> {
    #[serde(default, borrow)]
    resource: Option<JResource<'a>>,
    #[serde(default, borrow)]
    scope_metrics: Vec<JScopeMetrics<'a>>,
}

#[derive(Deserialize)]
struct JScope<'a> {
    #[serde(default, borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
struct JScopeMetrics<'a> {
    #[serde(default, borrow)]
    scope: Option<JScope<'a>>,
    #[serde(default, borrow)]
    metrics: Vec<JMetric<'a>>,
}

#[derive(Deserialize)]
struct JMetric<'a> {
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    unit: Cow<'a, str>,
    #[serde(default, borrow)]
    histogram: Option<JHistogram<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JHistogram<'a> {
    #[serde(default, borrow)]
    data_points: Vec<JHistPoint<'a>>,
    #[serde(default)]
    aggregation_temporality: i32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JHistPoint<'a> {
    #[serde(default, borrow)]
    attributes: Vec<JKeyValue<'a>>,
    #[serde(default)]
    start_time_unix_nano: JU64,
    #[serde(default)]
    time_unix_nano: JU64,
    #[serde(default)]
    count: JU64,
    #[serde(default)]
    bucket_counts: Vec<JU64>,
    #[serde(default)]
    explicit_bounds: Vec<JF64>,
}

/// A uint64 in OTLP/JSON: a decimal string (the rule) or a number.
#[derive(Clone, Copy, Default)]
struct JU64(u64);

/// An int64 in OTLP/JSON: a decimal string (the rule) or a number.
#[derive(Clone, Copy, Default)]
struct JI64(i64);

/// A double in OTLP/JSON: a number, or "NaN" / "Infinity" / "-Infinity".
#[derive(Clone, Copy, Default)]
struct JF64(f64);

impl<'de> Deserialize<'de> for JU64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JU64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an unsigned 64-bit integer as a string or number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JU64, E> {
                Ok(JU64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JU64, E> {
                u64::try_from(v)
                    .map(JU64)
                    .map_err(|_| E::custom(format!("negative value {v} for an unsigned integer")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JU64, E> {
                v.parse()
                    .map(JU64)
                    .map_err(|_| E::custom(format!("{v:?} is not an unsigned 64-bit integer")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for JI64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JI64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a 64-bit integer as a string or number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JI64, E> {
                i64::try_from(v)
                    .map(JI64)
                    .map_err(|_| E::custom(format!("{v} is out of range for int64")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JI64, E> {
                Ok(JI64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JI64, E> {
                v.parse()
                    .map(JI64)
                    .map_err(|_| E::custom(format!("{v:?} is not a 64-bit integer")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for JF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JF64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a double")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JF64, E> {
                Ok(JF64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JF64, E> {
                Ok(JF64(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JF64, E> {
                Ok(JF64(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JF64, E> {
                match v {
                    "NaN" => Ok(JF64(f64::NAN)),
                    "Infinity" => Ok(JF64(f64::INFINITY)),
                    "-Infinity" => Ok(JF64(f64::NEG_INFINITY)),
                    _ => v
                        .parse()
                        .map(JF64)
                        .map_err(|_| E::custom(format!("{v:?} is not a double"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1 as pm;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1 as pt;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn resource() -> Option<Resource> {
        Some(Resource {
            attributes: vec![
                kv("service.name", s("checkout")),
                kv("service.version", s("v2")),
                kv("deployment.environment", s("legacy")),
                kv("deployment.environment.name", s("prod")),
            ],
            ..Default::default()
        })
    }

    fn span(kind: i32, code: i32, http: Option<KeyValue>) -> pt::Span {
        pt::Span {
            kind,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_250_000_000,
            attributes: http.into_iter().collect(),
            status: Some(pt::Status {
                code,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn proto_spans_follow_the_contract() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![pt::ResourceSpans {
                resource: resource(),
                scope_spans: vec![pt::ScopeSpans {
                    spans: vec![
                        span(2, 0, None),
                        span(2, 2, None),
                        span(
                            2,
                            0,
                            Some(kv(
                                "http.response.status_code",
                                any_value::Value::IntValue(503),
                            )),
                        ),
                        span(
                            2,
                            0,
                            Some(kv("http.status_code", any_value::Value::IntValue(500))),
                        ),
                        span(
                            2,
                            0,
                            Some(kv(
                                "http.response.status_code",
                                any_value::Value::IntValue(404),
                            )),
                        ),
                        span(3, 2, None), // CLIENT: not a request
                        span(1, 2, None), // INTERNAL
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let batch = decode_traces_proto(&req.encode_to_vec()).unwrap();
        assert_eq!(batch.resources.len(), 1);
        let r = &batch.resources[0];
        assert_eq!(r.ident.service.as_deref(), Some("checkout"));
        assert_eq!(r.ident.environment.as_deref(), Some("prod"));
        let errors: Vec<bool> = r.spans.iter().map(|s| s.error).collect();
        assert_eq!(errors, vec![false, true, true, true, false]);
        assert_eq!(r.spans[0].latency_ns, 250_000_000);
        assert_eq!(r.spans[0].end, Timestamp(1_250_000_000));
    }

    const JSON_SPANS: &str = r#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"checkout"}},
        {"key":"service.version","value":{"stringValue":"v2"}},
        {"key":"deployment.id","value":{"stringValue":"d-1"}}]},
      "scopeSpans":[{"scope":{"name":"x"},"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,
         "startTimeUnixNano":"1000000000","endTimeUnixNano":"1600000000",
         "attributes":[{"key":"http.response.status_code","value":{"intValue":"500"}}],"status":{}},
        {"kind":2,"startTimeUnixNano":1000000000,"endTimeUnixNano":1100000000,"status":{"code":0}},
        {"kind":3,"startTimeUnixNano":"1","endTimeUnixNano":"2","status":{"code":2}}]}]}]}"#;

    #[test]
    fn json_spans_follow_the_contract() {
        let batch = decode_traces_json(JSON_SPANS.as_bytes()).unwrap();
        let r = &batch.resources[0];
        assert_eq!(r.ident.deployment_id.as_deref(), Some("d-1"));
        assert_eq!(r.spans.len(), 2);
        assert!(r.spans[0].error);
        assert_eq!(r.spans[0].latency_ns, 600_000_000);
        assert!(!r.spans[1].error);
    }

    #[test]
    fn json_rejects_what_otlp_json_forbids() {
        for bad in [
            r#"{"resourceSpans":"not-a-list"}"#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SERVER"}]}]}]}"#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":2,"endTimeUnixNano":"soon"}]}]}]}"#,
            r#"[]"#,
            r#"{"resourceSpans":[{"#,
            "",
        ] {
            assert!(decode_traces_json(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(decode_traces_json(b"{}").unwrap().resources.is_empty());
    }

    fn hist_metric(
        unit: &str,
        temporality: i32,
        bounds: Vec<f64>,
        counts: Vec<u64>,
    ) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![pm::ResourceMetrics {
                resource: resource(),
                scope_metrics: vec![pm::ScopeMetrics {
                    metrics: vec![
                        pm::Metric {
                            name: DURATION_METRIC.into(),
                            unit: unit.into(),
                            data: Some(metric::Data::Histogram(pm::Histogram {
                                aggregation_temporality: temporality,
                                data_points: vec![pm::HistogramDataPoint {
                                    attributes: vec![kv(
                                        "http.response.status_code",
                                        any_value::Value::IntValue(503),
                                    )],
                                    start_time_unix_nano: 5,
                                    time_unix_nano: 10,
                                    count: counts.iter().sum(),
                                    bucket_counts: counts,
                                    explicit_bounds: bounds,
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        },
                        pm::Metric {
                            name: "http.client.request.duration".into(),
                            unit: "s".into(),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn proto_histograms_follow_the_contract() {
        let req = hist_metric("ms", 2, vec![100.0, 500.0], vec![1, 2, 3]);
        let batch = decode_metrics_proto(&req.encode_to_vec()).unwrap();
        let p = &batch.resources[0].points[0];
        assert_eq!(p.count, 6);
        assert!(p.error);
        assert_eq!(p.temporality, Temporality::Cumulative);
        assert_eq!(p.slow_count(0.5), 3);
        // other units are not request durations we understand: skipped
        let req = hist_metric("min", 2, vec![1.0], vec![1, 2]);
        assert!(decode_metrics_proto(&req.encode_to_vec())
            .unwrap()
            .resources
            .is_empty());
        // structural errors reject the export
        for bad in [
            hist_metric("s", 0, vec![1.0], vec![1, 2]),
            hist_metric("s", 1, vec![1.0], vec![1, 2, 3]),
            hist_metric("s", 1, vec![2.0, 1.0], vec![1, 2, 3]),
        ] {
            assert!(decode_metrics_proto(&bad.encode_to_vec()).is_err());
        }
    }

    #[test]
    fn json_histograms_match_proto_series() {
        let json = r#"{"resourceMetrics":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"checkout"}},
            {"key":"service.version","value":{"stringValue":"v2"}}]},
          "scopeMetrics":[{"scope":{"name":"gen"},"metrics":[{"name":"http.server.request.duration","unit":"s",
            "histogram":{"aggregationTemporality":1,"dataPoints":[
              {"attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}],
               "startTimeUnixNano":"5","timeUnixNano":"10","count":"6","sum":1.5,
               "bucketCounts":["1","2","3"],"explicitBounds":[0.1,0.5]},
              {"attributes":[{"key":"http.response.status_code","value":{"intValue":"500"}}],
               "startTimeUnixNano":"5","timeUnixNano":"10","count":"1","bucketCounts":["1","0","0"],"explicitBounds":[0.1,0.5]}]}},
            {"name":"other","sum":{"dataPoints":[]}}]}]}]}"#;
        let batch = decode_metrics_json(json.as_bytes()).unwrap();
        let pts = &batch.resources[0].points;
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].temporality, Temporality::Delta);
        assert!(!pts[0].error && pts[1].error);
        assert_ne!(pts[0].series, pts[1].series);
        assert_eq!(pts[0].slow_count(0.5), 3);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7u64;
        let base = JSON_SPANS.as_bytes().to_vec();
        for _ in 0..2000 {
            let mut b = base.clone();
            for _ in 0..4 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (seed >> 33) as usize % b.len();
                b[i] = (seed >> 13) as u8;
            }
            let _ = decode_traces_json(&b);
            let _ = decode_metrics_json(&b);
            let _ = decode_traces_proto(&b);
            let _ = decode_metrics_proto(&b);
        }
    }
}
