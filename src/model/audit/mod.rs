//! Audit records (`docs/formats.md#audit-records`): one typed event per thing rollbackd does
//! or refuses to do, and the one type that both writes and reads
//! `rollbackd.audit/v1` —
//! `{"schema","at","kind","deploy_id"?,"service"?,"detail"}`.
//!
//! [`AuditRecord`] serializes to a record's JSON, and
//! `serde_json::from_slice::<AuditRecord>` reads one back; serializing what
//! was read gives the same bytes, so the audit topic, the audit file and
//! `GET /v1/audit` carry one layout whoever wrote the record. Every reader
//! (summaries, the status page, the replay report, notifications, `tail`)
//! matches on the variants, never on the text.
//!
//! The keys of every `detail` object are in sorted order, at every depth:
//! the layout v1 has always had. The detail types declare their fields in
//! that order; where a layout is not one plain struct (a key that is there
//! for one variant only, a constant, a value worked out from another) the
//! type writes its keys by hand, in the same order, and reads through a
//! flat private struct.
//!
//! Reading is lenient where a newer version may differ and strict
//! elsewhere: a record of a `kind` this version does not know reads as
//! [`AuditEvent::Other`] with its detail kept as JSON (so a reader of the
//! topic never stops on a newer record; written again, that detail's keys
//! come out sorted), and keys a newer version adds to a known kind are
//! ignored. A known kind missing a key it always has, or a record of
//! another schema, does not read.
//!
//! - [`deploy`]: what became of deploy events and deploys (`deploy`);
//! - [`decision`]: decisions, suppressions and commands (`decision`,
//!   `suppressed`, `command`);
//! - [`operations`]: alerts, results, the breaker, pauses, maintenance
//!   windows, admin calls,
//!   malformed inputs, ownership, notifications, late data;
//! - [`verification`]: how a rollback turned out (`verification`);
//! - `wire`: the serde helpers these layouts share.

pub mod decision;
pub mod deploy;
pub mod operations;
pub mod verification;
mod wire;

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::time::Timestamp;

pub use decision::{
    CommandAudit, DecisionAudit, SuppressedAudit, Suppression, SuppressionReason, Verdict,
};
pub use deploy::{DeployAudit, FastTrack};
pub use operations::{
    AdminAudit, AlertAudit, AlertOutcome, BreakerAudit, LateDataAudit, MaintenanceAudit,
    MaintenanceState, MalformedAudit, NotificationAudit, NotificationOutcome, OwnerAudit,
    OwnerChange, PauseAudit, ResultAudit,
};
pub use verification::{Ratio, VerificationAudit, VerificationOutcome};

/// The schema tag of every audit record.
pub const AUDIT_SCHEMA: &str = "rollbackd.audit/v1";

/// One audit record: when, for which deploy and service (when there is
/// one), and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub deploy_id: Option<String>,
    pub service: Option<String>,
    pub event: AuditEvent,
}

impl AuditRecord {
    pub fn new(at: Timestamp, event: impl Into<AuditEvent>) -> AuditRecord {
        AuditRecord {
            at,
            deploy_id: None,
            service: None,
            event: event.into(),
        }
    }

    pub fn for_deploy(mut self, deploy_id: &str, service: &str) -> AuditRecord {
        self.deploy_id = Some(deploy_id.into());
        self.service = Some(service.into());
        self
    }

    /// The `kind` field.
    pub fn kind(&self) -> &str {
        self.event.kind()
    }

    /// The `detail` field as JSON, for a reader that shows it whole.
    pub fn detail(&self) -> Value {
        serde_json::to_value(Detail(&self.event)).unwrap_or_default()
    }
}

impl Serialize for AuditRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("schema", AUDIT_SCHEMA)?;
        m.serialize_entry("at", &self.at)?;
        m.serialize_entry("kind", self.kind())?;
        if let Some(d) = &self.deploy_id {
            m.serialize_entry("deploy_id", d)?;
        }
        if let Some(svc) = &self.service {
            m.serialize_entry("service", svc)?;
        }
        m.serialize_entry("detail", &Detail(&self.event))?;
        m.end()
    }
}

/// A record as it is on the wire, before its detail is read by its kind.
#[derive(Deserialize)]
struct RecordWire {
    schema: String,
    at: Timestamp,
    kind: String,
    deploy_id: Option<String>,
    service: Option<String>,
    detail: Value,
}

impl<'de> Deserialize<'de> for AuditRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = RecordWire::deserialize(d)?;
        if w.schema != AUDIT_SCHEMA {
            return Err(D::Error::custom(format!(
                "audit record schema {:?}, want {AUDIT_SCHEMA:?}",
                w.schema
            )));
        }
        Ok(AuditRecord {
            at: w.at,
            deploy_id: w.deploy_id,
            service: w.service,
            event: AuditEvent::read(w.kind, w.detail).map_err(D::Error::custom)?,
        })
    }
}

/// A kind this version does not know, from a newer one: its detail as it
/// was read.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherAudit {
    pub kind: String,
    pub detail: Value,
}

/// An event's detail alone: the `detail` field of its record.
struct Detail<'a>(&'a AuditEvent);

/// Declares [`AuditEvent`] — one variant per known `kind` and
/// [`AuditEvent::Other`] — with its `kind` names, how its detail is
/// written and read, and a `From` for each detail type: the list of kinds
/// is written once.
macro_rules! audit_kinds {
    ($($(#[$doc:meta])* $variant:ident($t:ty) = $kind:literal,)*) => {
        /// What an audit record is about: one variant per `kind`.
        #[derive(Debug, Clone, PartialEq)]
        pub enum AuditEvent {
            $($(#[$doc])* $variant($t),)*
            /// A kind this version does not know (see the module's doc).
            Other(OtherAudit),
        }

        impl AuditEvent {
            /// Every `kind` this version writes.
            pub const KINDS: &'static [&'static str] = &[$($kind),*];

            /// The `kind` field.
            pub fn kind(&self) -> &str {
                match self {
                    $(AuditEvent::$variant(_) => $kind,)*
                    AuditEvent::Other(o) => &o.kind,
                }
            }

            /// The event of a record of `kind` with `detail`.
            fn read(kind: String, detail: Value) -> Result<AuditEvent, String> {
                let invalid = |e: serde_json::Error| format!("invalid {kind} audit detail: {e}");
                Ok(match kind.as_str() {
                    $($kind => AuditEvent::$variant(serde_json::from_value(detail).map_err(invalid)?),)*
                    _ => AuditEvent::Other(OtherAudit { kind, detail }),
                })
            }
        }

        impl Serialize for Detail<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.0 {
                    $(AuditEvent::$variant(d) => d.serialize(s),)*
                    AuditEvent::Other(o) => o.detail.serialize(s),
                }
            }
        }

        $(impl From<$t> for AuditEvent {
            fn from(x: $t) -> AuditEvent {
                AuditEvent::$variant(x)
            }
        })*
    };
}

audit_kinds! {
    Deploy(DeployAudit) = "deploy",
    Decision(DecisionAudit) = "decision",
    Suppressed(SuppressedAudit) = "suppressed",
    Command(CommandAudit) = "command",
    Alert(AlertAudit) = "alert",
    Result(ResultAudit) = "result",
    Breaker(BreakerAudit) = "breaker",
    Pause(PauseAudit) = "pause",
    Admin(AdminAudit) = "admin",
    Malformed(MalformedAudit) = "malformed",
    Owner(OwnerAudit) = "owner",
    Verification(VerificationAudit) = "verification",
    Notification(NotificationAudit) = "notification",
    LateData(LateDataAudit) = "late_data",
    Maintenance(MaintenanceAudit) = "maintenance",
}

/// On its own an event is `{"kind","detail"}`, the two fields of a record
/// it decides.
impl Serialize for AuditEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("kind", self.kind())?;
        m.serialize_entry("detail", &Detail(self))?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for AuditEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct EventWire {
            kind: String,
            detail: Value,
        }
        let w = EventWire::deserialize(d)?;
        AuditEvent::read(w.kind, w.detail).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests;
