//! The relay under test: its generated config, the release binary as a subprocess, and what
//! `/proc` and `/metrics` say about it.

use anyhow::{bail, Context};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The librdkafka options every relay (and the bare consumer) gets before `--kafka-option`s:
/// tansu needs the short session for group joins (librdkafka's prefetch defaults otherwise).
pub const KAFKA_OPTIONS: &[(&str, &str)] = &[
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Targets {
    Posthog,
    Webhook,
    Both,
    /// Two webhook targets on disjoint routes: acemate events to `hook` (`/hook`), Komo events
    /// to `down` (`/down`, the receiver's failing path in outage-isolation).
    Isolation,
}

pub struct RelayConfig<'a> {
    pub brokers: &'a str,
    pub group: &'a str,
    pub source_topic: &'a str,
    pub results_topic: &'a str,
    pub dlq_topic: &'a str,
    pub receiver: std::net::SocketAddr,
    pub metrics_port: u16,
    pub targets: Targets,
    /// librdkafka options, in order (later ones win).
    pub kafka_options: &'a [(String, String)],
    /// Outage: keep retrying (max_elapsed 15m, max_backoff 2s) and probe the circuit every 2 s.
    pub keep_retrying: bool,
    /// `pipeline.max_in_flight_events` (`None`: the relay's default).
    pub max_in_flight_events: Option<usize>,
    /// `http2 = true` on the webhook target `hook` (HTTP/2 with prior knowledge); without it
    /// the key is left out, so a build that does not know it still reads the config.
    pub http2: bool,
    /// A VRL program as `transform` on the webhook target `hook` (webhook-transform); `None`
    /// leaves the key out, so a build older than per-target transforms still reads the config.
    pub transform: Option<&'a str>,
    /// `server.tap = true` (--tap: the tap on, no client connected); without it the key is
    /// left out, so a build that does not know it still reads the config.
    pub tap: bool,
}

impl RelayConfig<'_> {
    pub fn toml(&self) -> String {
        let mut s = self.head();
        let names = self.targets_toml(&mut s);
        if self.targets == Targets::Isolation {
            let _ = writeln!(
                s,
                "[[routes]]\nname = \"acemate-to-hook\"\nsources = [\"acemate\"]\ntargets = [\"hook\"]\n\n[[routes]]\nname = \"komo-to-down\"\nsources = [\"komo\"]\ntargets = [\"down\"]\n"
            );
        } else {
            let _ = writeln!(
                s,
                "[[routes]]\nname = \"everything\"\ntargets = [{}]\n",
                names.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "[server]\nlisten = \"127.0.0.1:{}\"\n{}\n[log]\nlevel = \"warn\"",
            self.metrics_port,
            if self.tap { "tap = true\n" } else { "" }
        );
        s
    }

    /// Everything before the targets: Kafka, the source, results, dead letters, pipeline.
    fn head(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "default_targets = []\n\n[kafka]");
        let _ = writeln!(
            s,
            "brokers = \"{}\"\ngroup_id = \"{}\"",
            self.brokers, self.group
        );
        let _ = writeln!(s, "\n[kafka.options]");
        let mut opts: Vec<(&str, &str)> = Vec::new();
        for (k, v) in self.kafka_options {
            opts.retain(|(ok, _)| ok != k);
            opts.push((k, v));
        }
        for (k, v) in opts {
            let _ = writeln!(s, "\"{k}\" = \"{v}\"");
        }
        let _ = writeln!(
            s,
            r#"
[[sources]]
topic = "{}"
format = "auto"
validation = "strict"
site_id = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
site_name = "acemate"

[results]
topic = "{}"

[dead_letter]
topic = "{}"

[pipeline]
{}commit_interval = "1s"
"#,
            self.source_topic,
            self.results_topic,
            self.dlq_topic,
            self.max_in_flight_events
                .map_or(String::new(), |n| format!("max_in_flight_events = {n}\n"))
        );
        s
    }

    /// Appends the `[[targets]]`; returns their names, quoted.
    fn targets_toml(&self, s: &mut String) -> Vec<&'static str> {
        let retry = if self.keep_retrying {
            "\n[targets.retry]\nmax_attempts = 100000\ninitial_backoff = \"100ms\"\nmax_backoff = \"2s\"\nmax_elapsed = \"15m\"\n[targets.circuit]\nfailure_threshold = 20\ncool_down = \"2s\"\n"
        } else {
            ""
        };
        let mut names = Vec::new();
        if matches!(self.targets, Targets::Posthog | Targets::Both) {
            names.push("\"posthog\"");
            let _ = writeln!(
                s,
                "[[targets]]\nname = \"posthog\"\nkind = \"posthog\"\nurl = \"http://{}\"\napi_key = \"phc_bench\"\nbatch_max_events = 100\nmax_in_flight = 16\n{retry}",
                self.receiver
            );
        }
        if matches!(
            self.targets,
            Targets::Webhook | Targets::Both | Targets::Isolation
        ) {
            names.push("\"hook\"");
            let http2 = if self.http2 { "http2 = true\n" } else { "" };
            let transform = self.transform.map_or(String::new(), transform_toml);
            let _ = writeln!(
                s,
                "[[targets]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://{}/hook\"\nmax_in_flight = 256\n{http2}{transform}{retry}",
                self.receiver
            );
        }
        if self.targets == Targets::Isolation {
            names.push("\"down\"");
            let _ = writeln!(
                s,
                "[[targets]]\nname = \"down\"\nkind = \"webhook\"\nurl = \"http://{}/down\"\nmax_in_flight = 256\n{retry}",
                self.receiver
            );
        }
        names
    }
}

/// `transform = '''...'''`: a literal string, so the program's quotes and backslashes reach VRL
/// as written (TOML drops the newline right after the opening quotes).
fn transform_toml(program: &str) -> String {
    assert!(
        !program.contains("'''"),
        "a transform cannot hold ''' in a TOML literal string"
    );
    format!("transform = '''\n{}\n'''\n", program.trim_end())
}

/// Runs `bin check` on `config` written to `path`: `Ok(Err(output))` when the relay rejects
/// it (its problems, stdout then stderr), `Err` when the check could not run at all.
pub fn check(bin: &str, path: &Path, config: &str) -> anyhow::Result<Result<(), String>> {
    std::fs::write(path, config).with_context(|| format!("writing {}", path.display()))?;
    let out = Command::new(bin)
        .args(["check", "--config"])
        .arg(path)
        .output()
        .with_context(|| format!("running {bin} check"))?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    Ok(Err(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

/// A running relay; SIGTERM (then SIGKILL) on [`Relay::stop`] or drop.
pub struct Relay {
    child: Option<Child>,
    pub pid: u32,
    pub metrics_port: u16,
    pub spawned: Instant,
    pub log: PathBuf,
}

/// utime + stime of any process, in seconds.
pub fn cpu_secs_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

/// The 1-minute load average (other work on the machine skews every number).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

impl Relay {
    pub fn spawn(
        bin: &str,
        config: &str,
        dir: &Path,
        name: &str,
        metrics_port: u16,
    ) -> anyhow::Result<Self> {
        let cfg_path = dir.join(format!("{name}.toml"));
        if let Err(said) = check(bin, &cfg_path, config)? {
            bail!(
                "generated config {} is invalid:\n{said}",
                cfg_path.display()
            );
        }
        let log = dir.join(format!("{name}.relay.log"));
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?)
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        Ok(Self {
            pid: child.id(),
            child: Some(child),
            metrics_port,
            spawned: Instant::now(),
            log,
        })
    }

    /// utime + stime of the relay so far, in seconds.
    pub fn cpu_secs(&self) -> Option<f64> {
        cpu_secs_of(&self.pid.to_string())
    }

    fn status_kib(&self, key: &str) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        s.lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// CPU seconds per thread name (summed over threads of one name), busiest first.
    pub fn threads_cpu(&self) -> Vec<(String, usize, f64)> {
        let mut by: Vec<(String, usize, f64)> = Vec::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return by;
        };
        for t in dir.flatten() {
            let tid = t.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", self.pid))
                .unwrap_or_default()
                .trim()
                .to_string();
            let cpu = cpu_secs_of(&format!("{}/task/{tid}", self.pid)).unwrap_or(0.0);
            match by.iter_mut().find(|(c, _, _)| *c == comm) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += cpu;
                }
                None => by.push((comm, 1, cpu)),
            }
        }
        by.sort_by(|a, b| b.2.total_cmp(&a.2));
        by
    }

    /// Current resident set, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// Peak resident set so far, KiB.
    pub fn hwm_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let code = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((code, body))
    }

    pub fn metrics(&self) -> Option<String> {
        self.get("/metrics").map(|(_, b)| b)
    }

    pub fn ready(&self) -> bool {
        matches!(self.get("/readyz"), Some((200, _)))
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status text.
    pub fn stop(&mut self, grace: Duration) -> String {
        let Some(mut child) = self.child.take() else {
            return "already stopped".into();
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return st.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return "killed after the grace period".into();
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sum of every sample of `name` whose label set contains `label` (e.g. `outcome="error"`).
pub fn metric_sum(text: &str, name: &str, label: Option<&str>) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            if n != name || label.is_some_and(|want| !labels.contains(want)) {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .fold(0.0, |a, b| a + b)
}
