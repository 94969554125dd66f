//! Raw Kafka message bytes → envelope(s) or a dead-letter reason, for every source format and
//! policy, plus everything the relay computes from an envelope afterwards.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::normalize(data));
