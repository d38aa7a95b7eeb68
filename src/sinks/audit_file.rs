//! `[audit] path`: audit records appended as JSON lines.

use tracing::error;

use crate::model::AuditRecord;

/// `[audit] path`: audit records appended as JSON lines, as well.
pub struct AuditFile(std::io::BufWriter<std::fs::File>);

impl AuditFile {
    pub fn open(path: &str) -> std::io::Result<AuditFile> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AuditFile(std::io::BufWriter::new(f)))
    }

    pub fn write(&mut self, a: &AuditRecord) {
        use std::io::Write;
        let ok = serde_json::to_writer(&mut self.0, a).is_ok()
            && self.0.write_all(b"\n").is_ok()
            && self.0.flush().is_ok();
        if !ok {
            error!("writing the audit file failed");
        }
    }
}
