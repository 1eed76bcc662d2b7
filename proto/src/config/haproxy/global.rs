//! The `global` section: `maxconn` becomes `[global] maxconn`; the process,
//! logging and TLS settings that do not change what raftlb does are
//! accepted with a note; anything else is an error.

use super::fields::{int, Fields, Out};
use super::lex::Stmt;

/// Keywords accepted and ignored, with why.
pub(super) const IGNORED: &[(&str, &str)] = &[
    ("user", "raftlb runs as its systemd unit's user"),
    ("group", "raftlb runs as its systemd unit's group"),
    ("uid", "raftlb runs as its systemd unit's user"),
    ("gid", "raftlb runs as its systemd unit's group"),
    ("daemon", "systemd runs raftlb"),
    ("master-worker", "systemd runs raftlb"),
    ("pidfile", "systemd keeps raftlb's PID"),
    ("chroot", "raftlb does not chroot"),
    (
        "log",
        "raftlb logs through its own log (the node file's [log])",
    ),
    ("log-send-hostname", "raftlb logs through its own log"),
    ("log-tag", "raftlb logs through its own log"),
    (
        "stats",
        "the admin API (`raftlb status`, /metrics) replaces the stats socket",
    ),
    ("nbthread", "threads are set by `threads` in the node file"),
    ("cpu-map", "threads are set by `threads` in the node file"),
    ("ca-base", "raftlb does not terminate TLS"),
    ("crt-base", "raftlb does not terminate TLS"),
    ("ssl-default-bind-ciphers", "raftlb does not terminate TLS"),
    (
        "ssl-default-bind-ciphersuites",
        "raftlb does not terminate TLS",
    ),
    ("ssl-default-bind-options", "raftlb does not terminate TLS"),
    (
        "ssl-default-server-ciphers",
        "raftlb does not terminate TLS",
    ),
    (
        "ssl-default-server-ciphersuites",
        "raftlb does not terminate TLS",
    ),
    (
        "ssl-default-server-options",
        "raftlb does not terminate TLS",
    ),
    ("tune.ssl.default-dh-param", "raftlb does not terminate TLS"),
    ("description", "a description changes nothing"),
];

/// One statement of `global`.
pub(super) fn keyword(out: &mut Out, global: &mut Fields, s: &Stmt) {
    let kw = s.words[0].text.as_str();
    let label = "global";
    if kw == "maxconn" {
        if let Some(n) = out.arg(label, s, 1, "the most connections") {
            if let Some(v) = int(out, label, s.line, kw, n) {
                global.set("maxconn", s.line, v);
            }
        }
        out.no_more(label, s, 2);
    } else if kw == "nbproc" {
        match s.arg(1) {
            Some("1") if s.words.len() == 2 => out.note(label, s.line, "`nbproc 1` is accepted and ignored: raftlb is one process (HAProxy 2.5 and later refuse nbproc)"),
            _ => out.err(label, s.line, "`nbproc`: raftlb is one process with threads: set `threads` in the node file"),
        }
    } else if let Some((_, why)) = IGNORED.iter().find(|(k, _)| *k == kw) {
        out.note(
            label,
            s.line,
            format!("`{kw}` is accepted and ignored: {why}"),
        );
    } else {
        let known = IGNORED.iter().map(|(k, _)| *k).chain(["maxconn", "nbproc"]);
        out.unknown(label, s.line, "keyword in section global:", kw, known);
    }
}
