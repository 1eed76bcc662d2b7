//! A client that opens a connection to one address every few milliseconds
//! and records when each one was answered: the outage a fault causes is the
//! longest time between two answers around it. The lab runs it inside the
//! client's network namespace, the Vagrant scenario on the VMs' network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What counts as an answer.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Any byte back (a TCP backend that greets first).
    Greeting,
    /// An HTTP response with status 200 to `GET /`.
    Http200,
}

/// The probing client; stops when dropped.
pub struct Prober {
    stop: Arc<AtomicBool>,
    ok: Arc<Mutex<Vec<Instant>>>,
    failed: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    /// Starts a connection to `target` every `every`, each given `within`
    /// to be answered, from the network namespace `netns` (a path under
    /// `/var/run/netns`) or from this one.
    pub fn start(
        netns: Option<PathBuf>,
        target: SocketAddr,
        expect: Expect,
        every: Duration,
        within: Duration,
    ) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(0));
        let (flag, got, lost) = (stop.clone(), ok.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            if let Some(ns) = netns {
                use std::os::fd::AsRawFd;
                let f = std::fs::File::open(&ns).expect("open the client's namespace");
                // SAFETY: setns on this thread only, with a namespace fd we hold.
                assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !flag.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let (got, lost) = (got.clone(), lost.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(within, attempt(target, expect)).await {
                            Ok(Some(())) => got.lock().unwrap().push(Instant::now()),
                            _ => *lost.lock().unwrap() += 1,
                        }
                    });
                }
            });
        });
        Prober {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    /// How many connections were answered after `t`.
    pub fn successes_after(&self, t: Instant) -> usize {
        self.ok.lock().unwrap().iter().filter(|s| **s > t).count()
    }

    /// The first answer after `t`, if any.
    pub fn first_after(&self, t: Instant) -> Option<Instant> {
        self.ok
            .lock()
            .unwrap()
            .iter()
            .filter(|s| **s > t)
            .min()
            .copied()
    }

    /// Answers and failures so far.
    pub fn counts(&self) -> (usize, u64) {
        (self.ok.lock().unwrap().len(), *self.failed.lock().unwrap())
    }

    /// Waits until a connection is answered after `t`; panics with `what`
    /// after `deadline`.
    pub async fn wait_success_after(&self, t: Instant, what: &str, deadline: Duration) -> Instant {
        let end = Instant::now() + deadline;
        loop {
            if let Some(s) = self.first_after(t) {
                return s;
            }
            assert!(Instant::now() < end, "timed out after {deadline:?}: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The time without an answer around `t`: from the last answer before
    /// it to the first after it.
    pub fn gap_around(&self, t: Instant) -> Duration {
        let ok = self.ok.lock().unwrap();
        let before = ok.iter().filter(|s| **s <= t).max().copied();
        let after = ok.iter().filter(|s| **s > t).min().copied();
        match (before, after) {
            (Some(b), Some(a)) => a - b,
            _ => panic!("no answer on both sides of the fault"),
        }
    }

    /// The longest time without an answer from the last answer before
    /// `from` to the first answer after `to` (a fault whose instant is only
    /// known to lie between the two, such as a VM powered off by a command
    /// that takes seconds).
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut ok = self.ok.lock().unwrap().clone();
        ok.sort();
        let start = ok
            .iter()
            .rposition(|s| *s <= from)
            .expect("an answer before the fault");
        let end = ok
            .iter()
            .position(|s| *s > to)
            .expect("an answer after the fault");
        ok[start..=end]
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn attempt(to: SocketAddr, expect: Expect) -> Option<()> {
    let mut s = tokio::net::TcpStream::connect(to).await.ok()?;
    match expect {
        Expect::Greeting => {
            let mut b = [0u8; 64];
            (s.read(&mut b).await.ok()? > 0).then_some(())
        }
        Expect::Http200 => {
            s.write_all(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut head = Vec::new();
            let mut b = [0u8; 256];
            while head.len() < 12 {
                let n = s.read(&mut b).await.ok()?;
                if n == 0 {
                    return None;
                }
                head.extend_from_slice(&b[..n]);
            }
            (head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")).then_some(())
        }
    }
}
