//! rollbackd decides, within seconds, that a deploy is hurting users and
//! publishes the command to roll it back — and says nothing when a deploy is
//! fine.
//!
//! # Layout
//!
//! A pure, deterministic engine inside thin adapters:
//!
//! - [`time`]: RFC 3339 timestamps and human durations.
//! - [`config`]: TOML → validated [`config::Config`], with the effective
//!   SLO [`config::Policy`] per service.
//! - [`model`]: domain values shared by every layer: deploy events, request
//!   observations, alerts, executor results, commands, audit records.
//! - [`ingest`]: bytes → domain values, pure and panic-free: deploy events
//!   (JSON, CloudEvents), OTLP traces and metrics (protobuf, OTLP/JSON),
//!   Alertmanager webhooks, executor results.
//! - [`engine`]: all state and all decisions. [`engine::registry`] (deploys,
//!   correlation), [`engine::window`] (rolling windows), [`engine::stats`]
//!   (Wilson bound, two-proportion test), [`engine::evaluate`] (burn-rate
//!   pairs and attribution), [`engine::guards`] (once, pause, dry run,
//!   cooldown, breaker, approval).
//! - [`dispatch`]: which input a topic stands for; decoded bytes into the
//!   engine, for every adapter.
//! - [`replay`]: `rollbackd replay`, the JSONL reader and writers.
//! - [`demo`]: `rollbackd demo`, a built-in simulated rollout.
//! - [`kafka`]: consumers (control topics read whole, telemetry in a
//!   consumer group), the producer of commands, audit and dead letters.
//! - [`app`]: `rollbackd run` over Kafka: threads, recovery, readiness,
//!   graceful shutdown.
//! - [`fleet`]: what an HTTP call publishes for every instance (admin
//!   actions, deploy events).
//! - [`http`]: the HTTP listener (`/healthz`, `/readyz`, `/metrics`).
//! - [`telemetry`]: rollbackd's own Prometheus metrics.
//!
//! The engine is given its clock and never does I/O, so `replay` of a file
//! reproduces the decisions `run` made on the same records.

#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod engine;
pub mod executor;
pub mod fleet;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod loadgen;
pub mod model;
pub mod replay;
pub mod telemetry;
pub mod time;
