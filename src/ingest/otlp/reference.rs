//! The reference the protobuf decoder is checked and measured against:
//! `opentelemetry-proto`'s prost types decode the whole export (every
//! attribute, name, id and event allocated), which the same rules then
//! reduce. Built for the tests, the benches and the fuzz targets only
//! (`cfg(test)` or the `otlp-reference` feature); rollbackd itself reads
//! protobuf in place ([`super::decode_traces_proto`]).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message;

use super::*;

/// Decodes a protobuf `ExportTraceServiceRequest`.
pub fn decode_traces(bytes: &[u8]) -> Result<TelemetryBatch, DecodeError> {
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

/// Decodes a protobuf `ExportMetricsServiceRequest`.
pub fn decode_metrics(bytes: &[u8]) -> Result<TelemetryBatch, DecodeError> {
    let req = ExportMetricsServiceRequest::decode(bytes)?;
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
            let scope_hash = hash_str(sm.scope.as_ref().map_or("", |s| s.name.as_str()));
            for m in sm.metrics {
                let Some(metric::Data::Histogram(h)) = m.data else {
                    continue;
                };
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
                        dp.start_time_unix_nano,
                        dp.time_unix_nano,
                        dp.count,
                        dp.explicit_bounds,
                        dp.bucket_counts,
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

impl Kv for KeyValue {
    fn key(&self) -> &str {
        &self.key
    }
    fn attr(&self) -> Attr<'_> {
        proto_attr(self)
    }
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
