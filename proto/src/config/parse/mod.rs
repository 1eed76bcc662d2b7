//! Turns a document tree into a validated [`ClusterConfig`], collecting every
//! error with its path and line instead of stopping at the first. The
//! sections are read in order: `[global]`, `[defaults]`, the backends, the
//! frontends (checked against the backends they name), the VIPs.

mod backend;
mod frontend;
mod global;
mod keywords;
mod reader;
mod rules;
mod server;
mod stick;
mod vips;

use super::error::{ConfigError, ConfigErrors};
use super::format::Format;
use super::haproxy;
use super::model::{Backend, ClusterConfig, Frontend, Global, Mode, StickTable};
use super::tree::{self, Item};
use global::Defaults;
use reader::{check_name, join, Cx, Tbl};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A valid config, and the notes on it (keywords of a haproxy.cfg
/// accepted without effect).
pub(crate) type Noted = (ClusterConfig, Vec<ConfigError>);

pub(crate) fn parse(text: &str, format: Format) -> Result<Noted, ConfigErrors> {
    if format == Format::Haproxy {
        let t = haproxy::translate(text);
        let mut cx = Cx::default();
        let config = build(&mut cx, &t.root);
        let (errors, notes) = t.merge(cx.errors);
        return match errors.is_empty() {
            true => Ok((config.expect("no errors means a config was built"), notes)),
            false => Err(ConfigErrors(errors)),
        };
    }
    let root = tree::load(text, format)?;
    let mut cx = Cx::default();
    let config = build(&mut cx, &root);
    if cx.errors.is_empty() {
        Ok((
            config.expect("no errors means a config was built"),
            Vec::new(),
        ))
    } else {
        cx.errors.sort_by_key(|e| e.line.unwrap_or(u32::MAX));
        Err(ConfigErrors(cx.errors))
    }
}

fn build(cx: &mut Cx, root: &Item) -> Option<ClusterConfig> {
    let mut top = Tbl::new(cx, "", root)?;
    let global = global::read_global(cx, &mut top);
    let defaults = global::read_defaults(cx, &mut top);
    let mut stick_tables = stick::named_tables(cx, &mut top);
    let (backends, declared) = backends(cx, &mut top, &defaults, &mut stick_tables);
    let frontends = frontends(
        cx,
        &mut top,
        (&defaults, &global),
        &declared,
        &mut stick_tables,
    );
    let mut vips_out = Vec::new();
    if let Some((path, item)) = top.get("vips") {
        vips_out = vips::vips(cx, &path, item);
    }
    top.finish(cx);

    Some(ClusterConfig {
        global,
        frontends,
        backends,
        stick_tables,
        vips: vips_out,
    })
}

/// `[backends.*]`: the valid backends, and every declared one with its
/// mode, valid or not, so that a mistake inside a backend is not reported
/// again at each frontend that names it. Each backend's own stick table
/// joins `tables` (the named ones).
fn backends(
    cx: &mut Cx,
    top: &mut Tbl,
    defaults: &Defaults,
    tables: &mut BTreeMap<String, StickTable>,
) -> (BTreeMap<String, Backend>, BTreeMap<String, Mode>) {
    let mut backends = BTreeMap::new();
    let mut declared: BTreeMap<String, Mode> = BTreeMap::new();
    let mut own: Vec<StickTable> = Vec::new();
    if let Some((path, item)) = top.get("backends") {
        if let Some(mut bt) = Tbl::new(cx, &path, item) {
            for e in bt.entries {
                let bpath = join(&path, &e.key);
                check_name(cx, &bpath, e.key_line, &e.key);
                let read = backend::backend(cx, &bpath, &e.key, &e.item, defaults, tables);
                declared.insert(e.key.clone(), read.mode);
                if let Some(b) = read.backend {
                    backends.insert(e.key.clone(), b);
                }
                own.extend(read.own_table);
            }
            bt.used.iter_mut().for_each(|u| *u = true);
            bt.finish(cx);
        }
    }
    tables.extend(own.into_iter().map(|t| (t.name.clone(), t)));
    (backends, declared)
}

/// `[frontends.*]`: the valid frontends, no address bound by two.
fn frontends(
    cx: &mut Cx,
    top: &mut Tbl,
    settings: (&Defaults, &Global),
    declared: &BTreeMap<String, Mode>,
    tables: &mut BTreeMap<String, StickTable>,
) -> BTreeMap<String, Frontend> {
    let mut own: Vec<StickTable> = Vec::new();
    let mut frontends = BTreeMap::new();
    let mut binds_seen: BTreeMap<SocketAddr, String> = BTreeMap::new();
    if let Some((path, item)) = top.get("frontends") {
        if let Some(mut ft) = Tbl::new(cx, &path, item) {
            for e in ft.entries {
                let fpath = join(&path, &e.key);
                check_name(cx, &fpath, e.key_line, &e.key);
                let known = frontend::Known {
                    backends: declared,
                    tables,
                };
                let (f, table) = frontend::frontend(cx, &fpath, &e.key, &e.item, settings, &known);
                own.extend(table);
                if let Some(f) = f {
                    for addr in &f.bind {
                        if let Some(other) = binds_seen.insert(*addr, e.key.clone()) {
                            cx.err(
                                &format!("{fpath}.bind"),
                                e.item.line,
                                format!("address {addr} is already bound by frontend {other:?}"),
                            );
                        }
                    }
                    frontends.insert(e.key.clone(), f);
                }
            }
            ft.used.iter_mut().for_each(|u| *u = true);
            ft.finish(cx);
        }
    }
    tables.extend(own.into_iter().map(|t| (t.name.clone(), t)));
    frontends
}

#[cfg(test)]
mod tests;
