//! Log output of the real binary: text logs carry ANSI colour codes only on a terminal, so a
//! log file or a collector reading a pipe gets plain text.

use crate::fixtures::config::{base_config, source, ConfigFile};
use crate::fixtures::free_port;
use event_relay::config::SourceFormat;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn text_logs_to_a_pipe_have_no_colour_codes() {
    // No broker is needed: the relay logs its start (server listening, relay started) before
    // it ever reaches one. The broker address is a closed local port.
    let mut cfg = base_config(&format!("127.0.0.1:{}", free_port()), "results", "dlq");
    cfg.sources.push(source("in", SourceFormat::Komo));
    cfg.server.listen = format!("127.0.0.1:{}", free_port());
    let file = ConfigFile::write(&cfg);
    let mut child = Command::new(env!("CARGO_BIN_EXE_event-relay"))
        .args(["run", "--config"])
        .arg(&file.path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the relay");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let started = line.contains("relay started");
        seen.push(line);
        if started {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|l| l.contains("relay started")),
        "the relay logged its start: {seen:#?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("INFO")),
        "levels are written: {seen:#?}"
    );
    let coloured: Vec<&String> = seen.iter().filter(|l| l.contains('\u{1b}')).collect();
    assert!(
        coloured.is_empty(),
        "ANSI escape codes in piped logs: {coloured:#?}"
    );
}
