//! TOML text → config or a list of problems (`load_str`, `${VAR}` expansion, validation,
//! route compilation).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::config(data));
