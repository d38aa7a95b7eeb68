//! rollbackd decides, within seconds, that a deploy is hurting users and
//! publishes the command to roll it back — and says nothing when a deploy is
//! fine.
//!
//! # The path of a record
//!
//! Every adapter — `run` over Kafka or HTTP, `replay`, `demo`, the benches
//! and the tests — takes a record the same way, in two stages:
//!
//! ```text
//!             STAGE 1 — intake (every instance)                 STAGE 2 — decide (the owner of a key)
//!  Kafka: otlp_spans ───┐                                    ┌─────────────────────────────┐
//!  Kafka: otlp_metrics ─┤  ingest::decode    engine::fold    │ Engine::apply(Input, now)   │──► rollback-commands
//!  HTTP: OTLP, alerts ──┼──► Input ────────► Evidence ───────┼─► windows · evaluate        │──► rollbackd-audit
//!  Kafka: deploy-events ┤   (bytes→values)   per deploy side,│   guards · release cascade  │──► /metrics, /v1/audit
//!  Kafka: results/admin ┘                    slot and raw    └─────────────────────────────┘
//!                                            record, keyed by (service, environment)
//!           run: the Kafka topic `rollbackd-evidence` between the stages (runtime::intake → runtime::owner)
//!           replay, demo, HTTP without Kafka: the engine folds and applies in one call — the same code
//! ```
//!
//! Control records (deploy events, commands, results, admin actions) are
//! read whole by every instance and go straight to
//! [`engine::Engine::apply`]; only the owner of a key decides for it.
//! Telemetry no deploy claims, for a service whose deploys are inferred,
//! travels to its owner per version: the owner finds new versions serving
//! and publishes the deploys it infers as deploy events
//! ([`engine::infer`]), which every instance then applies like any other.
//! Each owner also publishes the view of every deploy it decides for to
//! the compacted topic `rollbackd-views`, which every instance reads
//! whole: each shows the whole fleet ([`runtime::views`]).
//!
//! # Layout
//!
//! - [`model`]: domain values shared by every layer: deploy events,
//!   telemetry observations, alerts, results, commands; the engine's
//!   [`model::Input`] and [`model::Output`]; audit records, typed both
//!   ways ([`model::audit`]: the same types write and read
//!   `rollbackd.audit/v1`); evidence and its keys ([`model::evidence`]).
//! - [`ingest`]: bytes → [`model::Input`], pure and panic-free, one module
//!   per wire format (deploy events, OTLP protobuf and JSON, Alertmanager,
//!   executor results), and the evidence record's format both ways
//!   ([`ingest::evidence`], `rollbackd.evidence/v1`).
//! - [`engine`]: all state and every decision behind one door,
//!   [`engine::Engine::apply`]; stage 1's matching and folding
//!   ([`engine::fold`], read-only over the engine's deploys) lives beside
//!   it. It reads only its own sections of the config
//!   ([`engine::EngineConfig`]). Its module docs are the map of
//!   lifecycle, evidence into windows, decisions, guards, alerts and
//!   views.
//! - [`config`]: TOML → validated [`config::Config`], with the effective SLO
//!   [`config::Policy`] per service, and the env vars it names (tokens,
//!   sinks) read once, the same way by `run` and `check-config`; [`time`]: timestamps and durations;
//!   [`stats`]: the statistics behind "enough evidence" (anytime-valid
//!   sequential tests).
//! - [`replay`]: recorded inputs (JSONL) through the engine, and
//!   [`report`], its HTML report with charts; [`demo`]: a
//!   built-in simulated rollout; [`simulate`]: Monte Carlo of a policy
//!   through the engine's windows and sequential tests; [`loadgen`]:
//!   simulated canary traffic and the OTLP builders the tests and benches
//!   share; [`rng`]: the deterministic generator they draw from.
//! - [`runtime`]: `rollbackd run` — the two stages and their consumer
//!   groups, ownership of evidence partitions, transactions, recovery,
//!   readiness per stage, shutdown. Where an input goes to be decided is
//!   its one difference between the modes, the [`runtime::backend::Backend`]
//!   trait: [`runtime::backend::Local`] (this process) or
//!   [`runtime::backend::Kafka`] (the owners, through the topics); where
//!   outputs go is the emitter's [`runtime::emit::Sink`] (the topics, or
//!   stdout). [`http`]: its HTTP listener (the live status page, and the gate
//!   progressive-delivery controllers ask, [`http::gate`]),
//!   which reaches the runtime through the narrow [`http::Api`] trait;
//!   [`metrics`]: rollbackd's own Prometheus metrics.
//! - [`kafka`]: Kafka clients only (the control-topic reader, the group
//!   consumers, the one producer every stage sends with — rebuilt after a
//!   fatal error —, announce and tail); [`sinks`]: the audit file and the
//!   `[[notify]]` notifications;
//!   [`executor`]: the reference executor (a program per strategy, or a
//!   Git commit); [`shutdown`]: the signals that
//!   stop them.
//!
//! The command line (`src/main.rs` and `src/cli/`, one module per
//! subcommand) is the binary's: it parses, dispatches, and reports errors.
//!
//! # The clock
//!
//! The engine reads no clock of its own: every [`model::Input`] comes with
//! `now`, and the engine's clock is the largest `now` it was given. `run`
//! gives it the wall time when a record (or batch) is applied, and an
//! [`model::Input::Tick`] every 200 ms so that warm-ups, cooldowns and
//! watches end on time without traffic; `replay` gives it each record's
//! timestamp and a tick after every record. Both are deterministic where it
//! matters: what the engine decides is a function of the inputs and the
//! times they were applied at, so the same recorded inputs at the same
//! times give byte-for-byte the same commands — `replay` reproduces `run`
//! to the resolution of its ticks.
//!
//! Evidence is placed by its event time, not by when it arrives: the
//! attribution test reads a slot once both versions' evidence has passed
//! it, or once `[slo] allowed_lateness` has run out since it ended; what
//! arrives later is counted and audited (see [`engine`]).

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod config;
pub mod demo;
pub mod engine;
pub mod executor;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod loadgen;
pub mod metrics;
pub mod model;
pub mod replay;
pub mod report;
pub mod rng;
pub mod runtime;
pub mod shutdown;
pub mod simulate;
pub mod sinks;
pub mod stats;
pub mod time;
