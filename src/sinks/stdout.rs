//! The sink without Kafka.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{error, info};

use super::audit_file::AuditFile;
use super::{CommandOut, Outgoing, Publisher, PublisherState, QUEUE};
use crate::time::Timestamp;

/// The publisher without Kafka: commands as JSON lines on stdout (flushed
/// one by one: someone may be piping them to an executor), audit records
/// to the audit file if there is one. Dead letters have nowhere to go: the
/// HTTP caller already got a 400 with the reason.
pub fn spawn(
    rt: &tokio::runtime::Handle,
    audit_file: Option<AuditFile>,
) -> (Publisher, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(QUEUE);
    let state = Arc::new(PublisherState {
        claim_slot: Arc::new(AtomicI64::new(0)),
        ..Default::default()
    });
    let st = state.clone();
    let mut audit_file = audit_file;
    let task = rt.spawn(async move {
        use std::io::Write;
        while let Some(o) = rx.recv().await {
            match o {
                Outgoing::Command(out) => {
                    let CommandOut {
                        command: mut c,
                        consumed_at,
                        audits,
                    } = *out;
                    c.issued_at = Timestamp::now_wall();
                    let written = serde_json::to_vec(&c).ok().is_some_and(|line| {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&line).is_ok()
                            && out.write_all(b"\n").is_ok()
                            && out.flush().is_ok()
                    });
                    st.pending_commands.remove(&c.command_id);
                    if written {
                        st.commands_acked.fetch_add(1, Ordering::Relaxed);
                        info!(command_id = %c.command_id, deploy_id = %c.deploy_id, action = c.action.as_str(), trigger = c.trigger.as_str(), decision_latency_us = consumed_at.map(|t| t.elapsed().as_micros() as u64), "command written to stdout");
                        st.emitted(&c, &audits);
                        if let Some(f) = audit_file.as_mut() {
                            for a in &audits {
                                f.write(a);
                            }
                        }
                    } else {
                        st.delivery_failures.fetch_add(1, Ordering::Relaxed);
                        error!(command_id = %c.command_id, "writing a command to stdout failed");
                    }
                }
                Outgoing::Audit(a) => {
                    if let Some(f) = audit_file.as_mut() {
                        f.write(&a);
                    }
                }
                Outgoing::DeadLetter { .. } => {}
            }
        }
    });
    (Publisher { tx, state }, task)
}
