//! Client-side CPU per webhook POST (issue 16): reqwest, built as the relay built it before
//! issue 16, against lean hyper clients (the relay now sends through `hyper-legacy`'s client,
//! `src/deliver/client.rs`), on loopback HTTP/1.1 (and h2c).
//!
//! Kinds, each sending the same ~600-byte JSON body with `content-type` and three `webhook-*`
//! headers of realistic length (body and header map made afresh per request, as the relay does):
//! - `reqwest`: the relay's former client and request path (per-request timeout, drop the response);
//! - `hyper-legacy`: `hyper_util::client::legacy::Client` (pool of `concurrency` idle
//!   connections), `tokio::time::timeout` around each request, response body read;
//! - `hyper-conn`: `concurrency` `hyper::client::conn::http1` connections handshaken once, each
//!   driven by its own task, lent to requests from a `Mutex<Vec<_>>`, same timeout;
//! - `reqwest-h2`, `hyper-legacy-h2`: the same two clients with HTTP/2 prior knowledge (h2c).
//!
//! The server (200, empty body) runs in a child process (this binary with `--serve`), so only
//! the client's CPU is counted: `getrusage(RUSAGE_SELF)` user+sys around each kind's run, on a
//! 2-worker tokio runtime (the relay on 2 cores) with `concurrency` tasks sending `requests`
//! requests in all. Rounds interleave the kinds (a,b,c,a,b,c,...) so machine noise hits them
//! alike; the summary gives each kind's median over rounds and its ratio to `reqwest`.
//!
//! Run: `cd bench && cargo build --release && ./target/release/http_client_cost --requests
//! 200000 --rounds 3` (`--help` for the flags).

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The relay's default target `timeout` (and so its connect timeout, capped at 10 s).
const TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT_VALUE: &str = "event-relay/0.1.0";

#[derive(Parser)]
#[command(about = "Client-side CPU per webhook POST: reqwest vs lean hyper clients")]
struct Args {
    /// Requests per kind and round.
    #[arg(long, default_value_t = 200_000)]
    requests: usize,
    /// Requests in flight (tasks); also the connection pool size (the relay's `max_in_flight`).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Rounds; each runs every kind once, in the order given.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Request body size in bytes.
    #[arg(long, default_value_t = 600)]
    body_bytes: usize,
    /// Kinds to measure (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [Kind::Reqwest, Kind::HyperLegacy, Kind::HyperConn, Kind::ReqwestH2, Kind::HyperLegacyH2])]
    kinds: Vec<Kind>,
    /// Internal: be the server (child process); prints its port, exits when stdin closes.
    #[arg(long, hide = true)]
    serve: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Reqwest,
    HyperLegacy,
    HyperConn,
    ReqwestH2,
    HyperLegacyH2,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Reqwest => "reqwest (relay, HTTP/1.1)",
            Kind::HyperLegacy => "hyper-util legacy Client",
            Kind::HyperConn => "hyper conn::http1 + own pool",
            Kind::ReqwestH2 => "reqwest h2c prior knowledge",
            Kind::HyperLegacyH2 => "hyper-util legacy h2c",
        }
    }
}

/// What every request carries; cloned per request (the relay builds body and headers per event).
struct Template {
    url: reqwest::Url,
    uri: hyper::Uri,
    host: HeaderValue,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Template {
    fn new(addr: SocketAddr, body_bytes: usize) -> Result<Self> {
        let url = format!("http://{addr}/hook");
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let id = "msg_2Nf0cWvXbQ8sJ3kLmP4tRyZ1aHd";
        headers.insert("webhook-id", HeaderValue::from_static(id));
        headers.insert("webhook-timestamp", HeaderValue::from_static("1764682800"));
        let sig = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=";
        headers.insert("webhook-signature", HeaderValue::from_static(sig));
        let mut body = br#"{"id":"0190b1a4-7c1e-7d3a-9f00-000000000001","event":"order_placed","properties":{"#.to_vec();
        while body.len() + 3 < body_bytes {
            body.extend_from_slice(br#""k":"v","#);
        }
        body.extend_from_slice(br#""z":0}}"#);
        Ok(Self {
            url: url.parse()?,
            uri: url.parse()?,
            host: HeaderValue::from_str(&addr.to_string())?,
            headers,
            body,
        })
    }

    /// The request as hyper sends it: an absolute URI for the legacy client (it sets `host`),
    /// the path and a `host` header on a bare connection.
    fn hyper_request(&self, absolute: bool) -> Result<Request<Full<Bytes>>> {
        let body = Full::new(Bytes::from(self.body.clone()));
        let mut req = if absolute {
            Request::post(self.uri.clone()).body(body)?
        } else {
            Request::post("/hook").body(body)?
        };
        let headers = req.headers_mut();
        *headers = self.headers.clone();
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if !absolute {
            headers.insert(HOST, self.host.clone());
        }
        Ok(req)
    }
}

/// The relay's former `deliver::service::http_client` (reqwest) with the relay's defaults (`http2` as the target's flag).
fn reqwest_client(concurrency: usize, http2: bool) -> Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(concurrency)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(false)
        .user_agent(USER_AGENT_VALUE);
    let builder = if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder
    };
    Ok(builder.build()?)
}

/// The relay's webhook send: on success it reads the status and drops the response.
async fn send_reqwest(c: &reqwest::Client, t: &Template) -> Result<u16> {
    let resp = c
        .request(reqwest::Method::POST, t.url.clone())
        .headers(t.headers.clone())
        .body(t.body.clone())
        .send()
        .await?;
    Ok(resp.status().as_u16())
}

type Legacy = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

fn legacy_client(concurrency: usize, http2: bool) -> Legacy {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(TIMEOUT));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .http2_only(http2)
        .build(connector)
}

async fn send_legacy(c: &Legacy, t: &Template) -> Result<u16> {
    let req = t.hyper_request(true)?;
    tokio::time::timeout(TIMEOUT, async {
        let resp = c.request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    })
    .await?
}

/// `concurrency` HTTP/1.1 connections, each lent to one request at a time.
struct ConnPool {
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl ConnPool {
    async fn connect(addr: SocketAddr, n: usize) -> Result<Self> {
        let mut idle = Vec::with_capacity(n);
        for _ in 0..n {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            idle.push(tx);
        }
        Ok(Self {
            idle: Mutex::new(idle),
        })
    }

    /// A failed request drops its connection (the benchmark then stops on the error).
    async fn send(&self, t: &Template) -> Result<u16> {
        let req = t.hyper_request(false)?;
        let popped = self.idle.lock().expect("pool lock").pop();
        let mut tx = popped.context("connection pool empty")?;
        let status = tokio::time::timeout(TIMEOUT, async {
            tx.ready().await?;
            let resp = tx.send_request(req).await?;
            let status = resp.status().as_u16();
            resp.into_body().collect().await?;
            anyhow::Ok(status)
        })
        .await??;
        self.idle.lock().expect("pool lock").push(tx);
        Ok(status)
    }
}

/// `concurrency` tasks share out `requests` calls of `send`; fails on any error or non-200.
async fn drive<C, F, Fut>(client: Arc<C>, args: &Args, send: F) -> Result<()>
where
    C: Send + Sync + 'static,
    F: Fn(Arc<C>) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Result<u16>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, next, n) = (client.clone(), next.clone(), args.requests);
            tokio::spawn(async move {
                while next.fetch_add(1, Relaxed) < n {
                    let status = send(client.clone()).await?;
                    ensure!(status == 200, "server answered {status}");
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// One kind's run: wall time and client CPU time (clients are built before the clock starts;
/// connecting is inside, lazily or, for `hyper-conn`, up front).
fn run_kind(
    rt: &tokio::runtime::Runtime,
    kind: Kind,
    args: &Args,
    addr: SocketAddr,
) -> Result<Sample> {
    let t = Template::new(addr, args.body_bytes)?;
    let n = args.concurrency;
    let (reqwest_c, legacy_c) = match kind {
        Kind::Reqwest | Kind::ReqwestH2 => {
            (Some(reqwest_client(n, kind == Kind::ReqwestH2)?), None)
        }
        Kind::HyperLegacy | Kind::HyperLegacyH2 => {
            (None, Some(legacy_client(n, kind == Kind::HyperLegacyH2)))
        }
        Kind::HyperConn => (None, None),
    };
    let (cpu0, t0) = (cpu_us(), Instant::now());
    rt.block_on(async {
        if let Some(c) = reqwest_c {
            let ctx = Arc::new((c, t));
            drive(ctx, args, |x| async move { send_reqwest(&x.0, &x.1).await }).await
        } else if let Some(c) = legacy_c {
            let ctx = Arc::new((c, t));
            drive(ctx, args, |x| async move { send_legacy(&x.0, &x.1).await }).await
        } else {
            let ctx = Arc::new((ConnPool::connect(addr, n).await?, t));
            drive(ctx, args, |x| async move { x.0.send(&x.1).await }).await
        }
    })?;
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), (cpu_us() - cpu0) as f64);
    Ok(Sample {
        req_per_s: args.requests as f64 / wall,
        cpu_us_per_req: cpu / args.requests as f64,
        cores: cpu / 1e6 / wall,
    })
}

struct Sample {
    req_per_s: f64,
    cpu_us_per_req: f64,
    /// CPU seconds per wall second of the client process.
    cores: f64,
}

/// This process's user+system CPU time, µs.
fn cpu_us() -> u64 {
    // SAFETY: getrusage only writes the struct it is given; an all-zero rusage is valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The child: answers every request 200 with an empty body, HTTP/1.1 and h2c on one port.
fn serve() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        std::thread::spawn(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            std::process::exit(0);
        });
        let app = axum::Router::new().fallback(|_body: axum::body::Bytes| async { "" });
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// Starts the server child; returns it (kill on drop of stdin) and its address.
fn spawn_server() -> Result<(Child, SocketAddr)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
    let port: u16 = line.trim().parse().context("server port")?;
    Ok((child, SocketAddr::from(([127, 0, 0, 1], port))))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.serve {
        return serve();
    }
    if args.kinds.is_empty() || args.rounds == 0 || args.requests == 0 {
        bail!("--kinds, --rounds and --requests must not be empty or zero");
    }
    let (mut child, addr) = spawn_server()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut samples: Vec<Vec<Sample>> = args.kinds.iter().map(|_| Vec::new()).collect();
    for round in 1..=args.rounds {
        for (i, &kind) in args.kinds.iter().enumerate() {
            let s = run_kind(&rt, kind, &args, addr).with_context(|| kind.name())?;
            println!(
                "round {round} {:<30} {:>9.0} req/s {:>7.2} CPU-µs/req {:>5.2} cores",
                kind.name(),
                s.req_per_s,
                s.cpu_us_per_req,
                s.cores
            );
            samples[i].push(s);
        }
    }
    drop(child.stdin.take());
    let _ = child.wait();
    report(&args, &samples);
    Ok(())
}

/// The summary table: medians over rounds, CPU ratio to `reqwest` when it ran.
fn report(args: &Args, samples: &[Vec<Sample>]) {
    let med = |i: usize, f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
    let base = args.kinds.iter().position(|&k| k == Kind::Reqwest);
    let base_cpu = base.map(|b| med(b, |s| s.cpu_us_per_req));
    println!(
        "\n{} requests x {} rounds, concurrency {}, body {} bytes (medians over rounds)\n",
        args.requests, args.rounds, args.concurrency, args.body_bytes
    );
    println!("| kind | req/s | CPU-µs/request | CPU ratio to reqwest |");
    println!("|---|---:|---:|---:|");
    for (i, kind) in args.kinds.iter().enumerate() {
        let cpu = med(i, |s| s.cpu_us_per_req);
        let ratio = base_cpu.map_or("-".into(), |b| format!("{:.2}", cpu / b));
        println!(
            "| {} | {:.0} | {:.2} | {ratio} |",
            kind.name(),
            med(i, |s| s.req_per_s),
            cpu
        );
    }
}
