//! A proxy section as it is read (`defaults`, `frontend`, `backend`,
//! `listen`): its kind, its frontend and backend sides, and how a proxy
//! starts from the latest `defaults`.

use super::fields::{Fields, Out};

/// What kind of section a proxy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Defaults,
    Frontend,
    Backend,
    Listen,
}

impl Kind {
    pub(super) fn word(self) -> &'static str {
        match self {
            Kind::Defaults => "defaults",
            Kind::Frontend => "frontend",
            Kind::Backend => "backend",
            Kind::Listen => "listen",
        }
    }
    pub(super) fn has_frontend(self) -> bool {
        matches!(self, Kind::Defaults | Kind::Frontend | Kind::Listen)
    }
    pub(super) fn has_backend(self) -> bool {
        matches!(self, Kind::Defaults | Kind::Backend | Kind::Listen)
    }
}

/// A proxy section being read: its frontend side and its backend side (a
/// frontend uses only the first, a backend only the second).
#[derive(Debug, Clone)]
pub(super) struct Proxy {
    pub(super) kind: Kind,
    pub(super) name: String,
    pub(super) line: u32,
    pub(super) label: String,
    pub(super) fe: Fields,
    pub(super) be: Fields,
    /// `default-server` options, which each `server` starts from.
    pub(super) default_server: Fields,
    /// Set by this section's own `default_backend`.
    pub(super) own_default_backend: bool,
}

/// Which side of a proxy a keyword sets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Front,
    Back,
    Both,
}

impl Proxy {
    pub(super) fn new(kind: Kind, name: &str, line: u32) -> Proxy {
        Proxy {
            kind,
            name: name.to_string(),
            line,
            label: kind.word().to_string(),
            fe: Fields::default(),
            be: Fields::default(),
            default_server: Fields::default(),
            own_default_backend: false,
        }
    }

    /// A new `defaults` section: HAProxy's starts from nothing.
    pub(super) fn fresh(&self, line: u32) -> Proxy {
        Proxy::new(Kind::Defaults, "", line)
    }

    /// A proxy that starts from these defaults.
    pub(super) fn inherit(&self, kind: Kind, name: &str, line: u32) -> Proxy {
        let mut p = Proxy::new(kind, name, line);
        if kind.has_frontend() {
            p.fe = self.fe.clone();
        }
        if kind.has_backend() {
            p.be = self.be.clone();
            p.default_server = self.default_server.clone();
        }
        p
    }
}

impl Proxy {
    /// Whether this section has `side`.
    pub(super) fn has(&self, side: Side) -> bool {
        match side {
            Side::Front => self.kind.has_frontend(),
            Side::Back => self.kind.has_backend(),
            Side::Both => true,
        }
    }
}

/// Keywords HAProxy refuses on the wrong side (the others it ignores with
/// a warning), and those raftlb cannot honour there.
const REFUSED_ON_THE_WRONG_SIDE: &[&str] =
    &["server", "default-server", "tcp-request", "http-request"];

impl Proxy {
    /// A keyword of the side this proxy lacks: as HAProxy, refused or ignored
    /// with a note (`http-request` in a backend HAProxy takes, raftlb has no
    /// such rules there).
    pub(super) fn wrong_side(&self, out: &mut Out, kw: &str, side: Side, line: u32) {
        let p = self;
        let (lacks, kind) = match side {
            Side::Back => ("backend", "frontend"),
            _ => ("frontend", "backend"),
        };
        let first = kw.split(' ').next().unwrap_or(kw);
        if REFUSED_ON_THE_WRONG_SIDE.contains(&first) || kw == "option forwardfor" {
            let why = match kw {
                "http-request" | "option forwardfor" => {
                    " (raftlb applies it per frontend: move it to the frontends that use this backend)"
                }
                _ => "",
            };
            let msg =
                format!("`{kw}` is not allowed in a {kind}: it has no {lacks} capability{why}");
            out.err(&p.label, line, msg);
        } else {
            let msg = format!(
                "`{kw}` is ignored: {kind} {} has no {lacks} capability (as HAProxy warns)",
                p.name
            );
            out.note(&p.label, line, msg);
        }
    }
}
