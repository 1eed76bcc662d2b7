//! `raftlb-stickload`: the load of `bench/stick`. Sends HTTP requests over
//! keep-alive connections, each with a new `X-Key` header value (so each
//! writes a new stick-table entry when the proxy sticks on `req.hdr(X-Key)`),
//! paced to a rate; and for one request in `--sample-every`, polls each
//! peer's admin API (`GET /tables?name=&key=`) until the entry is there, to
//! time how long an entry written on one node takes to be visible on the
//! others. Prints one JSON object.
//!
//! ```text
//! raftlb-stickload --target 127.0.0.1:8090 --rate 1000 --secs 10 \
//!     [--conns 32] [--prefix k] [--table be] [--sample-every 50] [--peer 127.0.0.1:9901]...
//! ```
//! `--rate 0`: as fast as the proxy answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    target: SocketAddr,
    rate: u64,
    secs: u64,
    conns: usize,
    prefix: String,
    table: String,
    sample_every: u64,
    peers: Vec<SocketAddr>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        target: "127.0.0.1:8090".parse().unwrap(),
        rate: 1000,
        secs: 10,
        conns: 32,
        prefix: "k".into(),
        table: "be".into(),
        sample_every: 50,
        peers: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--target" => a.target = value()?.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = value()?.parse().map_err(|e| bad(&e))?,
            "--secs" => a.secs = value()?.parse().map_err(|e| bad(&e))?,
            "--conns" => a.conns = value()?.parse().map_err(|e| bad(&e))?,
            "--prefix" => a.prefix = value()?,
            "--table" => a.table = value()?,
            "--sample-every" => a.sample_every = value()?.parse().map_err(|e| bad(&e))?,
            "--peer" => a.peers.push(value()?.parse().map_err(|e| bad(&e))?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

/// Reads one HTTP response (head, then a `Content-Length` body) off `s`,
/// keeping what follows in `buf`.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                read_more(s, buf).await?;
            }
            buf.drain(..total);
            return Ok(());
        }
        read_more(s, buf).await?;
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    match s.read(&mut chunk).await? {
        0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        n => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

/// Whether `peer`'s admin API shows `key` in `table` now.
async fn visible(peer: SocketAddr, table: &str, key: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(peer).await else {
        return false;
    };
    let req = format!(
        "GET /tables?name={table}&key={key} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body).await;
    let Some(at) = body.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    // The admin API answers in HTTP/1.0.
    if !(body.starts_with(b"HTTP/1.0 200") || body.starts_with(b"HTTP/1.1 200")) {
        return false;
    }
    let v: serde_json::Value = serde_json::from_slice(&body[at + 4..]).unwrap_or_default();
    v[0]["entries"][0]["server"].is_string()
}

/// Shared by the workers.
struct Run {
    args: Args,
    next: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    start: Instant,
    /// When the last request was answered (µs after `start`).
    last_us: AtomicU64,
    /// Per peer: the lag of each sampled entry (ms), or none if it never
    /// showed within 5 s.
    lags: Mutex<Vec<Vec<Option<f64>>>>,
}

impl Run {
    fn total(&self) -> u64 {
        if self.args.rate == 0 {
            u64::MAX
        } else {
            self.args.rate * self.args.secs
        }
    }

    fn over(&self) -> bool {
        self.start.elapsed() >= Duration::from_secs(self.args.secs)
    }
}

async fn sample(run: Arc<Run>, key: String, written: Instant) {
    let mut tasks = Vec::new();
    for (i, &peer) in run.args.peers.iter().enumerate() {
        let (run, key) = (run.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let lag = loop {
                if visible(peer, &run.args.table, &key).await {
                    break Some(written.elapsed().as_secs_f64() * 1000.0);
                }
                if written.elapsed() > Duration::from_secs(5) {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            run.lags.lock().unwrap()[i].push(lag);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn worker(run: Arc<Run>) {
    let Ok(mut s) = TcpStream::connect(run.args.target).await else {
        run.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    let mut samplers = Vec::new();
    loop {
        let i = run.next.fetch_add(1, Ordering::Relaxed);
        if i >= run.total() || run.over() {
            break;
        }
        if run.args.rate > 0 {
            let due = run.start + Duration::from_secs_f64(i as f64 / run.args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let key = format!("{}{i}", run.args.prefix);
        let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Key: {key}\r\n\r\n");
        let sent = s.write_all(req.as_bytes()).await;
        if sent.is_err() || read_response(&mut s, &mut buf).await.is_err() {
            run.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        run.done.fetch_add(1, Ordering::Relaxed);
        let at = run.start.elapsed().as_micros() as u64;
        run.last_us.fetch_max(at, Ordering::Relaxed);
        let every = run.args.sample_every;
        if !run.args.peers.is_empty() && every > 0 && i.is_multiple_of(every) {
            samplers.push(tokio::spawn(sample(run.clone(), key, Instant::now())));
        }
    }
    for t in samplers {
        let _ = t.await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[i])
}

#[tokio::main]
async fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("raftlb-stickload: {e}");
            std::process::exit(2);
        }
    };
    let peers = args.peers.len();
    let run = Arc::new(Run {
        args,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        start: Instant::now(),
        last_us: AtomicU64::new(0),
        lags: Mutex::new(vec![Vec::new(); peers]),
    });
    let workers: Vec<_> = (0..run.args.conns)
        .map(|_| tokio::spawn(worker(run.clone())))
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let secs = (run.last_us.load(Ordering::Relaxed) as f64 / 1e6).max(1e-6);
    let done = run.done.load(Ordering::Relaxed);
    let lags = run.lags.lock().unwrap().clone();
    let per_peer: Vec<serde_json::Value> = run
        .args
        .peers
        .iter()
        .zip(lags)
        .map(|(peer, l)| {
            let missing = l.iter().filter(|x| x.is_none()).count();
            let mut seen: Vec<f64> = l.into_iter().flatten().collect();
            seen.sort_by(|a, b| a.total_cmp(b));
            serde_json::json!({
                "peer": peer.to_string(),
                "samples": seen.len(),
                "missing": missing,
                "p50_ms": percentile(&seen, 0.5),
                "p99_ms": percentile(&seen, 0.99),
                "max_ms": seen.last(),
            })
        })
        .collect();
    let out = serde_json::json!({
        "requests": done,
        "secs": secs,
        "rate": done as f64 / secs,
        "errors": run.errors.load(Ordering::Relaxed),
        "peers": per_peer,
    });
    println!("{out}");
}
