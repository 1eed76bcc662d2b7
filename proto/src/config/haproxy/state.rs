//! A proxy section as it is read (`defaults`, `frontend`, `backend`,
//! `listen`): its kind, its frontend and backend sides, and how a proxy
//! starts from the latest `defaults`.

use super::fields::Fields;

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
