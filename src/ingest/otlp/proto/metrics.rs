//! OTLP protobuf metrics, read in place: the points of request-duration
//! histograms. A point's series identity needs its resource's attributes
//! and its scope's name, and whether a histogram counts needs its name,
//! unit and temporality (and, for `rpc.server.duration`, whether the
//! resource exports `rpc.server.call.duration` too): each is read in a
//! first pass over its message, the points in a second.

use super::{attribute, resource};
use crate::ingest::otlp::semconv::Facts;
use crate::ingest::otlp::wire::Reader;
use crate::ingest::otlp::{
    duration_histogram, hash_kv, hash_str, hist_point, series_hash, Histogram, IdentBuilder,
    RPC_CALL_DURATION,
};
use crate::ingest::DecodeError;
use crate::model::{ResourceTelemetry, TelemetryBatch};

/// The `data` member of a `Metric` that is a `Histogram`.
const HISTOGRAM: u32 = 9;

/// A `ResourceMetrics`: the points of its request-duration histograms, as
/// one resource's observations.
pub(super) fn resource_metrics(
    batch: &mut TelemetryBatch,
    r: Reader<'_>,
) -> Result<(), DecodeError> {
    let mut ident = IdentBuilder::default();
    let mut has_call_duration = false;
    let mut first = r;
    while let Some((field, v)) = first.next()? {
        match field {
            1 => resource(
                &mut ident,
                first.nested(v.bytes("ResourceMetrics.resource")?),
            )?,
            2 => {
                let sm = first.nested(v.bytes("ResourceMetrics.scope_metrics")?);
                has_call_duration |= exports_call_duration(sm)?;
            }
            3 => drop(v.bytes("ResourceMetrics.schema_url")?),
            _ => {}
        }
    }
    let mut out = ResourceTelemetry {
        ident: ident.finish(),
        ..Default::default()
    };
    let mut second = r;
    while let Some((field, v)) = second.next()? {
        if field == 2 {
            let sm = second.nested(v.bytes("ResourceMetrics.scope_metrics")?);
            scope_metrics(&mut out, has_call_duration, sm)?;
        }
    }
    if !out.points.is_empty() {
        batch.resources.push(out);
    }
    Ok(())
}

/// Whether a `ScopeMetrics` has a metric named `rpc.server.call.duration`.
fn exports_call_duration(mut r: Reader<'_>) -> Result<bool, DecodeError> {
    let mut found = false;
    while let Some((field, v)) = r.next()? {
        match field {
            1 | 3 => drop(v.bytes("ScopeMetrics.scope or schema_url")?),
            2 => {
                let m = Metric::read(r.nested(v.bytes("ScopeMetrics.metrics")?))?;
                found |= m.name == RPC_CALL_DURATION;
            }
            _ => {}
        }
    }
    Ok(found)
}

/// A `ScopeMetrics`: the points of its request-duration histograms, into
/// `out`.
fn scope_metrics(
    out: &mut ResourceTelemetry,
    has_call_duration: bool,
    r: Reader<'_>,
) -> Result<(), DecodeError> {
    let mut scope_name = "";
    let mut first = r;
    while let Some((field, v)) = first.next()? {
        if field == 1 {
            scope_name_of(
                &mut scope_name,
                first.nested(v.bytes("ScopeMetrics.scope")?),
            )?;
        }
    }
    let scope_hash = hash_str(scope_name);
    let mut second = r;
    while let Some((field, v)) = second.next()? {
        if field != 2 {
            continue;
        }
        let m = second.nested(v.bytes("ScopeMetrics.metrics")?);
        let metric = Metric::read(m)?;
        let Some(from) = metric.histogram else {
            continue;
        };
        let Some(hist) = duration_histogram(
            metric.name,
            metric.unit,
            metric.temporality,
            has_call_duration,
        )?
        else {
            continue;
        };
        let scope = scope_hash ^ hist.salt;
        let mut occurrences = m.range(from, usize::MAX);
        while let Some((field, v)) = occurrences.next()? {
            if field == HISTOGRAM {
                let h = occurrences.nested(v.bytes("Metric.histogram")?);
                histogram_points(out, &hist, scope, h)?;
            }
        }
    }
    Ok(())
}

/// An `InstrumentationScope`: its name, merged into `name`.
fn scope_name_of<'a>(name: &mut &'a str, mut r: Reader<'a>) -> Result<(), DecodeError> {
    while let Some((field, v)) = r.next()? {
        match field {
            1 => *name = v.str("InstrumentationScope.name")?,
            2 | 3 => drop(v.bytes("InstrumentationScope.version or attributes")?),
            4 => drop(v.varint("InstrumentationScope.dropped_attributes_count")?),
            _ => {}
        }
    }
    Ok(())
}

/// What a `Metric` is, read without its points.
struct Metric<'a> {
    name: &'a str,
    unit: &'a str,
    /// When its `data` is a histogram: where in the metric the histogram's
    /// occurrences start (those before a later member of `data` do not
    /// count: a oneof keeps its last member).
    histogram: Option<usize>,
    /// The histogram's aggregation temporality (its last occurrence's).
    temporality: i32,
}

impl<'a> Metric<'a> {
    fn read(mut r: Reader<'a>) -> Result<Metric<'a>, DecodeError> {
        let mut m = Metric {
            name: "",
            unit: "",
            histogram: None,
            temporality: 0,
        };
        loop {
            let at = r.pos();
            let Some((field, v)) = r.next()? else { break };
            match field {
                1 => m.name = v.str("Metric.name")?,
                2 => drop(v.bytes("Metric.description")?),
                3 => m.unit = v.str("Metric.unit")?,
                HISTOGRAM => {
                    let h = r.nested(v.bytes("Metric.histogram")?);
                    if m.histogram.is_none() {
                        m.histogram = Some(at);
                        m.temporality = 0;
                    }
                    m.temporality = histogram_temporality(m.temporality, h)?;
                }
                5 | 7 | 10 | 11 => {
                    v.bytes("Metric.gauge, sum, exponential_histogram or summary")?;
                    m.histogram = None;
                }
                12 => drop(v.bytes("Metric.metadata")?),
                _ => {}
            }
        }
        Ok(m)
    }
}

/// A `Histogram`'s aggregation temporality, `merged` with the earlier
/// occurrences' (its data points are read later, if it counts).
fn histogram_temporality(merged: i32, mut r: Reader<'_>) -> Result<i32, DecodeError> {
    let mut temporality = merged;
    while let Some((field, v)) = r.next()? {
        match field {
            1 => drop(v.bytes("Histogram.data_points")?),
            2 => temporality = v.varint("Histogram.aggregation_temporality")? as i32,
            _ => {}
        }
    }
    Ok(temporality)
}

/// A `Histogram`'s data points, into `out`.
fn histogram_points(
    out: &mut ResourceTelemetry,
    hist: &Histogram<'_>,
    scope: u64,
    mut r: Reader<'_>,
) -> Result<(), DecodeError> {
    while let Some((field, v)) = r.next()? {
        if field == 1 {
            let p = r.nested(v.bytes("Histogram.data_points")?);
            point(out, hist, scope, p)?;
        }
    }
    Ok(())
}

/// A `HistogramDataPoint`, into `out`.
fn point(
    out: &mut ResourceTelemetry,
    hist: &Histogram<'_>,
    scope: u64,
    mut r: Reader<'_>,
) -> Result<(), DecodeError> {
    let (mut start, mut time, mut count) = (0u64, 0u64, 0u64);
    let mut bounds = Vec::new();
    let mut bucket_counts = Vec::new();
    let mut facts = Facts::default();
    let mut attrs_hash = 0u64;
    while let Some((field, v)) = r.next()? {
        match field {
            9 => {
                let (key, value) = attribute(r.nested(v.bytes("HistogramDataPoint.attributes")?))?;
                attrs_hash = attrs_hash.wrapping_add(hash_kv(key, value));
                facts.push(key, value);
            }
            2 => start = v.fixed64("HistogramDataPoint.start_time_unix_nano")?,
            3 => time = v.fixed64("HistogramDataPoint.time_unix_nano")?,
            4 => count = v.fixed64("HistogramDataPoint.count")?,
            5 | 11 | 12 => drop(v.fixed64("HistogramDataPoint.sum, min or max")?),
            6 => v.push_64(
                &mut bucket_counts,
                |c| c,
                "HistogramDataPoint.bucket_counts",
            )?,
            7 => v.push_64(
                &mut bounds,
                f64::from_bits,
                "HistogramDataPoint.explicit_bounds",
            )?,
            8 => drop(v.bytes("HistogramDataPoint.exemplars")?),
            10 => drop(v.varint("HistogramDataPoint.flags")?),
            _ => {}
        }
    }
    let series = series_hash(out.ident.attrs_hash, scope, attrs_hash);
    let error = facts.error(hist.kind, 0);
    out.points.extend(hist_point(
        hist,
        series,
        start,
        time,
        count,
        bounds,
        bucket_counts,
        error,
    )?);
    Ok(())
}
