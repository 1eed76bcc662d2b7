//! raftlb against HAProxy itself (Debian's /usr/sbin/haproxy): every
//! haproxy.cfg example is valid for both (`haproxy -c -f`, `raftlb check
//! -c`), and every file of tests/data/haproxy-broken/ is refused by both,
//! raftlb naming the line its first comment gives (`# expect-line: N`).
//! Without haproxy the test fails: CI installs it. And `raftlb run --lb`
//! and `raftlb config apply` take a haproxy.cfg as they take an lb.toml,
//! and `raftlb convert` prints one as the lb.toml of the same config.

use raftlb_testkit::{free_port, wait_until, which, Backend, Proc, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn haproxy() -> PathBuf {
    let found = [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("haproxy is not installed: this test compares raftlb with it (apt-get install haproxy; .ci/run installs it)")
    })
}

fn haproxy_check(file: &Path) -> Output {
    Command::new(haproxy())
        .arg("-c")
        .arg("-f")
        .arg(file)
        .output()
        .unwrap()
}

fn raftlb_check(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raftlb"))
        .arg("check")
        .arg("-c")
        .arg(file)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some("cfg".as_ref()))
        .collect();
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// HAProxy 2.5 and later refuse `nbproc`, which raftlb accepts (as `nbproc
/// 1`, with a note) because the guides write it. The only difference
/// allowed: HAProxy refuses exactly the `nbproc` lines, and accepts the
/// file once they are blanked (lines keep their numbers).
fn haproxy_accepts(file: &Path, tmp: &TempDir) {
    let body = std::fs::read_to_string(file).unwrap();
    let nbproc: Vec<usize> = body
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("nbproc"))
        .map(|(i, _)| i + 1)
        .collect();
    let out = haproxy_check(file);
    if nbproc.is_empty() {
        assert!(
            out.status.success(),
            "haproxy -c {}: {}",
            file.display(),
            text(&out)
        );
        return;
    }
    let alerts: Vec<String> = text(&out)
        .lines()
        .filter(|l| l.contains("ALERT") && l.contains("parsing ["))
        .map(String::from)
        .collect();
    assert!(
        !out.status.success(),
        "haproxy 2.6 accepts nbproc now? {}",
        text(&out)
    );
    for a in &alerts {
        assert!(
            a.contains("nbproc") && nbproc.iter().any(|n| a.contains(&format!(":{n}]"))),
            "haproxy refuses {} for more than nbproc: {a}",
            file.display()
        );
    }
    let blanked: Vec<&str> = body
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("nbproc") {
                ""
            } else {
                l
            }
        })
        .collect();
    let copy = tmp.path(&file.file_name().unwrap().to_string_lossy());
    std::fs::write(&copy, blanked.join("\n") + "\n").unwrap();
    let out = haproxy_check(&copy);
    assert!(
        out.status.success(),
        "haproxy -c {} without nbproc: {}",
        file.display(),
        text(&out)
    );
}

#[test]
fn both_accept_every_example() {
    let examples = files(&root().join("deploy/examples/haproxy"));
    assert!(examples.len() >= 5, "{examples:?}");
    let tmp = TempDir::new("raftlb-haproxy");
    for file in examples {
        haproxy_accepts(&file, &tmp);
        let out = raftlb_check(&file);
        assert!(
            out.status.success(),
            "raftlb check {}: {}",
            file.display(),
            text(&out)
        );
    }
}

#[test]
fn both_refuse_every_broken_file_and_raftlb_names_the_line() {
    let broken = files(&root().join("tests/data/haproxy-broken"));
    assert!(broken.len() >= 20, "{broken:?}");
    let mut failures = Vec::new();
    for file in &broken {
        let body = std::fs::read_to_string(file).unwrap();
        let line: u32 = body
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect-line: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: first line must be `# expect-line: N`", file.display()));
        let h = haproxy_check(file);
        if h.status.success() {
            failures.push(format!("haproxy accepts {}", file.display()));
        }
        let r = raftlb_check(file);
        let said = text(&r);
        let at = format!("{}:{line}: ", file.display());
        if r.status.success() {
            failures.push(format!("raftlb accepts {}", file.display()));
        } else if !said.lines().any(|l| l.starts_with(&at)) {
            failures.push(format!(
                "raftlb does not name line {line} of {}:\n{said}",
                file.display()
            ));
        } else if said.contains("panicked") {
            failures.push(format!("raftlb panicked on {}:\n{said}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `"${VAR}"` comes from the environment of the command that reads the
/// file, as in HAProxy: set, the file is valid for both; unset, it expands
/// to nothing with a note, and here leaves a port missing.
#[test]
fn variables_come_from_the_readers_environment() {
    let tmp = TempDir::new("raftlb-haproxy-env");
    let file = tmp.path("env.cfg");
    let body = "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 5s\n    timeout server 5s\n\
frontend web\n    bind \"127.0.0.1:${RAFTLB_TEST_PORT}\"\n    default_backend web\n\
backend web\n    server web1 127.0.0.1:9001\n";
    std::fs::write(&file, body).unwrap();
    let with = |set: bool, program: &Path, args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.args(args).arg(&file).env_remove("RAFTLB_TEST_PORT");
        if set {
            cmd.env("RAFTLB_TEST_PORT", "8080");
        }
        cmd.output().unwrap()
    };
    let raftlb = PathBuf::from(env!("CARGO_BIN_EXE_raftlb"));
    let (h, r) = (
        with(true, &haproxy(), &["-c", "-f"]),
        with(true, &raftlb, &["check", "-c"]),
    );
    assert!(h.status.success(), "{}", text(&h));
    assert!(r.status.success(), "{}", text(&r));
    let r = with(false, &raftlb, &["check", "-c"]);
    let said = text(&r);
    assert!(!r.status.success(), "{said}");
    assert!(
        said.contains(":7: note: ") && said.contains("RAFTLB_TEST_PORT is not set"),
        "{said}"
    );
    assert!(
        said.contains(":7: frontend web: `bind`: invalid address \"127.0.0.1:\""),
        "{said}"
    );
}

/// `--format haproxy` reads a haproxy.cfg of any name (`check`, `convert`);
/// without it, such a file is read by its extension.
#[test]
fn format_haproxy_reads_a_cfg_of_any_name() {
    let dir = TempDir::new("raftlb-haproxy-format");
    let conf = dir.path("haproxy.conf");
    std::fs::copy(root().join("deploy/examples/haproxy/l7.cfg"), &conf).unwrap();
    let with = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_raftlb"))
            .args(args)
            .arg(&conf)
            .output()
            .unwrap()
    };
    let out = with(&["check", "--format", "haproxy", "-c"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("cluster config is valid"),
        "{}",
        text(&out)
    );
    let out = with(&["check", "-c"]);
    assert!(!out.status.success(), "read as TOML: {}", text(&out));
    let out = with(&["convert", "--format", "haproxy"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("[frontends.www]"), "{}", text(&out));
    let out = with(&["check", "--format", "yml", "-c"]);
    assert!(
        text(&out).contains("expected toml, yaml, json or haproxy"),
        "{}",
        text(&out)
    );
}

/// A haproxy.cfg sending `fe` to one server.
fn one_server_cfg(fe: &str, server: &Backend) -> String {
    format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
frontend fe\n    bind {fe}\n    default_backend be\n\
backend be\n    server {} {}\n",
        server.name, server.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_config_apply_take_a_haproxy_cfg() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = TempDir::new("raftlb-haproxy-run");
    let fe = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let node = dir.path("node.toml");
    let data = dir.path("data");
    let node_file = format!(
        "id = 1\nname = \"t\"\ndata_dir = \"{}\"\n[admin]\nlisten = \"{admin}\"\n",
        data.display()
    );
    std::fs::write(&node, node_file).unwrap();
    // Named as /etc/haproxy/haproxy.conf might be: `--format haproxy`.
    std::fs::write(dir.path("lb.conf"), one_server_cfg(&fe, &a)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_raftlb"));
    cmd.env_remove("RAFTLB_ADMIN").env_remove("RAFTLB_LOG");
    cmd.arg("run")
        .arg("--node")
        .arg(&node)
        .arg("--lb")
        .arg(dir.path("lb.conf"))
        .args(["--format", "haproxy"]);
    let proc = Proc::spawn(cmd, &dir.path("raftlb.log"));
    let admin_addr = admin.parse().unwrap();
    wait_until("raftlb ready", Duration::from_secs(20), || async {
        raftlb::admin::get(admin_addr, "/health").await.is_ok()
    })
    .await;
    let fe_addr = fe.parse().unwrap();
    assert_eq!(which(fe_addr).await, "a", "{}", proc.output());
    std::fs::write(dir.path("next.conf"), one_server_cfg(&fe, &b)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_raftlb"))
        .env_remove("RAFTLB_ADMIN")
        .args(["config", "apply", "--format", "haproxy"])
        .arg(dir.path("next.conf"))
        .arg("--node")
        .arg(&node)
        .args(["--admin", &admin])
        .output()
        .unwrap();
    assert!(
        text(&out).contains("committed as config version 2"),
        "{}",
        text(&out)
    );
    wait_until(
        "the applied .cfg serves",
        Duration::from_secs(10),
        || async { which(fe_addr).await == "b" },
    )
    .await;
}

/// `raftlb convert` prints each example as the lb.toml of the same config.
#[test]
fn convert_prints_the_same_config_as_toml() {
    for file in files(&root().join("deploy/examples/haproxy")) {
        let out = Command::new(env!("CARGO_BIN_EXE_raftlb"))
            .arg("convert")
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", file.display(), text(&out));
        let toml = String::from_utf8(out.stdout).unwrap();
        let cfg = std::fs::read_to_string(&file).unwrap();
        let want = raftlb_proto::ClusterConfig::parse(&cfg, raftlb_proto::Format::Haproxy).unwrap();
        let got = raftlb_proto::ClusterConfig::parse(&toml, raftlb_proto::Format::Toml)
            .unwrap_or_else(|e| panic!("{}: {e}\n{toml}", file.display()));
        assert_eq!(got, want, "{}:\n{toml}", file.display());
    }
    let broken = root().join("tests/data/haproxy-broken/unknown-keyword.cfg");
    let out = Command::new(env!("CARGO_BIN_EXE_raftlb"))
        .arg("convert")
        .arg(&broken)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("unknown-keyword.cfg:14: "),
        "{}",
        text(&out)
    );
}

/// The `raftlb` binary with none of this test's environment for the admin
/// API or the log.
fn raftlb() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_raftlb"));
    c.env_remove("RAFTLB_ADMIN").env_remove("RAFTLB_LOG");
    c
}

/// Round trip through a running node, for every example: `raftlb convert
/// X.cfg -o X.toml`, `config apply X.toml`, `config show --format haproxy`,
/// then `raftlb check` and `haproxy -c` accept what it printed, it is the
/// same config as X.cfg (so it routes the same), and `config apply` of it
/// commits that config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convert_then_show_as_haproxy_then_check_gives_the_same_config() {
    let first = Backend::start("first").await;
    let dir = TempDir::new("raftlb-haproxy-round-trip");
    let admin = format!("127.0.0.1:{}", free_port());
    let node = dir.path("node.toml");
    let node_file = format!(
        "id = 1\nname = \"t\"\ndata_dir = \"{}\"\n[admin]\nlisten = \"{admin}\"\n",
        dir.path("data").display()
    );
    std::fs::write(&node, node_file).unwrap();
    let fe = format!("127.0.0.1:{}", free_port());
    std::fs::write(dir.path("lb.cfg"), one_server_cfg(&fe, &first)).unwrap();
    let mut cmd = raftlb();
    cmd.arg("run").arg("--node").arg(&node);
    cmd.arg("--lb").arg(dir.path("lb.cfg"));
    let proc = Proc::spawn(cmd, &dir.path("raftlb.log"));
    let admin_addr = admin.parse().unwrap();
    wait_until("raftlb ready", Duration::from_secs(20), || async {
        raftlb::admin::get(admin_addr, "/health").await.is_ok()
    })
    .await;
    let run = |args: &[&std::ffi::OsStr]| {
        let out = raftlb().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "raftlb {args:?}: {}\n{}",
            text(&out),
            proc.output()
        );
        out
    };
    let examples = files(&root().join("deploy/examples/haproxy"));
    assert!(examples.len() >= 5, "{examples:?}");
    for (i, file) in examples.iter().enumerate() {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let cfg = std::fs::read_to_string(file)
            .unwrap()
            .replace("127.0.0.1:8080", &fe);
        let (cfg_file, toml, shown) = (
            dir.path(&format!("{name}.cfg")),
            dir.path(&format!("{name}.toml")),
            dir.path(&format!("{name}.shown.cfg")),
        );
        std::fs::write(&cfg_file, &cfg).unwrap();
        run(&[
            "convert".as_ref(),
            cfg_file.as_ref(),
            "-o".as_ref(),
            toml.as_ref(),
        ]);
        let apply = |f: &Path| {
            let remote = [
                "--node".as_ref(),
                node.as_os_str(),
                "--admin".as_ref(),
                admin.as_ref(),
            ];
            let out = run(&[
                &["config".as_ref(), "apply".as_ref(), f.as_os_str()][..],
                &remote,
            ]
            .concat());
            assert!(
                text(&out).contains("committed as config version"),
                "{}",
                text(&out)
            );
        };
        apply(&toml);
        let out = run(&[
            "config".as_ref(),
            "show".as_ref(),
            "--format".as_ref(),
            "haproxy".as_ref(),
            "--admin".as_ref(),
            admin.as_ref(),
        ]);
        assert!(
            out.stderr.is_empty(),
            "{name}: notes for a config from a .cfg: {}",
            text(&out)
        );
        std::fs::write(&shown, &out.stdout).unwrap();
        let checked = raftlb_check(&shown);
        assert!(checked.status.success(), "{name}: {}", text(&checked));
        let haproxy = haproxy_check(&shown);
        assert!(
            haproxy.status.success(),
            "haproxy -c of the shown {name}: {}\n{}",
            text(&haproxy),
            String::from_utf8_lossy(&out.stdout)
        );
        let parse =
            |t: &str| raftlb_proto::ClusterConfig::parse(t, raftlb_proto::Format::Haproxy).unwrap();
        let back = String::from_utf8(out.stdout).unwrap();
        assert_eq!(parse(&back), parse(&cfg), "{name}: shown as\n{back}");
        apply(&shown);
        let v = raftlb::admin::get(admin_addr, "/config").await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&v).unwrap();
        assert_eq!(v["version"], 3 + 2 * i as u64, "{v}");
        assert_eq!(
            v["format"].as_str().map(str::to_lowercase).as_deref(),
            Some("haproxy")
        );
    }
}
