//! What the black-box tests share, one place per thing:
//!
//! - [`procs`]: the tools the tests run (tansu, the Python virtualenv),
//!   free ports, scratch directories, and the lock that keeps tests which
//!   measure wall time from running at once;
//! - [`broker`]: a tansu broker process, and librdkafka clients to produce
//!   to it and read its topics;
//! - [`agent`]: the `rollbackd` binary — `run` as an [`agent::Agent`], any
//!   other subcommand, and the lines it prints;
//! - [`fleet`]: instances on one broker, counted canary traffic, what
//!   they show of a deploy;
//! - [`browser`]: headless Chromium: a page's DOM, its requests, a
//!   screenshot;
//! - [`git_http`]: a Git server over HTTP with basic authentication;
//! - [`http`]: a minimal HTTP client and Prometheus text parsing;
//! - [`otlp`]: OTLP exports, built from `rollbackd::loadgen`'s builders
//!   (one per wire format: protobuf bytes, or the same message as JSON);
//! - [`receiver`]: a notification receiver on loopback (fails, holds);
//! - [`replay`]: replay-file fixtures run through `rollbackd::replay::replay`, the function `rollbackd replay` calls.

#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod broker;
pub mod browser;
pub mod fleet;
pub mod git_http;
pub mod http;
pub mod otlp;
pub mod procs;
pub mod receiver;
pub mod replay;

pub use agent::*;
pub use broker::*;
pub use browser::*;
pub use http::*;
pub use otlp::*;
pub use procs::*;
pub use receiver::*;
