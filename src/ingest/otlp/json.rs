//! OTLP/JSON: only the fields the SLIs read, borrowed where they can be,
//! with the integer and double encodings OTLP/JSON allows.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JTraceRequest<'a> {
    #[serde(default, borrow)]
    pub(super) resource_spans: Vec<JResourceSpans<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JResourceSpans<'a> {
    #[serde(default, borrow)]
    pub(super) resource: Option<JResource<'a>>,
    #[serde(default, borrow)]
    pub(super) scope_spans: Vec<JScopeSpans<'a>>,
}

#[derive(Deserialize)]
pub(super) struct JResource<'a> {
    #[serde(default, borrow)]
    pub(super) attributes: Vec<JKeyValue<'a>>,
}

#[derive(Deserialize)]
pub(super) struct JScopeSpans<'a> {
    #[serde(default, borrow)]
    pub(super) spans: Vec<JSpan<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JSpan<'a> {
    #[serde(default)]
    pub(super) kind: i32,
    #[serde(default)]
    pub(super) start_time_unix_nano: JU64,
    #[serde(default)]
    pub(super) end_time_unix_nano: JU64,
    #[serde(default, borrow)]
    pub(super) attributes: Vec<JKeyValue<'a>>,
    #[serde(default)]
    pub(super) status: Option<JStatus>,
}

#[derive(Deserialize)]
pub(super) struct JStatus {
    #[serde(default)]
    pub(super) code: i32,
}

#[derive(Deserialize)]
pub(super) struct JKeyValue<'a> {
    #[serde(borrow)]
    pub(super) key: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) value: Option<JAnyValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JAnyValue<'a> {
    #[serde(default, borrow)]
    pub(super) string_value: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) int_value: Option<JI64>,
    #[serde(default)]
    pub(super) bool_value: Option<bool>,
    #[serde(default)]
    pub(super) double_value: Option<JF64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JMetricsRequest<'a> {
    #[serde(default, borrow)]
    pub(super) resource_metrics: Vec<JResourceMetrics<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JResourceMetrics<'a> {
    #[serde(default, borrow)]
    pub(super) resource: Option<JResource<'a>>,
    #[serde(default, borrow)]
    pub(super) scope_metrics: Vec<JScopeMetrics<'a>>,
}

#[derive(Deserialize)]
pub(super) struct JScope<'a> {
    #[serde(default, borrow)]
    pub(super) name: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(super) struct JScopeMetrics<'a> {
    #[serde(default, borrow)]
    pub(super) scope: Option<JScope<'a>>,
    #[serde(default, borrow)]
    pub(super) metrics: Vec<JMetric<'a>>,
}

#[derive(Deserialize)]
pub(super) struct JMetric<'a> {
    #[serde(default, borrow)]
    pub(super) name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) unit: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) histogram: Option<JHistogram<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JHistogram<'a> {
    #[serde(default, borrow)]
    pub(super) data_points: Vec<JHistPoint<'a>>,
    #[serde(default)]
    pub(super) aggregation_temporality: i32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JHistPoint<'a> {
    #[serde(default, borrow)]
    pub(super) attributes: Vec<JKeyValue<'a>>,
    #[serde(default)]
    pub(super) start_time_unix_nano: JU64,
    #[serde(default)]
    pub(super) time_unix_nano: JU64,
    #[serde(default)]
    pub(super) count: JU64,
    #[serde(default)]
    pub(super) bucket_counts: Vec<JU64>,
    #[serde(default)]
    pub(super) explicit_bounds: Vec<JF64>,
}

/// A uint64 in OTLP/JSON: a decimal string (the rule) or a number.
#[derive(Clone, Copy, Default)]
pub(super) struct JU64(pub(super) u64);

/// An int64 in OTLP/JSON: a decimal string (the rule) or a number.
#[derive(Clone, Copy, Default)]
pub(super) struct JI64(pub(super) i64);

/// A double in OTLP/JSON: a number, or "NaN" / "Infinity" / "-Infinity".
#[derive(Clone, Copy, Default)]
pub(super) struct JF64(pub(super) f64);

/// The deserializer of an OTLP/JSON integer (`JU64`, `JI64`): a decimal
/// string or a JSON number, in range.
macro_rules! json_integer {
    ($wrapper:ident, $int:ty, $what:literal) => {
        impl<'de> Deserialize<'de> for $wrapper {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $wrapper;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str(concat!("a ", $what, " as a string or number"))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$wrapper, E> {
                        <$int>::try_from(v)
                            .map($wrapper)
                            .map_err(|_| E::custom(format!("{v} is out of range for {}", $what)))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$wrapper, E> {
                        <$int>::try_from(v)
                            .map($wrapper)
                            .map_err(|_| E::custom(format!("{v} is out of range for {}", $what)))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$wrapper, E> {
                        v.parse()
                            .map($wrapper)
                            .map_err(|_| E::custom(format!("{v:?} is not {}", $what)))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

json_integer!(JU64, u64, "an unsigned 64-bit integer");
json_integer!(JI64, i64, "a 64-bit integer");

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
