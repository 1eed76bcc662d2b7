//! `bind` (its addresses as HAProxy writes them: `*:80`, `:80`,
//! `0.0.0.0:80`, `[::]:80`, several separated by commas) and `server` /
//! `default-server` with the options raftlb implements.

use super::fields::{int, time, Fields, Out};
use super::lex::Stmt;
use super::state::Proxy;
use crate::config::tree::Val;

/// How a server option reads its value.
#[derive(Clone, Copy)]
enum Arg {
    Flag,
    Int,
    Time,
    Word,
}

/// `(option, key in the tree, value)`.
const SERVER_OPTIONS: &[(&str, &str, Arg)] = &[
    ("check", "check", Arg::Flag),
    ("backup", "backup", Arg::Flag),
    ("inter", "inter", Arg::Time),
    ("fastinter", "fastinter", Arg::Time),
    ("downinter", "downinter", Arg::Time),
    ("rise", "rise", Arg::Int),
    ("fall", "fall", Arg::Int),
    ("weight", "weight", Arg::Int),
    ("maxconn", "maxconn", Arg::Int),
    ("observe", "observe", Arg::Word),
    ("error-limit", "error_limit", Arg::Int),
    ("on-error", "on_error", Arg::Word),
    ("slowstart", "slowstart", Arg::Time),
    ("cookie", "cookie", Arg::Word),
];

/// Server options of HAProxy that raftlb does not implement.
const UNSUPPORTED: &[&str] = &[
    "disabled",
    "ssl",
    "verify",
    "ca-file",
    "crt",
    "sni",
    "alpn",
    "proto",
    "port",
    "addr",
    "resolvers",
    "resolve-prefer",
    "init-addr",
    "send-proxy",
    "send-proxy-v2",
    "id",
    "track",
    "agent-check",
    "agent-port",
    "agent-inter",
    "on-marked-down",
    "on-marked-up",
    "maxqueue",
    "minconn",
    "check-ssl",
    "check-send-proxy",
    "redir",
    "source",
    "tfo",
    "pool-max-conn",
    "pool-purge-delay",
    "no-check",
    "no-backup",
    "enabled",
];

/// Reads the options of `s` from word `from` on into `fields`.
fn options(out: &mut Out, label: &str, s: &Stmt, from: usize, fields: &mut Fields) {
    let mut i = from;
    while let Some(opt) = s.arg(i) {
        let Some(&(_, key, arg)) = SERVER_OPTIONS.iter().find(|o| o.0 == opt) else {
            if UNSUPPORTED.contains(&opt) {
                let why = if opt == "disabled" {
                    " (put the server in maintenance with `raftlb server maint BACKEND/SERVER`)"
                } else {
                    ""
                };
                out.err(
                    label,
                    s.line,
                    format!("server option `{opt}` is not supported by raftlb{why}"),
                );
            } else {
                out.unknown(
                    label,
                    s.line,
                    "server option",
                    opt,
                    SERVER_OPTIONS.iter().map(|o| o.0),
                );
            }
            return;
        };
        if let Arg::Flag = arg {
            fields.set(key, s.line, Val::Bool(true));
            i += 1;
            continue;
        }
        let Some(text) = out.arg(label, s, i + 1, &format!("the value of `{opt}`")) else {
            return;
        };
        let v = match arg {
            Arg::Int => int(out, label, s.line, opt, text),
            Arg::Time => time(out, label, s.line, opt, text),
            _ => Some(Val::Str(text.into())),
        };
        match v {
            Some(v) => fields.set(key, s.line, v),
            None => return,
        }
        i += 2;
    }
}

/// `server NAME ADDRESS [OPTIONS]`.
pub(super) fn server(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let label = p.label.clone();
    let Some(name) = out.arg(&label, s, 1, "the server's name") else {
        return;
    };
    let Some(addr) = out.arg(&label, s, 2, "the server's address (IP:PORT)") else {
        return;
    };
    let mut fields = Fields::default();
    fields.set("name", s.line, Val::Str(name.into()));
    fields.set("address", s.line, Val::Str(address(addr)));
    for e in &p.default_server.0 {
        fields.set(&e.key, s.line, e.item.val.clone());
    }
    options(out, &label, s, 3, &mut fields);
    p.be.push("servers", s.line, Val::Table(fields.0));
}

/// `default-server [OPTIONS]`: what each later `server` of the section
/// starts from.
pub(super) fn default_server(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let label = p.label.clone();
    options(out, &label, s, 1, &mut p.default_server);
}

/// `bind ADDRESS[,ADDRESS…]`: options after the addresses are not
/// supported.
pub(super) fn bind(out: &mut Out, p: &mut Proxy, s: &Stmt) {
    let Some(list) = out.arg(&p.label, s, 1, "an address such as *:80") else {
        return;
    };
    if let Some(opt) = s.arg(2) {
        out.err(
            &p.label,
            s.line,
            format!(
                "`bind`: option `{opt}` is not supported by raftlb (it binds plain TCP addresses)"
            ),
        );
        return;
    }
    for a in list.split(',') {
        p.fe.push("bind", s.line, Val::Str(address(a)));
    }
}

/// An address as raftlb reads it: `*:80` and `:80` are `0.0.0.0:80`, as
/// HAProxy binds them; `ipv4@` and `ipv6@` prefixes go; an IPv6 address
/// without brackets takes them (its last colon is the port's).
fn address(a: &str) -> String {
    let a = a
        .strip_prefix("ipv4@")
        .or_else(|| a.strip_prefix("ipv6@"))
        .unwrap_or(a);
    if let Some(port) = a
        .strip_prefix("*:")
        .or_else(|| a.strip_prefix(':').filter(|r| !r.contains(':')))
    {
        return format!("0.0.0.0:{port}");
    }
    if !a.starts_with('[') && a.matches(':').count() > 1 {
        if let Some((ip, port)) = a.rsplit_once(':') {
            if ip.parse::<std::net::Ipv6Addr>().is_ok() {
                return format!("[{ip}]:{port}");
            }
        }
    }
    a.to_string()
}

#[cfg(test)]
mod tests {
    use super::address;

    #[test]
    fn addresses_as_haproxy_writes_them() {
        assert_eq!(address("*:80"), "0.0.0.0:80");
        assert_eq!(address(":80"), "0.0.0.0:80");
        assert_eq!(address("0.0.0.0:80"), "0.0.0.0:80");
        assert_eq!(address("[::]:80"), "[::]:80");
        assert_eq!(address(":::80"), "[::]:80");
        assert_eq!(address("ipv6@::1:8080"), "[::1]:8080");
        assert_eq!(address("ipv4@10.0.0.1:80"), "10.0.0.1:80");
        assert_eq!(
            address("example.com:80"),
            "example.com:80",
            "the validator refuses it"
        );
    }
}
