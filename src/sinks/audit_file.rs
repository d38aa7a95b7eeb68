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

/// The command ids with a `result` record in the audit file at `path`
/// (none if it does not exist yet). A line that is not a record — the
/// last one, cut short by a crash — is passed over.
pub fn results_in(path: &str) -> std::io::Result<std::collections::HashSet<String>> {
    use std::io::BufRead;
    #[derive(serde::Deserialize)]
    struct Line {
        kind: String,
        detail: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        command_id: Option<String>,
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let mut done = std::collections::HashSet::new();
    for line in std::io::BufReader::new(file).lines() {
        if let Ok(Line {
            kind,
            detail: Detail {
                command_id: Some(id),
            },
        }) = serde_json::from_str(&line?)
        {
            if kind == "result" {
                done.insert(id);
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_results_are_the_command_ids_of_result_records() {
        let dir = std::env::temp_dir().join(format!("rollbackd-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let path = path.to_str().unwrap();
        assert!(super::results_in(path).unwrap().is_empty());
        std::fs::write(
            path,
            concat!(
                r#"{"kind":"command","detail":{"command_id":"c-1"}}"#,
                "\n",
                r#"{"kind":"result","detail":{"command_id":"c-2","status":"failed"}}"#,
                "\n",
                r#"{"kind":"result","detail":{"command_id":"c-3"#,
            ),
        )
        .unwrap();
        let done = super::results_in(path).unwrap();
        assert_eq!(
            done.into_iter().collect::<Vec<_>>(),
            vec!["c-2".to_string()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
