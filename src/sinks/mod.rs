//! Where outputs go besides their topics: `[audit] path`, an append-only
//! JSONL file of every audit record, and `[[notify]]`, the notifications
//! people get. (Commands and audit records go to Kafka, or commands to
//! stdout, through the runtime's emitter: `crate::runtime::emit`.)

pub mod audit_file;
pub mod notify;
