//! The client commands: they talk to a running node's admin API and print
//! what it answers, for humans or (`--json`) for scripts.

use super::args::Remote;
use crate::admin::ClientError;
use raftlb_proto::Format;
use std::net::SocketAddr;

pub async fn status(remote: Remote) -> Result<(), ClientError> {
    let (admin, json) = (remote.admin, remote.json);
    let body = read(&remote, "/status").await?;
    if json {
        print!("{body}");
        return Ok(());
    }
    let v = parse(admin, &body)?;
    println!(
        "node {}  config version {} (applied {})",
        v["node"].as_str().unwrap_or("?"),
        v["config_version"],
        v["applied_version"]
    );
    if let Some(e) = v["apply_error"].as_str() {
        println!("last apply failed: {e}");
    }
    if let Some(fes) = v["frontends"].as_object() {
        for (name, addrs) in fes {
            println!("frontend {name}: {addrs}");
        }
    }
    if let Some(bes) = v["backends"].as_object() {
        for (name, servers) in bes {
            println!("backend {name}");
            for s in servers.as_array().into_iter().flatten() {
                let admin = match s["admin"].as_str() {
                    Some("ready") | None => String::new(),
                    Some(other) => format!(" [{other}]"),
                };
                let health = if s["up"].as_bool() == Some(true) {
                    "UP"
                } else {
                    "DOWN"
                };
                println!(
                    "  {:<12} {:<22} {:<12} {:>6} conns {:>8} total  {}{}",
                    s["name"].as_str().unwrap_or("?"),
                    s["address"].as_str().unwrap_or("?"),
                    format!("{health}{admin}"),
                    num(&s["cur_conns"]),
                    num(&s["total_conns"]),
                    if s["backup"].as_bool() == Some(true) {
                        "backup, "
                    } else {
                        ""
                    },
                    s["last_change"].as_str().unwrap_or(""),
                );
            }
        }
    }
    Ok(())
}

fn parse(admin: SocketAddr, body: &str) -> Result<serde_json::Value, ClientError> {
    serde_json::from_str(body).map_err(|e| ClientError::Protocol {
        addr: admin,
        message: e.to_string(),
    })
}

/// The admin token of the node at `--admin`, from the data_dir of
/// `--node`.
fn admin_token(remote: &Remote) -> Result<crate::admin::AdminToken, ClientError> {
    let refused = |message| ClientError::Refused { status: 0, message };
    let node = crate::nodefile::NodeConfig::load(&remote.node).map_err(|e| {
        refused(format!(
            "{e}: a write needs the admin token of the node at {}: --node names its node file",
            remote.admin
        ))
    })?;
    crate::admin::AdminToken::load(&node.data_dir).map_err(|e| {
        refused(format!(
            "{}: {e}: a write needs the node's admin token (run as root or the raftlb user)",
            crate::admin::AdminToken::path(&node.data_dir).display()
        ))
    })
}

/// `GET path`, with the node's admin token when `--node` gives it (a node
/// with `[admin] token_file` wants a token for reads too; others ignore
/// it).
async fn read(remote: &Remote, path: &str) -> Result<String, ClientError> {
    let token = admin_token(remote).ok();
    crate::admin::request(
        remote.admin,
        "GET",
        path,
        "",
        token.as_ref(),
        std::time::Duration::from_secs(10),
    )
    .await
}

/// POSTs `body` to `path` with the node's admin token, waiting up to
/// `wait_secs`. With `--json`, prints the answer and returns `None`;
/// otherwise returns it parsed, to print for humans.
async fn post(
    remote: &Remote,
    path: &str,
    body: &str,
    wait_secs: u64,
) -> Result<Option<serde_json::Value>, ClientError> {
    let token = admin_token(remote)?;
    let answer = crate::admin::request(
        remote.admin,
        "POST",
        path,
        body,
        Some(&token),
        std::time::Duration::from_secs(wait_secs),
    )
    .await?;
    if remote.json {
        print!("{answer}");
        return Ok(None);
    }
    parse(remote.admin, &answer).map(Some)
}

fn ms(v: &serde_json::Value) -> String {
    v.as_u64().map_or("-".to_string(), |m| format!("{m} ms"))
}

fn num(v: &serde_json::Value) -> String {
    v.as_u64().map_or("-".to_string(), |n| n.to_string())
}

/// `raftlb cluster status`.
pub async fn cluster_status(remote: Remote) -> Result<(), ClientError> {
    let body = read(&remote, "/cluster").await?;
    if remote.json {
        print!("{body}");
        return Ok(());
    }
    let v = parse(remote.admin, &body)?;
    println!(
        "node {} is {}; leader {}; term {}; log {}; applied {}; config version {}",
        v["id"],
        v["role"].as_str().unwrap_or("?"),
        num(&v["leader"]),
        v["term"],
        num(&v["last_log_index"]),
        num(&v["applied_index"]),
        v["config_version"],
    );
    if v["role"] == "leader" {
        println!(
            "quorum last acknowledged {} ago; lease {}",
            ms(&v["millis_since_quorum_ack"]),
            if v["lease"] == true {
                "held"
            } else {
                "NOT held (no quorum in time)"
            }
        );
    }
    if v["members_from"] != v["id"] {
        println!(
            "members as the leader (node {}) sees them:",
            v["members_from"]
        );
    }
    println!(
        "\n  {:<4} {:<12} {:<22} {:<8} {:>8} {:>6} {:>14}",
        "ID", "NAME", "ADDRESS", "ROLE", "MATCHED", "LAG", "LAST CONTACT"
    );
    for m in v["members"].as_array().into_iter().flatten() {
        println!(
            "  {:<4} {:<12} {:<22} {:<8} {:>8} {:>6} {:>14}",
            num(&m["id"]),
            m["name"].as_str().unwrap_or("?"),
            m["addr"].as_str().unwrap_or("?"),
            m["role"].as_str().unwrap_or("?"),
            num(&m["matched"]),
            num(&m["lag"]),
            ms(&m["last_contact_ms"]),
        );
    }
    print_servers(&v);
    print_vips(&v);
    Ok(())
}

/// The servers of `cluster status`: each node's health view and the
/// operator's settings.
fn print_servers(v: &serde_json::Value) {
    let health = v["health"].as_object();
    let operator = v["operator"].as_object();
    if health.is_some_and(|h| !h.is_empty()) || operator.is_some_and(|o| !o.is_empty()) {
        println!("\n  servers (each node's view):");
        let mut names: Vec<&String> = health.into_iter().flat_map(|h| h.keys()).collect();
        names.extend(operator.into_iter().flat_map(|o| o.keys()));
        names.sort();
        names.dedup();
        for name in names {
            let views: Vec<String> = v["health"][name]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(node, view)| {
                    format!(
                        "node {node}: {} ({})",
                        if view["up"].as_bool() == Some(true) {
                            "UP"
                        } else {
                            "DOWN"
                        },
                        view["reason"].as_str().unwrap_or("")
                    )
                })
                .collect();
            let op = &v["operator"][name];
            let admin = match (op["state"].as_str(), op["weight"].as_u64()) {
                (None, _) => String::new(),
                (Some(s), None) => format!("  [{}]", s.to_lowercase()),
                (Some(s), Some(w)) => format!("  [{}, weight {w}]", s.to_lowercase()),
            };
            println!("  {name:<20} {}{admin}", views.join("; "));
        }
    }
}

/// `HH:MM:SS.mmm UTC (N s ago)` for a time in ms since the Unix epoch.
fn when(unix_ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let day = unix_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC ({:.1} s ago)",
        day / 3_600_000,
        day / 60_000 % 60,
        day / 1000 % 60,
        day % 1000,
        now.saturating_sub(unix_ms) as f64 / 1000.0
    )
}

/// The VIPs (as the leader, their only possible holder, reports them) and
/// each node's standing.
fn print_vips(v: &serde_json::Value) {
    let here = &v["vips_here"];
    let leader = &v["vips_leader"];
    let report = if leader.is_object() { leader } else { here };
    let vips = report["vips"].as_array().cloned().unwrap_or_default();
    if vips.is_empty() {
        return;
    }
    println!("\n  VIPs (only the leader with a valid lease holds them):");
    if !leader.is_object() {
        println!("  no leader answered: showing this node's view");
    }
    for vip in &vips {
        let addr = vip["address"].as_str().unwrap_or("?");
        if vip["held"] == true {
            let last = vip["last_announce_ms"]
                .as_u64()
                .map_or("none yet".to_string(), when);
            println!(
                "  {addr:<20} held by node {} on {} since {}; last announcement {last} ({} sent)",
                report["node"],
                report["interface"].as_str().unwrap_or("?"),
                when(vip["since_ms"].as_u64().unwrap_or(0)),
                vip["announcements"],
            );
        } else {
            let why = vip["reason"].as_str().unwrap_or("");
            let since = vip["since_ms"].as_u64().filter(|t| *t > 0);
            println!(
                "  {addr:<20} NOT held by node {} ({why}{})",
                report["node"],
                since.map_or(String::new(), |t| format!(", since {}", when(t)))
            );
        }
    }
    if let Some(u) = report["unfit"].as_str() {
        println!("  node {} cannot serve: {u}", report["node"]);
    }
    if let Some(nodes) = v["nodes"].as_object() {
        let standing: Vec<String> = nodes
            .iter()
            .map(|(id, n)| {
                format!(
                    "node {id}: priority {}{}{}",
                    n["priority"],
                    if n["preempt"] == true {
                        ""
                    } else {
                        ", nopreempt"
                    },
                    n["unfit"]
                        .as_str()
                        .map_or(String::new(), |u| format!(", UNFIT: {u}"))
                )
            })
            .collect();
        println!("  standing: {}", standing.join("; "));
    }
}

/// `raftlb cluster leave`.
pub async fn leave(remote: Remote, node_id: Option<u64>) -> Result<(), ClientError> {
    let path = match node_id {
        Some(id) => format!("/leave?id={id}"),
        None => "/leave".to_string(),
    };
    if let Some(v) = post(&remote, &path, "", 60).await? {
        println!(
            "node {} removed from the cluster; it stops by itself",
            v["removed"]
        );
    }
    Ok(())
}

/// `raftlb config apply`: validates here first, so mistakes come back with
/// this file's name and lines, then commits through the node.
pub async fn config_apply(
    remote: Remote,
    file: crate::handle::LbFile,
    expected: Option<u64>,
) -> Result<(), ClientError> {
    let shown = file.path.display().to_string();
    let (doc, format) = crate::handle::read_lb(&file).map_err(|e| ClientError::Refused {
        status: 0,
        message: e.to_string(),
    })?;
    if let Err(errs) = raftlb_proto::ClusterConfig::parse(&doc, format) {
        return Err(ClientError::Refused {
            status: 400,
            message: format!(
                "{}{shown}: {} error(s); nothing applied",
                errs.render(&shown),
                errs.0.len()
            ),
        });
    }
    let mut path = format!(
        "/config?format={}&source={}",
        format.as_str(),
        crate::admin::escape(&shown)
    );
    if let Some(e) = expected {
        path.push_str(&format!("&expected={e}"));
    }
    if let Some(v) = post(&remote, &path, &doc, 30).await? {
        println!("{shown}: committed as config version {}", v["version"]);
    }
    Ok(())
}

/// `raftlb config show`.
pub async fn config_show(remote: Remote, form: Option<Format>) -> Result<(), ClientError> {
    let body = read(&remote, "/config").await?;
    if remote.json {
        print!("{body}");
        return Ok(());
    }
    let v = parse(remote.admin, &body)?;
    if v["version"] == 0 {
        println!("# no config committed yet");
        return Ok(());
    }
    let committed = v["format"].as_str().unwrap_or("?").to_lowercase();
    let doc = v["doc"].as_str().unwrap_or("");
    let Some(form) = form else {
        println!("# config version {} ({committed})", v["version"]);
        print!("{doc}");
        return Ok(());
    };
    let refused = |message: String| ClientError::Refused { status: 0, message };
    let format = Format::from_name(&committed).ok_or_else(|| {
        refused(format!(
            "the committed config has an unknown format {committed:?}"
        ))
    })?;
    let (text, notes) = match form {
        Format::Haproxy => {
            let cfg = raftlb_proto::ClusterConfig::parse(doc, format)
                .map_err(|e| refused(format!("the committed config does not parse here: {e}")))?;
            let w = raftlb_proto::config::to_haproxy(&cfg);
            (w.text, w.notes)
        }
        _ => {
            let (toml, notes) = raftlb_proto::config::to_toml(doc, format)
                .map_err(|e| refused(format!("the committed config does not parse here: {e}")))?;
            (toml, notes.into_iter().map(|n| n.message).collect())
        }
    };
    for n in &notes {
        eprintln!("note: {n}");
    }
    println!(
        "# config version {} ({committed}), written as {} by `raftlb config show`",
        v["version"],
        form.as_str()
    );
    print!("{text}");
    Ok(())
}

/// `raftlb server ready|drain|maint|weight`.
pub async fn server(remote: Remote, server: String, change: String) -> Result<(), ClientError> {
    if raftlb_proto::ServerKey::parse(&server).is_none() {
        return Err(ClientError::Refused {
            status: 0,
            message: format!("{server:?}: expected BACKEND/SERVER"),
        });
    }
    let path = format!("/server?name={}&{change}", crate::admin::escape(&server));
    if post(&remote, &path, "", 30).await?.is_some() {
        println!("{server}: {} on every node", change.replace('=', " "));
    }
    Ok(())
}

/// `raftlb table show [TABLE] [--key K]`.
pub async fn table_show(
    remote: Remote,
    table: Option<String>,
    key: Option<String>,
) -> Result<(), ClientError> {
    let mut path = "/tables".to_string();
    if let Some(t) = &table {
        path += &format!("?name={}", crate::admin::escape(t));
        if let Some(k) = &key {
            path += &format!("&key={}", crate::admin::escape(k));
        }
    }
    let body = read(&remote, &path).await?;
    if remote.json {
        print!("{body}");
        return Ok(());
    }
    let v = parse(remote.admin, &body)?;
    let tables = v.as_array().cloned().unwrap_or_default();
    if tables.is_empty() {
        println!("no stick tables in the running config");
    }
    for t in tables {
        println!(
            "table {} ({}, size {}): {} entries on this node",
            t["name"].as_str().unwrap_or("?"),
            t["type"].as_str().unwrap_or("?"),
            t["size"],
            t["used"],
        );
        let entries = t["entries"].as_array().cloned().unwrap_or_default();
        if entries.is_empty() {
            continue;
        }
        println!(
            "  {:<40} {:<24} {:>12}  {:<28} COUNTERS",
            "KEY", "SERVER", "EXPIRES IN", "WRITTEN BY"
        );
        for e in entries {
            let server = match (e["backend"].as_str(), e["server"].as_str()) {
                (Some(b), Some(s)) => format!("{b}/{s}"),
                _ => "-".to_string(),
            };
            let expires = e["expire_in_ms"]
                .as_u64()
                .map_or("never".to_string(), |ms| {
                    format!("{:.1} s", ms as f64 / 1000.0)
                });
            let counters: Vec<String> = e["counters"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            let written = format!(
                "node {} at {}",
                e["written_by"],
                e["written_ms"].as_u64().map_or("?".to_string(), when)
            );
            println!(
                "  {:<40} {:<24} {:>12}  {:<28} {}",
                e["key"].as_str().unwrap_or("?"),
                server,
                expires,
                written,
                counters.join(" "),
            );
        }
    }
    Ok(())
}

/// `raftlb table clear TABLE [--key K]`: on every node; says what each did.
pub async fn table_clear(
    remote: Remote,
    table: String,
    key: Option<String>,
) -> Result<(), ClientError> {
    let mut path = format!("/tables/clear?name={}", crate::admin::escape(&table));
    if let Some(k) = &key {
        path += &format!("&key={}", crate::admin::escape(k));
    }
    let Some(v) = post(&remote, &path, "", 30).await? else {
        return Ok(());
    };
    let mut unreached = 0;
    for n in v["nodes"].as_array().cloned().unwrap_or_default() {
        match (n["cleared"].as_u64(), n["error"].as_str()) {
            (Some(c), _) => println!("node {}: {c} entries cleared", n["node"]),
            (None, Some(e)) => {
                unreached += 1;
                println!("node {}: not reached ({e}); it gets the clear when it is back, for the entries other nodes hold", n["node"]);
            }
            (None, None) => println!("node {}: runs no table {table:?}", n["node"]),
        }
    }
    if unreached > 0 {
        return Err(ClientError::Refused {
            status: 0,
            message: format!("{unreached} node(s) not reached"),
        });
    }
    Ok(())
}
