//! What is a request, of which [`RequestKind`], and whether it failed, as
//! the OpenTelemetry semantic conventions describe HTTP servers, RPC
//! servers (with gRPC's status codes) and message consumers
//! (`docs/formats.md#what-counts-as-a-request`).

use super::{status_code, Attr};
use crate::model::RequestKind;

/// The metric of HTTP servers' request durations.
pub const HTTP_DURATION: &str = "http.server.request.duration";
/// The metric of RPC servers' call durations (unit `s`).
pub const RPC_CALL_DURATION: &str = "rpc.server.call.duration";
/// Its name before the RPC conventions were stable (unit `ms`): skipped
/// for a resource that exports [`RPC_CALL_DURATION`] too, as
/// instrumentations migrating between the two record every call in both.
pub const RPC_DURATION: &str = "rpc.server.duration";
/// The metric of consumers' message processing durations.
pub const MESSAGING_DURATION: &str = "messaging.process.duration";

const SPAN_KIND_SERVER: i32 = 2;
const SPAN_KIND_CONSUMER: i32 = 5;
const STATUS_CODE_ERROR: i32 = 2;

/// The gRPC status codes that are a server's failure: UNKNOWN,
/// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS. The
/// others (NOT_FOUND, INVALID_ARGUMENT, ...) answer a caller's mistake.
const GRPC_SERVER_ERRORS: [i64; 6] = [2, 4, 12, 13, 14, 15];

/// gRPC's status codes by name, as `rpc.response.status_code` carries them.
const GRPC_CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A request-duration histogram: its kind, and the unit its convention
/// gives it (used when a metric states none).
pub(super) fn duration_metric(name: &str) -> Option<(RequestKind, &'static str)> {
    match name {
        HTTP_DURATION => Some((RequestKind::Http, "s")),
        RPC_CALL_DURATION => Some((RequestKind::Rpc, "s")),
        RPC_DURATION => Some((RequestKind::Rpc, "ms")),
        MESSAGING_DURATION => Some((RequestKind::Messaging, "s")),
        _ => None,
    }
}

/// Whether a span of this kind can be a request at all (its attributes
/// are read only then).
pub(super) fn may_be_request(span_kind: i32) -> bool {
    span_kind == SPAN_KIND_SERVER || span_kind == SPAN_KIND_CONSUMER
}

/// What the attributes of a span or data point say about its request.
#[derive(Debug, Default)]
pub(super) struct Facts {
    http_status: Option<i64>,
    rpc: bool,
    grpc_code: Option<i64>,
    messaging: bool,
    error_type: bool,
    /// A messaging operation other than processing (`receive`, `settle`).
    not_processing: bool,
}

/// Whether [`Facts::push`] reads an attribute of this key (the others
/// leave the facts as they are, so that their values need not be decoded).
pub(super) fn reads(key: &[u8]) -> bool {
    match key.first() {
        Some(b'h') => key == b"http.response.status_code" || key == b"http.status_code",
        Some(b'r') => matches!(
            key,
            b"rpc.system"
                | b"rpc.system.name"
                | b"rpc.grpc.status_code"
                | b"rpc.response.status_code"
        ),
        Some(b'e') => key == b"error.type",
        Some(b'm') => key.starts_with(b"messaging."),
        _ => false,
    }
}

impl Facts {
    /// Notes one attribute (when a key repeats, the later value wins).
    /// Dispatched on the first byte: most attributes (`url.*`, `server.*`,
    /// `network.*`, ...) are none of these and pass with one test.
    pub(super) fn push(&mut self, key: &str, v: Attr<'_>) {
        match key.as_bytes().first() {
            Some(b'h') if key == "http.response.status_code" || key == "http.status_code" => {
                self.http_status = status_code(v).or(self.http_status);
            }
            Some(b'r') => match key {
                "rpc.system" | "rpc.system.name" => self.rpc = true,
                "rpc.grpc.status_code" => {
                    self.rpc = true;
                    self.grpc_code = status_code(v).or(self.grpc_code);
                }
                "rpc.response.status_code" => {
                    self.rpc = true;
                    self.grpc_code = grpc_code_name(v).or(self.grpc_code);
                }
                _ => {}
            },
            Some(b'e') if key == "error.type" => {
                self.error_type = matches!(v, Attr::Str(s) if !s.is_empty());
            }
            Some(b'm') if key.starts_with("messaging.") => {
                self.messaging = true;
                if key == "messaging.operation.type" || key == "messaging.operation" {
                    self.not_processing = !matches!(v, Attr::Str("process" | "deliver"));
                }
            }
            _ => {}
        }
    }

    /// The kind of request a span of `span_kind` with these attributes is:
    /// a SERVER span is an RPC when it has RPC attributes, else HTTP; a
    /// CONSUMER span with messaging attributes that processed a message is
    /// one; nothing else is a request.
    pub(super) fn span_kind(&self, span_kind: i32) -> Option<RequestKind> {
        match span_kind {
            SPAN_KIND_SERVER if self.rpc => Some(RequestKind::Rpc),
            SPAN_KIND_SERVER => Some(RequestKind::Http),
            SPAN_KIND_CONSUMER if self.messaging && !self.not_processing => {
                Some(RequestKind::Messaging)
            }
            _ => None,
        }
    }

    /// Whether a request of `kind` failed. `status` is a span's status
    /// code (0 for a data point).
    ///
    /// - HTTP: status ERROR, or an HTTP status code ≥ 500;
    /// - RPC: with a gRPC status code, whether it is a server's failure
    ///   (instrumentations older than that convention set status ERROR
    ///   for every code but OK); without one, status ERROR or `error.type`;
    /// - messaging: status ERROR or `error.type`.
    pub(super) fn error(&self, kind: RequestKind, status: i32) -> bool {
        let status_error = status == STATUS_CODE_ERROR;
        match kind {
            RequestKind::Http => status_error || self.http_status.is_some_and(|c| c >= 500),
            RequestKind::Rpc => match self.grpc_code {
                Some(code) => GRPC_SERVER_ERRORS.contains(&code),
                None => status_error || self.error_type,
            },
            RequestKind::Messaging => status_error || self.error_type,
        }
    }
}

/// A gRPC status code named as in `rpc.response.status_code` (any case),
/// or as its number.
fn grpc_code_name(v: Attr<'_>) -> Option<i64> {
    match v {
        Attr::Str(s) => GRPC_CODE_NAMES
            .iter()
            .position(|name| name.eq_ignore_ascii_case(s))
            .map(|i| i as i64)
            .or_else(|| s.trim().parse().ok().filter(|c| (0..=16).contains(c))),
        Attr::Int(i) if (0..=16).contains(&i) => Some(i),
        _ => None,
    }
}
