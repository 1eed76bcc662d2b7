//! `GET /metrics` on the admin API: Prometheus' text format, valid for a
//! text-format parser and for `promtool check metrics` (Debian's
//! `prometheus` package; CI installs it, and without it the test fails),
//! with HAProxy's exporter names under `raftlb_`, moving with the traffic
//! and the servers' health.

mod common;

use common::{lb, TestNode};
use raftlb_testkit::{wait_until, Backend};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One scrape: the samples by name and labels (`name{a="1",b="2"}`).
async fn scrape(n: &TestNode) -> (String, BTreeMap<String, f64>) {
    let body = raftlb::admin::get(n.node.admin_addr, "/metrics")
        .await
        .expect("GET /metrics");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("a Prometheus text-format scrape");
    let mut samples = BTreeMap::new();
    for s in parsed.samples {
        let mut labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        labels.sort();
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("{}: unexpected {other:?}", s.metric),
        };
        samples.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    (body, samples)
}

fn promtool() -> &'static str {
    let path = "/usr/bin/promtool";
    assert!(
        std::path::Path::new(path).exists(),
        "promtool is not installed: this test checks the scrape with it (apt-get install prometheus; .ci/run installs it)"
    );
    path
}

/// `promtool check metrics` of `body`: what it says (nothing when all is well).
fn promtool_check(body: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn get(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| {
        panic!(
            "no sample {key} in {:#?}",
            samples.keys().collect::<Vec<_>>()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_is_valid_and_follows_traffic_and_health() {
    let (a, mut b) = (Backend::start("a").await, Backend::start("b").await);
    let servers = format!(
        "  {{ name = \"a\", address = \"{}\", check = true, inter = \"100ms\", fall = 1 }},\n  \
         {{ name = \"b\", address = \"{}\", check = true, inter = \"100ms\", fall = 1 }},\n  \
         {{ name = \"spare\", address = \"{}\", backup = true }},",
        a.addr, b.addr, a.addr
    );
    let table = "stick_table = { type = \"ip\", size = 100 }\nstick_on = \"src\"\n";
    let n = TestNode::start(&lb(&servers, table)).await;

    let (body, s) = scrape(&n).await;
    let (ok, said) = promtool_check(&body);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}\n{body}"
    );
    for server in ["a", "b"] {
        let up = format!("raftlb_server_status{{proxy=\"be\",server=\"{server}\",state=\"UP\"}}");
        assert_eq!(get(&s, &up), 1.0, "{body}");
    }
    assert_eq!(get(&s, "raftlb_backend_active_servers{proxy=\"be\"}"), 2.0);
    assert_eq!(get(&s, "raftlb_backend_backup_servers{proxy=\"be\"}"), 1.0);
    assert_eq!(get(&s, "raftlb_cluster_leader{}"), 1.0);
    assert_eq!(get(&s, "raftlb_config_version{}"), 1.0);
    assert_eq!(get(&s, "raftlb_config_applied_version{}"), 1.0);
    assert_eq!(get(&s, "raftlb_stick_table_size{table=\"be\"}"), 100.0);
    assert_eq!(get(&s, "raftlb_stick_table_entries{table=\"be\"}"), 0.0);
    let sessions = |s: &BTreeMap<String, f64>| {
        get(s, "raftlb_server_sessions_total{proxy=\"be\",server=\"a\"}")
            + get(s, "raftlb_server_sessions_total{proxy=\"be\",server=\"b\"}")
    };
    let before = sessions(&s);

    for _ in 0..4 {
        n.which("fe").await;
    }
    let (_, s) = scrape(&n).await;
    assert_eq!(
        sessions(&s),
        before + 4.0,
        "four connections, four sessions"
    );
    assert_eq!(
        get(&s, "raftlb_stick_table_entries{table=\"be\"}"),
        1.0,
        "one client"
    );

    b.stop().await;
    wait_until("b marked down", Duration::from_secs(10), || async {
        !n.is_up("be", "b")
    })
    .await;
    let (body, s) = scrape(&n).await;
    let state = |st: &str| {
        get(
            &s,
            &format!("raftlb_server_status{{proxy=\"be\",server=\"b\",state=\"{st}\"}}"),
        )
    };
    assert_eq!((state("DOWN"), state("UP")), (1.0, 0.0), "{body}");
    assert_eq!(get(&s, "raftlb_backend_active_servers{proxy=\"be\"}"), 1.0);
}

#[test]
fn promtool_finds_problems_it_is_shown() {
    // The check above means something: a counter without `_total` is a
    // problem promtool reports.
    let (_, said) =
        promtool_check("# HELP x_sessions Sessions.\n# TYPE x_sessions counter\nx_sessions 1\n");
    assert!(said.contains("x_sessions"), "{said}");
}
