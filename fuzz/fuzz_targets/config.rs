//! TOML text → config or a list of problems (`load_str`, `${VAR}` expansion, validation,
//! route compilation); JSON text → a catalog file checked and compiled (`[[catalogs]]`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::config_or_catalog(data));
