//! A cluster formed the way the systemd unit runs it: every node is only
//! ever `raftlb run` with its node file. The first has `[cluster]
//! bootstrap = true`, the others `join` and the `token` that `raftlb
//! cluster token` prints on the first; a restarted node resumes from its
//! state (it does not join again); mistakes in those keys are refused by
//! `raftlb check`.

use raftlb_testkit::{connect, free_port, wait_until, Backend, Proc, TempDir};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_raftlb");
const DEADLINE: Duration = Duration::from_secs(20);

fn raftlb() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("RAFTLB_ADMIN")
        .env_remove("RAFTLB_LOG")
        .env_remove("RAFTLB_TOKEN");
    c
}

struct Member {
    node: PathBuf,
    admin: SocketAddr,
    proc: Option<Proc>,
}

/// Node `id`'s file: its cluster port, admin port and `extra` `[cluster]`
/// keys.
fn node_file(dir: &TempDir, id: u64, cluster: u16, admin: u16, extra: &str) -> PathBuf {
    let path = dir.path(&format!("n{id}.toml"));
    std::fs::write(
        &path,
        format!(
            "id = {id}\nname = \"n{id}\"\ndata_dir = \"{}\"\n[cluster]\nlisten = \"127.0.0.1:{cluster}\"\n{extra}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n",
            dir.path(&format!("data{id}")).display()
        ),
    )
    .unwrap();
    path
}

fn run(dir: &TempDir, m: &mut Member, lb: &PathBuf, log: &str) {
    let mut c = raftlb();
    c.arg("run").arg("--node").arg(&m.node).arg("--lb").arg(lb);
    m.proc = Some(Proc::spawn(c, &dir.path(log)));
}

async fn wait_ready(m: &Member) {
    let what = format!("the node at {} is ready", m.admin);
    wait_until(&what, DEADLINE, || async {
        raftlb::admin::get(m.admin, "/health").await.is_ok()
    })
    .await;
}

async fn voters(m: &Member) -> usize {
    let Ok(body) = raftlb::admin::get(m.admin, "/cluster").await else {
        return 0;
    };
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["members"]
        .as_array()
        .map_or(0, |ms| ms.iter().filter(|m| m["role"] == "voter").count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_form_and_join_from_their_node_files_and_resume_after_a_restart() {
    let dir = TempDir::new("raftlb-formation");
    let backend = Backend::start("a").await;
    let fe = free_port();
    let lb = dir.path("lb.toml");
    std::fs::write(
        &lb,
        format!(
            "[defaults]\nmode = \"tcp\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\
             [frontends.fe]\nbind = [\"127.0.0.1:{fe}\"]\ndefault_backend = \"be\"\n\
             [backends.be]\nservers = [{{ name = \"a\", address = \"{}\" }}]\n",
            backend.addr
        ),
    )
    .unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let first = ports[0].0;
    let mut m1 = Member {
        node: node_file(&dir, 1, ports[0].0, ports[0].1, "bootstrap = true"),
        admin: format!("127.0.0.1:{}", ports[0].1).parse().unwrap(),
        proc: None,
    };
    run(&dir, &mut m1, &lb, "n1.log");
    wait_ready(&m1).await;
    let c = connect(format!("127.0.0.1:{fe}").parse().unwrap()).await;
    assert_eq!(c.expect("node 1 serves its --lb").server, "a");

    let out = raftlb()
        .args(["cluster", "token", "--node"])
        .arg(&m1.node)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("rlb1-"), "{token}");

    let mut others = Vec::new();
    for id in [2u64, 3] {
        let (cluster, admin) = ports[id as usize - 1];
        let extra = format!("join = \"127.0.0.1:{first}\"\ntoken = \"{token}\"");
        let mut m = Member {
            node: node_file(&dir, id, cluster, admin, &extra),
            admin: format!("127.0.0.1:{admin}").parse().unwrap(),
            proc: None,
        };
        run(&dir, &mut m, &lb, &format!("n{id}.log"));
        wait_ready(&m).await;
        others.push(m);
    }
    wait_until("three voters", DEADLINE, || async {
        voters(&m1).await == 3
    })
    .await;

    // Node 2 restarts with the same file: it resumes, and does not ask to
    // join again.
    let m2 = &mut others[0];
    let p = m2.proc.take().unwrap();
    p.signal(libc::SIGTERM);
    let mut p = p;
    wait_until("node 2 stops", DEADLINE, || {
        let done = p.child.try_wait().unwrap().is_some();
        async move { done }
    })
    .await;
    run(&dir, m2, &lb, "n2.again.log");
    wait_ready(m2).await;
    let again = std::fs::read_to_string(dir.path("n2.again.log")).unwrap();
    assert!(
        !again.contains("asking the cluster to add this node"),
        "it joined again:\n{again}"
    );
    assert!(std::fs::read_to_string(dir.path("n2.log"))
        .unwrap()
        .contains("joined the cluster"));
    wait_until("three voters still", DEADLINE, || async {
        voters(&m1).await == 3
    })
    .await;
}

#[test]
fn formation_keys_that_do_not_fit_together_are_refused() {
    let dir = TempDir::new("raftlb-formation-check");
    for (extra, message) in [
        ("join = \"127.0.0.1:1\"", "cluster.token"),
        ("token = \"rlb1-00\"", "without cluster.join"),
        (
            "bootstrap = true\njoin = \"127.0.0.1:1\"\ntoken = \"x\"",
            "not both",
        ),
        (
            "join = \"127.0.0.1:1\"\ntoken = \"nonsense\"",
            "cluster.token",
        ),
    ] {
        let node = node_file(&dir, 1, free_port(), free_port(), extra);
        let out = raftlb().arg("check").arg("-c").arg(&node).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {err}");
        assert!(err.contains(message), "{extra}: {err}");
    }
}
