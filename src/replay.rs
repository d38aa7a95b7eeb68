//! `rollbackd replay` (`docs/cli.md#rollbackd-replay`): records from a JSONL file, in file
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

use crate::config::OtlpEncoding;
use crate::engine::Engine;
use crate::ingest::{self, DecodeError, Source};
use crate::model::{AuditRecord, Input, Output};
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
    /// Every audit record, kept (for `--report`).
    pub kept: Option<&'a mut Vec<AuditRecord>>,
}

/// A line that is not a valid record: its source label and time when
/// those could be read, and what was wrong.
type LineError = (Option<&'static str>, Option<Timestamp>, DecodeError);

/// One replay line → its time and the engine's input.
fn parse_line(
    config: &crate::config::Config,
    line: &[u8],
) -> Result<(Timestamp, Input), LineError> {
    let rec: RawRecord<'_> = serde_json::from_slice(line).map_err(|e| {
        (
            None,
            None,
            DecodeError::new(format!("invalid replay record: {e}")),
        )
    })?;
    let source = Source::from_topic(config, &rec.topic).ok_or_else(|| {
        (
            None,
            None,
            DecodeError::new(format!("unknown topic {:?}", truncate(&rec.topic))),
        )
    })?;
    let label = Some(source.label());
    let ts = Timestamp::parse_rfc3339(&rec.timestamp)
        .map_err(|e| (label, None, DecodeError::new(format!("timestamp: {e}"))))?;
    let fail = |e: DecodeError| (label, Some(ts), e);
    let decoded;
    let (bytes, encoding): (&[u8], OtlpEncoding) = match (&rec.value, &rec.value_base64) {
        (Some(v), None) => (v.get().as_bytes(), OtlpEncoding::Json),
        (None, Some(b64)) => {
            decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| fail(DecodeError::new(format!("value_base64: {e}"))))?;
            (&decoded, config.topics.otlp_encoding)
        }
        (Some(_), Some(_)) => {
            return Err(fail(DecodeError::new(
                "record has both value and value_base64",
            )))
        }
        (None, None) => {
            return Err(fail(DecodeError::new(
                "record has neither value nor value_base64",
            )))
        }
    };
    // The record's own time is when it was written: a deploy event from
    // further ahead than that is malformed, as in `run`.
    ingest::decode(source, bytes, encoding)
        .and_then(|input| {
            ingest::check_clock(&input, ts, config.limits.max_clock_skew)?;
            Ok((ts, input))
        })
        .map_err(fail)
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Replays every record of `input` through `engine`; `config` reads the
/// records (their topics, encoding and clock skew).
pub fn replay(
    engine: &mut Engine,
    config: &crate::config::Config,
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
        let mut outputs = match parse_line(config, &line) {
            Ok((ts, input)) => engine.apply(input, ts),
            Err((source, ts, err)) => {
                summary.malformed += 1;
                writeln!(
                    sinks.errors,
                    "line {line_no}: malformed record skipped: {err}"
                )?;
                let malformed = Engine::malformed(
                    source.unwrap_or("replay"),
                    &err.0,
                    serde_json::json!({"line": line_no}),
                );
                let at = ts.unwrap_or_else(|| engine.now());
                engine.apply(malformed, at)
            }
        };
        let now = engine.now();
        outputs.extend(engine.apply(Input::Tick, now));
        write_outputs(outputs, sinks, &mut summary)?;
    }
    let now = engine.now();
    let outputs = engine.apply(Input::Tick, now);
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
                if let Some(kept) = sinks.kept.as_mut() {
                    kept.push(a);
                }
            }
            // Applied by the engine that made them: nothing to publish here.
            Output::Telemetry(_) | Output::Refused(_) | Output::Deploy(_) | Output::Gate(_) => {}
        }
    }
    Ok(())
}
