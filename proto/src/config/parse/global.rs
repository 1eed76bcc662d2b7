//! `[global]` and `[defaults]`: the process-wide limits, and the settings
//! and timeouts that frontends and backends inherit.

use super::keywords::{balance, MODES};
use super::reader::{Cx, Tbl};
use crate::config::defaults;
use crate::config::model::{Balance, Global, HashKey, Mode};
use std::time::Duration;

/// `[global]`.
pub(super) fn read_global(cx: &mut Cx, top: &mut Tbl) -> Global {
    let mut global = Global { maxconn: None };
    if let Some((path, item)) = top.get("global") {
        if let Some(mut g) = Tbl::new(cx, &path, item) {
            global.maxconn = g.uint(cx, "maxconn", 1, 10_000_000);
            g.finish(cx);
        }
    }
    global
}

/// `[defaults]`, HAProxy's where it sets nothing.
pub(super) fn read_defaults(cx: &mut Cx, top: &mut Tbl) -> Defaults {
    let mut defaults = Defaults {
        mode: Mode::Tcp,
        maxconn: None,
        retries: defaults::RETRIES,
        redispatch: false,
        allbackups: false,
        balance: (Balance::RoundRobin, None),
        timeouts: RawTimeouts::default(),
    };
    if let Some((path, item)) = top.get("defaults") {
        if let Some(mut d) = Tbl::new(cx, &path, item) {
            defaults.mode = d.choice(cx, "mode", MODES).unwrap_or(defaults.mode);
            defaults.maxconn = d.uint(cx, "maxconn", 1, 10_000_000);
            defaults.retries = d.uint(cx, "retries", 0, 100).unwrap_or(defaults.retries);
            defaults.redispatch = d.bool(cx, "redispatch").unwrap_or(false);
            defaults.allbackups = d.bool(cx, "allbackups").unwrap_or(false);
            if let Some(b) = balance(cx, &mut d) {
                defaults.balance = b;
            }
            defaults.timeouts = timeouts(cx, &mut d, ALL_TIMEOUTS, &RawTimeouts::default());
            d.finish(cx);
        }
    }
    defaults
}

/// Settings from `[defaults]` that frontends and backends inherit.
pub(super) struct Defaults {
    pub(super) mode: Mode,
    pub(super) maxconn: Option<u32>,
    pub(super) retries: u32,
    pub(super) redispatch: bool,
    pub(super) allbackups: bool,
    pub(super) balance: (Balance, Option<HashKey>),
    pub(super) timeouts: RawTimeouts,
}

#[derive(Default, Clone)]
pub(super) struct RawTimeouts {
    pub(super) connect: Option<Duration>,
    pub(super) client: Option<Duration>,
    pub(super) server: Option<Duration>,
    pub(super) queue: Option<Duration>,
    pub(super) tunnel: Option<Duration>,
    pub(super) check: Option<Duration>,
    pub(super) http_request: Option<Duration>,
    pub(super) http_keep_alive: Option<Duration>,
}

pub(super) fn timeouts(
    cx: &mut Cx,
    t: &mut Tbl,
    allowed: &[&'static str],
    base: &RawTimeouts,
) -> RawTimeouts {
    let mut out = base.clone();
    let Some((path, item)) = t.get("timeout") else {
        return out;
    };
    let Some(mut tt) = Tbl::new(cx, &path, item) else {
        return out;
    };
    for key in allowed {
        let v = tt.duration(cx, key);
        let slot = match *key {
            "connect" => &mut out.connect,
            "client" => &mut out.client,
            "server" => &mut out.server,
            "queue" => &mut out.queue,
            "tunnel" => &mut out.tunnel,
            "check" => &mut out.check,
            "http_request" => &mut out.http_request,
            "http_keep_alive" => &mut out.http_keep_alive,
            _ => unreachable!("timeout keys are listed above"),
        };
        if v.is_some() {
            *slot = v;
        }
    }
    tt.finish(cx);
    out
}

pub(super) const ALL_TIMEOUTS: &[&str] = &[
    "connect",
    "client",
    "server",
    "queue",
    "tunnel",
    "check",
    "http_request",
    "http_keep_alive",
];
pub(super) const FRONTEND_TIMEOUTS: &[&str] = &["client", "http_request", "http_keep_alive"];
pub(super) const BACKEND_TIMEOUTS: &[&str] = &["connect", "server", "queue", "tunnel", "check"];
