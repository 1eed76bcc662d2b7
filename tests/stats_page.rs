//! The stats page (`GET /stats` of the admin API) in a real browser:
//! Debian's `chromium`, headless, driven through `chromedriver` (WebDriver,
//! by `fantoccini`). Three nodes in this process; the page of node 1 shows
//! the three members and every server, refreshes itself, turns a killed
//! backend's row DOWN, logs nothing to the console, and, given the node's
//! token, drains a server with its operator's button. A screenshot is
//! kept (its path printed) for the README. And three `raftlb` processes in
//! the namespace lab with a VIP: the browser, in a node's namespace, sees
//! who holds it, and the holder change when it dies.

mod common;
mod world;

use common::{lb, TestNode};
use fantoccini::{ClientBuilder, Locator};
use raftlb_testkit::{free_port, Backend, TempDir};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The page's own refresh period (`REFRESH_MS` in stats.html).
const REFRESH: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(20);

/// chromedriver in a process group of its own: dropping this kills the
/// group, chromedriver and the browsers it started, even on failure.
struct Driver {
    child: std::process::Child,
    port: u16,
    profile: TempDir,
}

impl Driver {
    /// chromedriver on loopback, in this namespace or (`in_ns`, a command
    /// that runs its program inside a lab host's) another.
    fn start(in_ns: Option<std::process::Command>) -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: this test drives a real browser (apt-get install chromium chromium-driver; .ci/run installs them)"
            );
        }
        let port = free_port();
        let profile = TempDir::new("raftlb-chromium");
        let mut cmd = in_ns.unwrap_or_else(|| std::process::Command::new(CHROMEDRIVER));
        let child = cmd
            .arg(format!("--port={port}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        Driver {
            child,
            port,
            profile,
        }
    }

    /// `GET` or `POST` (with a JSON body) on chromedriver's own API, for
    /// what fantoccini does not ask: the answer's body.
    fn call(&self, method: &str, path: &str, body: &str) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .ok()?;
        // chromedriver may keep the connection open: read what its
        // Content-Length says.
        let mut got = Vec::new();
        let mut buf = [0; 8192];
        loop {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>())
                    })?
                    .ok()?;
                if body.len() >= len {
                    return Some(body[..len].to_string());
                }
            }
        }
    }

    fn ready(&self) -> bool {
        self.call("GET", "/status", "")
            .is_some_and(|b| b.contains("\"ready\":true"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of the child we spawned.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Polls `cond` until it holds, at most `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < end, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A headless Chromium session through `driver`, on `page`.
async fn browse(driver: &Driver, page: &str) -> fantoccini::Client {
    eventually("chromedriver answers", DEADLINE, || async {
        driver.ready()
    })
    .await;
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,900",
                     format!("--user-data-dir={}", driver.profile.0.display())],
        },
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    let caps = caps.as_object().unwrap().clone().into_iter().collect();
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session");
    c.goto(page).await.unwrap();
    c
}

/// How many elements `css` finds on the page now.
async fn count(c: &fantoccini::Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map_or(0, |r| r.len())
}

/// The text of the first element `css` finds.
async fn text(c: &fantoccini::Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The browser console's entries at the level of an error.
async fn console_errors(c: &fantoccini::Client, driver: &Driver) -> Vec<serde_json::Value> {
    let session = c.session_id().await.unwrap().expect("a session id");
    let log = driver
        .call(
            "POST",
            &format!("/session/{session}/se/log"),
            r#"{"type":"browser"}"#,
        )
        .expect("the browser log");
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    let entries = log["value"].as_array().expect("log entries");
    entries
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_page_shows_the_cluster_and_follows_a_backend_going_down() {
    let (a, mut b) = (Backend::start("a").await, Backend::start("b").await);
    let servers = format!(
        "  {{ name = \"a\", address = \"{}\", check = true, inter = \"100ms\", fall = 1 }},\n  \
         {{ name = \"b\", address = \"{}\", check = true, inter = \"100ms\", fall = 1 }},",
        a.addr, b.addr
    );
    let nodes = TestNode::three(&lb(&servers, "")).await;
    let n1 = &nodes[0];
    // Some traffic for the counters.
    for _ in 0..4 {
        n1.which("fe").await;
    }

    let driver = Driver::start(None);
    let c = browse(&driver, &format!("http://{}/stats", n1.node.admin_addr)).await;
    let rows = |css: &'static str| {
        let c = c.clone();
        async move { count(&c, css).await }
    };
    eventually("three members on the page", DEADLINE, || async {
        rows("#members tbody tr").await == 3
    })
    .await;
    let members = text(&c, "#members tbody").await;
    for name in ["n1", "n2", "n3"] {
        assert!(members.contains(name), "{members}");
    }
    assert!(members.contains("leader"), "{members}");
    eventually("both servers UP", DEADLINE, || async {
        rows("table[data-backend=be] tr.UP").await == 2
    })
    .await;
    let fe = text(&c, "#frontends tbody").await;
    assert!(fe.starts_with("fe "), "{fe}");

    // b dies: node 1 sees it, and the page shows it at its next refresh.
    b.stop().await;
    eventually("node 1 marks b down", DEADLINE, || async {
        !n1.is_up("be", "b")
    })
    .await;
    eventually(
        "b's row DOWN within a refresh",
        REFRESH + Duration::from_secs(1),
        || async { rows("table[data-backend=be] tr.DOWN").await == 1 },
    )
    .await;
    let row = text(&c, "table[data-backend=be] tr.DOWN").await;
    assert!(row.starts_with("b "), "{row}");
    assert_eq!(
        c.find(Locator::Id("error"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        ""
    );

    let png = c.screenshot().await.unwrap();
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("stats-page.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());

    // The browser's console: nothing at the level of an error.
    let severe = console_errors(&c, &driver).await;
    assert!(severe.is_empty(), "console errors: {severe:#?}");

    // Without a token the page has no buttons; given the node's token (in
    // the fragment, which the browser never sends), an operator's.
    assert_eq!(rows("button").await, 0);
    let token = n1.admin_token();
    c.goto(&format!(
        "http://{}/stats#token={}",
        n1.node.admin_addr,
        token.as_str()
    ))
    .await
    .unwrap();
    eventually("the operator's buttons", DEADLINE, || async {
        rows("table[data-backend=be] tr button[data-state=drain]").await == 2
    })
    .await;
    let url = c.current_url().await.unwrap();
    assert!(
        !url.as_str().contains("token"),
        "the token left the address bar: {url}"
    );
    let drain_a = "table[data-backend=be] tr.UP button[data-state=drain]";
    c.find(Locator::Css(drain_a))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("a drained on every node", DEADLINE, || async {
        nodes.iter().all(|n| {
            n.node
                .runtime
                .server("be", "a")
                .is_some_and(|s| s.admin_state().as_str() == "drain")
        })
    })
    .await;
    eventually(
        "a's row DRAIN",
        REFRESH + Duration::from_secs(1),
        || async { rows("table[data-backend=be] tr.DRAIN").await == 1 },
    )
    .await;
    assert_eq!(text(&c, "#error").await, "");
    let severe = console_errors(&c, &driver).await;
    assert!(severe.is_empty(), "console errors: {severe:#?}");
    c.close().await.unwrap();
    drop(a);
}

/// In the lab: chromedriver, Chromium and the WebDriver client all inside
/// node 1's namespace, where its admin API listens on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_page_names_the_vip_holder_and_follows_it() {
    use world::holders::Holders;
    use world::vip::{cluster, only, VIP};
    let mut w = cluster([(100, true), (100, true), (100, true)]).await;
    let holders = Holders::new(&w, VIP);
    let holder = only(&holders.wait("one holder", |h| h.len() == 1).await);
    // The page of a node that will live: another than the holder.
    let viewer = if holder == 1 { 2 } else { 1 };
    let mut cmd = w
        .lab
        .command(w.host(viewer), std::path::Path::new(CHROMEDRIVER));
    cmd.env_remove("RAFTLB_LOG");
    let driver = std::sync::Arc::new(Driver::start(Some(cmd)));
    let vip = format!("{VIP}/24");
    let held_by = |driver: std::sync::Arc<Driver>, want: String| {
        let vip = vip.clone();
        move || -> std::io::Result<(String, Vec<serde_json::Value>)> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let c = browse(&driver, "http://127.0.0.1:9900/stats").await;
                let row = |name: String| format!("n{} ", name);
                eventually(
                    &format!("the page names {want} as the VIP holder"),
                    DEADLINE,
                    || {
                        let (c, vip, want) = (c.clone(), vip.clone(), row(want.clone()));
                        async move {
                            if count(&c, "#members tbody tr").await != 3 {
                                return false;
                            }
                            let rows = c
                                .find_all(Locator::Css("#members tbody tr"))
                                .await
                                .unwrap_or_default();
                            let mut holders = Vec::new();
                            for r in rows {
                                let t = r.text().await.unwrap_or_default();
                                if t.contains(&vip) {
                                    holders.push(t);
                                }
                            }
                            holders.len() == 1 && holders[0].starts_with(&want)
                        }
                    },
                )
                .await;
                let members = text(&c, "#members tbody").await;
                let severe = console_errors(&c, &driver).await;
                c.close().await.unwrap();
                Ok((members, severe))
            })
        }
    };
    let host = w.host(viewer).clone();
    let (members, severe) = w
        .lab
        .inside(&host, held_by(driver.clone(), holder.to_string()))
        .expect("the browser in the node's namespace");
    assert!(severe.is_empty(), "console errors: {severe:#?}");
    for n in ["n1", "n2", "n3"] {
        assert!(members.contains(n), "{members}");
    }

    // The holder dies: the page follows the VIP to its new holder.
    w.kill(holder);
    w.lab.cut(w.host(holder));
    let living = |h: &[u64]| -> Vec<u64> { h.iter().copied().filter(|n| *n != holder).collect() };
    let new = only(&living(
        &holders
            .wait("another holder", |h| !living(h).is_empty())
            .await,
    ));
    let (_, severe) = w
        .lab
        .inside(&host, held_by(driver.clone(), new.to_string()))
        .expect("the browser in the node's namespace");
    assert!(severe.is_empty(), "console errors: {severe:#?}");
}
