//! A target's VRL program and a raw message (split at the first `---` line) → the program
//! compiled for a webhook and a PostHog target, then run on the message's events as each
//! target would send them; no program and no event may panic the relay.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::transform(data));
