//! OTLP building blocks shared by the benches.

#![allow(dead_code)]

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub fn kv_s(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

pub fn kv_i(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

/// Resource attributes as an SDK plus the Collector's k8s processor set them.
pub fn resource(service: &str, version: &str) -> Resource {
    Resource {
        attributes: vec![
            kv_s("service.name", service),
            kv_s("service.version", version),
            kv_s("deployment.environment.name", "prod"),
            kv_s("telemetry.sdk.name", "opentelemetry"),
            kv_s("telemetry.sdk.language", "go"),
            kv_s("telemetry.sdk.version", "1.38.0"),
            kv_s("k8s.namespace.name", "shop"),
            kv_s("k8s.pod.name", "checkout-7d9f8b6c5-x2x9q"),
            kv_s("k8s.node.name", "ip-10-0-12-34.ec2.internal"),
            kv_s("host.name", "checkout-7d9f8b6c5-x2x9q"),
        ],
        ..Default::default()
    }
}

/// The explicit bounds the semantic conventions advise for
/// `http.server.request.duration`.
pub const BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
