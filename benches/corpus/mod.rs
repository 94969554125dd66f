//! The benchmarks' shared corpus: 700 acemate + 300 Komo raw events from the fixtures,
//! interleaved (every tenth event: 3 Komo, 7 acemate), ~600 bytes each.

/// Events in the corpus.
pub const CORPUS_EVENTS: usize = 1000;

/// 700 acemate + 300 Komo raw events, interleaved (every tenth event: 3 Komo, 7 acemate).
pub fn corpus() -> Vec<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/valid_events.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("valid_events.jsonl");
    let (mut acemate, mut komo) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("fixture line is JSON");
        if v.get("distinct_id").is_some() {
            acemate.push(line.as_bytes().to_vec());
        } else {
            komo.push(line.as_bytes().to_vec());
        }
    }
    assert!(!acemate.is_empty() && !komo.is_empty());
    let (mut a, mut k) = (acemate.iter().cycle(), komo.iter().cycle());
    (0..CORPUS_EVENTS)
        .map(|i| {
            if i % 10 < 3 {
                k.next().unwrap().clone()
            } else {
                a.next().unwrap().clone()
            }
        })
        .collect()
}

/// CPU time this thread has spent on a core (Linux `/proc/thread-self/schedstat`), so that
/// time spent waiting for a core on a busy machine doesn't count; `None` elsewhere.
pub fn thread_cpu_time() -> Option<std::time::Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    (ns > 0).then(|| std::time::Duration::from_nanos(ns))
}
