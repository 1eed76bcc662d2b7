//! `[[vips]]`: each virtual IP once, as a host address with its prefix,
//! and its announcement settings.

use super::reader::{Cx, Tbl};
use crate::config::defaults;
use crate::config::model::Vip;
use crate::config::tree::{Item, Val};
use std::net::IpAddr;

/// `[[vips]]`: each address once, with its announcement settings.
pub(super) fn vips(cx: &mut Cx, path: &str, item: &Item) -> Vec<Vip> {
    let Val::Array(items) = &item.val else {
        cx.err(
            path,
            item.line,
            format!(
                "expected an array of VIPs ([[vips]]), found {}",
                item.val.kind()
            ),
        );
        return Vec::new();
    };
    let mut out: Vec<Vip> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(mut t) = Tbl::new(cx, &ipath, it) else {
            continue;
        };
        let address = match t.str(cx, "address") {
            Some((apath, line, s)) => cidr(cx, &apath, line, s),
            None => {
                cx.err(
                    &ipath,
                    it.line,
                    "missing key `address` (e.g. \"198.51.100.50/24\")",
                );
                None
            }
        };
        let garp_repeat = t
            .uint(cx, "garp_repeat", 1, 100)
            .unwrap_or(defaults::GARP_REPEAT);
        let garp_interval = t
            .duration(cx, "garp_interval")
            .unwrap_or(defaults::GARP_INTERVAL);
        let garp_refresh = match t.duration(cx, "garp_refresh") {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => Some(defaults::GARP_REFRESH),
        };
        t.finish(cx);
        let Some((address, prefix)) = address else {
            continue;
        };
        if out.iter().any(|v| v.address == address) {
            cx.err(
                &format!("{ipath}.address"),
                it.line,
                format!("VIP {address} is declared twice"),
            );
            continue;
        }
        out.push(Vip {
            address,
            prefix,
            garp_repeat,
            garp_interval,
            garp_refresh,
        });
    }
    out
}

/// `ADDRESS/PREFIX`, a host address (not the network's or loopback).
fn cidr(cx: &mut Cx, path: &str, line: Option<u32>, s: &str) -> Option<(IpAddr, u8)> {
    let bad = |cx: &mut Cx, why: &str| {
        cx.err(
            path,
            line,
            format!("invalid VIP {s:?}: {why}; expected ADDRESS/PREFIX, e.g. \"198.51.100.50/24\" or \"2001:db8::50/64\""),
        );
        None
    };
    let Some((a, p)) = s.split_once('/') else {
        return bad(cx, "no prefix length");
    };
    let Ok(address) = a.parse::<IpAddr>() else {
        return bad(cx, "not an IP address");
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match p.parse::<u8>() {
        Ok(p) if p >= 1 && p <= max => p,
        _ => return bad(cx, &format!("the prefix length must be 1-{max}")),
    };
    if address.is_loopback() || address.is_unspecified() || address.is_multicast() {
        return bad(cx, "not a unicast host address");
    }
    Some((address, prefix))
}
