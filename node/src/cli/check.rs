//! `raftlb check`: validates node files and cluster configs, like
//! `haproxy -c -f`; `raftlb convert`: a cluster config as TOML.

use crate::nodefile::NodeConfig;
use raftlb_proto::{ClusterConfig, ConfigErrors, Format};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Node,
    Cluster,
}

/// A TOML file with a top-level `id`, `name` or `data_dir` is a node file;
/// everything else (and every file of a `--format`) is a cluster config.
fn kind_of(path: &Path, format: Option<Format>, text: &str) -> Kind {
    if format.is_some() || Format::from_path(&path.to_string_lossy()) != Format::Toml {
        return Kind::Cluster;
    }
    let keys: Vec<String> = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<std::collections::HashMap<String, config::Value>>())
        .map(|m| m.into_keys().collect())
        .unwrap_or_default();
    let node_keys = ["id", "name", "data_dir"];
    if keys.iter().any(|k| node_keys.contains(&k.as_str())) {
        Kind::Node
    } else {
        Kind::Cluster
    }
}

/// A cluster config, its notes printed on stderr (as `haproxy -c` prints
/// its warnings): for a haproxy.cfg, the keywords accepted without effect
/// and the environment variables that are not set.
fn parse_cluster(shown: &str, format: Format, text: &str) -> Result<ClusterConfig, ConfigErrors> {
    let mut notes = Vec::new();
    let mut text = std::borrow::Cow::Borrowed(text);
    if format == Format::Haproxy {
        let expanded = crate::handle::expand_env(&text);
        notes = expanded.notes;
        text = expanded.text.into();
    }
    print_notes(shown, &notes);
    let (config, notes) = ClusterConfig::parse_noted(&text, format)?;
    print_notes(shown, &notes);
    Ok(config)
}

fn print_notes(shown: &str, notes: &[raftlb_proto::ConfigError]) {
    for n in notes {
        let line = n.line.map(|l| format!("{l}:")).unwrap_or_default();
        let path = match n.path.is_empty() {
            true => String::new(),
            false => format!("{}: ", n.path),
        };
        eprintln!("{shown}:{line} note: {path}{}", n.message);
    }
}

/// `raftlb check`.
pub fn check(files: &[PathBuf], format: Option<Format>) -> ExitCode {
    let mut ok = true;
    for path in files {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{shown}: cannot read: {e}");
                ok = false;
                continue;
            }
        };
        match kind_of(path, format, &text) {
            Kind::Node => match NodeConfig::load_with_env(path, Default::default()) {
                Ok(n) => println!("{shown}: node file is valid (node {} {:?})", n.id, n.name),
                Err(e) => {
                    eprintln!("{e}");
                    ok = false;
                }
            },
            Kind::Cluster => match parse_cluster(
                &shown,
                format.unwrap_or_else(|| Format::from_path(&shown)),
                &text,
            ) {
                Ok(c) => {
                    let servers: usize = c.backends.values().map(|b| b.servers.len()).sum();
                    println!(
                        "{shown}: cluster config is valid ({} frontends, {} backends, {servers} servers)",
                        c.frontends.len(),
                        c.backends.len()
                    );
                }
                Err(errs) => {
                    eprint!("{}", errs.render(&shown));
                    eprintln!("{shown}: {} error(s)", errs.0.len());
                    ok = false;
                }
            },
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `raftlb convert`: the TOML on stdout, or in `output`.
pub fn convert(file: &crate::handle::LbFile, output: Option<&Path>) -> ExitCode {
    let shown = file.path.display().to_string();
    let (text, format) = match crate::handle::read_lb(file) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match raftlb_proto::config::to_toml(&text, format) {
        Ok((toml, notes)) => {
            print_notes(&shown, &notes);
            let toml = format!("# {shown}, converted by `raftlb convert`.\n{toml}");
            let Some(out) = output else {
                print!("{toml}");
                return ExitCode::SUCCESS;
            };
            match std::fs::write(out, toml) {
                Ok(()) => {
                    eprintln!("{shown}: written as {}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: cannot write: {e}", out.display());
                    ExitCode::FAILURE
                }
            }
        }
        Err(errs) => {
            eprint!("{}", errs.render(&shown));
            eprintln!("{shown}: {} error(s)", errs.0.len());
            ExitCode::FAILURE
        }
    }
}
