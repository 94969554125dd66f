//! The event mix: templates from `tests/fixtures/valid_events.jsonl` (one valid raw event per
//! catalog event), ~70% acemate (Identify properties ride along) and ~30% Komo (user
//! attributes), each with a unique id that encodes its index, users drawn from a pool so the
//! message keys spread over the partitions.

use anyhow::{bail, Context};
use serde_json::{Map, Value};

/// Number of distinct users the events are spread over (also the message keys).
const USERS: u64 = 20_000;

/// Id prefix per stream, so the receiver can tell the pre-loaded events from the latency ones.
pub const TAG_PRELOAD: u32 = 0;
pub const TAG_LATENCY: u32 = 1;

pub struct Templates {
    acemate: Vec<Map<String, Value>>,
    komo: Vec<Map<String, Value>>,
}

/// One generated raw event.
pub struct Generated {
    pub key: String,
    pub payload: Vec<u8>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The event id of index `i`: a well-formed UUID whose last 12 hex digits are `i`.
pub fn event_id(tag: u32, i: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", 0xbe4c_0000u32 | tag, i)
}

/// Whether event `i` of stream `tag` is an acemate event (~70%), else Komo: the one place that
/// decides the mix, so a scenario that routes by source knows how many events each route gets.
pub fn is_acemate(tag: u32, i: u64) -> bool {
    mix(tag, i) % 100 < 70
}

/// The random bits that pick event `i`'s source, template and user.
fn mix(tag: u32, i: u64) -> u64 {
    splitmix(i ^ (u64::from(tag) << 48))
}

/// The index encoded by [`event_id`] (last 12 hex digits), if the id has that shape.
pub fn index_of(id: &str) -> Option<u64> {
    let tail = id.get(id.len().checked_sub(12)?..)?;
    u64::from_str_radix(tail, 16).ok()
}

fn user_id(u: u64) -> String {
    format!("5e11a000-0000-4000-8000-{u:012x}")
}

fn session_id(u: u64, i: u64) -> String {
    // A user's session changes every so often.
    format!("5e55{:04x}-0000-4000-8000-{u:012x}", (i / 97) & 0xffff)
}

impl Templates {
    pub fn load(path: &str) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let mut acemate = Vec::new();
        let mut komo = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Map<String, Value> = serde_json::from_str(line)?;
            let event = v.get("event").and_then(Value::as_str).unwrap_or_default();
            // Result events are the relay's own output, not source traffic.
            if event == "WebhookSuccess" || event == "WebhookError" {
                continue;
            }
            if v.contains_key("distinct_id") {
                acemate.push(v);
            } else {
                komo.push(v);
            }
        }
        if acemate.is_empty() || komo.is_empty() {
            bail!("{path}: need both acemate (distinct_id) and Komo templates");
        }
        Ok(Self { acemate, komo })
    }

    /// Event `i` of stream `tag`; `bench_ts` (µs since the epoch) is embedded when given.
    pub fn event(&self, tag: u32, i: u64, bench_ts: Option<u64>) -> Generated {
        let r = mix(tag, i);
        let u = (r >> 24) % USERS;
        let user = user_id(u);
        let id = event_id(tag, i);
        let mut v;
        if is_acemate(tag, i) {
            v = self.acemate[((r >> 8) % self.acemate.len() as u64) as usize].clone();
            v.insert("uuid".into(), Value::from(id));
            v.insert("distinct_id".into(), Value::from(user.clone()));
            if let Some(Value::Object(p)) = v.get_mut("properties") {
                if p.contains_key("$session_id") {
                    p.insert("$session_id".into(), Value::from(session_id(u, i)));
                }
                if let Some(ts) = bench_ts {
                    p.insert("bench_ts".into(), Value::from(ts));
                }
            }
        } else {
            v = self.komo[((r >> 8) % self.komo.len() as u64) as usize].clone();
            v.insert("id".into(), Value::from(id));
            v.insert("user_profile_id".into(), Value::from(user.clone()));
            v.insert("user_session_id".into(), Value::from(session_id(u, i)));
            if let Some(ts) = bench_ts {
                // Komo attributes are strings; the normalizer keeps unknown ones as user traits.
                v.insert("bench_ts".into(), Value::from(ts.to_string()));
            }
        }
        Generated {
            key: user,
            payload: serde_json::to_vec(&v).expect("JSON values serialize"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_acemate` is what `event` generates, so outage-isolation's split per route is exact.
    #[test]
    fn the_mix_is_decided_in_one_place() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/valid_events.jsonl"
        );
        let t = Templates::load(path).unwrap();
        let mut acemate = 0;
        for i in 0..2000 {
            let e = t.event(TAG_PRELOAD, i, None);
            let v: Value = serde_json::from_slice(&e.payload).unwrap();
            assert_eq!(
                v.get("distinct_id").is_some(),
                is_acemate(TAG_PRELOAD, i),
                "{i}"
            );
            acemate += u32::from(is_acemate(TAG_PRELOAD, i));
        }
        assert!((1200..1600).contains(&acemate), "{acemate} of 2000");
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(index_of(&event_id(TAG_LATENCY, 123_456)), Some(123_456));
        assert_eq!(event_id(0, 5).len(), 36);
    }
}
