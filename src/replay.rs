//! `rollbackd replay` (CONTRACT §8): records from a JSONL file, in file
//! order, through the same engine as `run`, on a clock that is the largest
//! record timestamp read so far. Commands go to one writer as JSON lines
//! (stdout), audit records to another (a file, if asked), malformed lines to
//! a third (stderr) with their line numbers.
//!
//! Because the engine never reads the wall clock, a replay is deterministic:
//! the same file gives byte-for-byte the same commands. `issued_at` equals
//! `decided_at` here, since nothing is actually issued.

use std::borrow::Cow;
use std::io::{self, BufRead, Write};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::dispatch::{apply, Source};
use crate::engine::Engine;
use crate::ingest::DecodeError;
use crate::model::Output;
use crate::time::Timestamp;

#[derive(Deserialize)]
struct RawRecord<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
    #[serde(default, borrow)]
    value_base64: Option<Cow<'a, str>>,
}

/// Counts of what a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub records: u64,
    pub malformed: u64,
    pub commands: u64,
    pub audits: u64,
    pub bytes: u64,
}

/// Where a replay's outputs go.
pub struct ReplaySinks<'a> {
    pub commands: &'a mut dyn Write,
    pub audit: Option<&'a mut dyn Write>,
    pub errors: &'a mut dyn Write,
}

fn parse_line(
    engine: &mut Engine,
    line: &[u8],
) -> Result<Vec<Output>, (Option<&'static str>, DecodeError)> {
    let rec: RawRecord<'_> = serde_json::from_slice(line).map_err(|e| {
        (
            None,
            DecodeError::new(format!("invalid replay record: {e}")),
        )
    })?;
    let source = Source::from_topic(engine.config(), &rec.topic).ok_or_else(|| {
        (
            None,
            DecodeError::new(format!("unknown topic {:?}", truncate(&rec.topic))),
        )
    })?;
    let label = source.label();
    let ts = Timestamp::parse_rfc3339(&rec.timestamp)
        .map_err(|e| (Some(label), DecodeError::new(format!("timestamp: {e}"))))?;
    let decoded;
    let (bytes, json_form): (&[u8], bool) = match (&rec.value, &rec.value_base64) {
        (Some(v), None) => (v.get().as_bytes(), true),
        (None, Some(b64)) => {
            decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| (Some(label), DecodeError::new(format!("value_base64: {e}"))))?;
            (&decoded, false)
        }
        (Some(_), Some(_)) => {
            return Err((
                Some(label),
                DecodeError::new("record has both value and value_base64"),
            ))
        }
        (None, None) => {
            return Err((
                Some(label),
                DecodeError::new("record has neither value nor value_base64"),
            ))
        }
    };
    engine.set_clock(ts);
    apply(engine, source, bytes, json_form).map_err(|e| (Some(label), e))
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Replays every record of `input` through `engine`.
pub fn replay(
    engine: &mut Engine,
    input: impl BufRead,
    sinks: &mut ReplaySinks<'_>,
) -> io::Result<ReplaySummary> {
    let mut summary = ReplaySummary::default();
    let mut input = input;
    let mut line = Vec::with_capacity(64 * 1024);
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        summary.bytes += n as u64;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.records += 1;
        let mut outputs = match parse_line(engine, &line) {
            Ok(outputs) => outputs,
            Err((source, err)) => {
                summary.malformed += 1;
                writeln!(
                    sinks.errors,
                    "line {line_no}: malformed record skipped: {err}"
                )?;
                let audit = engine.malformed_audit(
                    source.unwrap_or("replay"),
                    &err.0,
                    serde_json::json!({"line": line_no}),
                );
                vec![Output::Audit(audit)]
            }
        };
        outputs.extend(engine.tick());
        write_outputs(outputs, sinks, &mut summary)?;
    }
    let outputs = engine.tick();
    write_outputs(outputs, sinks, &mut summary)?;
    sinks.commands.flush()?;
    if let Some(a) = sinks.audit.as_mut() {
        a.flush()?;
    }
    Ok(summary)
}

fn write_outputs(
    outputs: Vec<Output>,
    sinks: &mut ReplaySinks<'_>,
    summary: &mut ReplaySummary,
) -> io::Result<()> {
    for o in outputs {
        match o {
            Output::Command(c) => {
                summary.commands += 1;
                serde_json::to_writer(&mut *sinks.commands, &c)?;
                sinks.commands.write_all(b"\n")?;
                // Commands are rare and someone may be tailing them.
                sinks.commands.flush()?;
            }
            Output::Audit(a) => {
                summary.audits += 1;
                if let Some(w) = sinks.audit.as_mut() {
                    serde_json::to_writer(&mut **w, &a)?;
                    w.write_all(b"\n")?;
                }
            }
        }
    }
    Ok(())
}
