//! Whole replay inputs through a live engine: decoding, state changes and
//! evaluation must never panic, whatever the bytes.
#![no_main]

use std::io::{self, BufReader};

use libfuzzer_sys::fuzz_target;
use rollbackd::config::Config;
use rollbackd::engine::{Engine, EngineConfig};
use rollbackd::replay::{replay, ReplaySinks};

fuzz_target!(|data: &[u8]| {
    let config = Config::default();
    let mut engine = Engine::new(EngineConfig::from(&config));
    let (mut c, mut e) = (io::sink(), io::sink());
    let mut sinks = ReplaySinks { commands: &mut c, audit: None, errors: &mut e, kept: None };
    let _ = replay(&mut engine, &config, BufReader::new(data), &mut sinks);
});
