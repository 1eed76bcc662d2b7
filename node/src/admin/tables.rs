//! The admin API's stick-table endpoints: `GET /tables` (HAProxy's `show
//! table`) and `POST /tables/clear` (HAProxy's `clear table`, on every
//! node).

use super::http::{error, json, Answer, Req};
use super::state::AdminState;
use super::views::{TableEntryView, TableView};
use crate::stick::{now_ms, sync, StickTable};
use raftlb_proto::config::StickType;
use raftlb_proto::stick::TableKey;

/// `GET /tables?name=&key=`: this node's stick tables (one with `name`),
/// their entries (one with `key`).
pub(super) fn show(req: Req, state: &AdminState) -> Answer {
    let all = state.runtime.stick_tables();
    // A backend's name stands for the table its `stick_on` uses (HAProxy's
    // `show table BACKEND`).
    let name = req.query.get("name").map(|n| table_of(state, n));
    let name = name.as_ref();
    let chosen: Vec<&StickTable> = all
        .iter()
        .map(|t| &**t)
        .filter(|t| name.is_none_or(|n| t.name() == n))
        .collect();
    if let (Some(n), true) = (name, chosen.is_empty()) {
        let known: Vec<&str> = all.iter().map(|t| t.name()).collect();
        return error(
            404,
            format!("no stick table {n:?} (tables: {})", known.join(", ")),
        );
    }
    let key = match (req.query.get("key"), chosen.as_slice()) {
        (None, _) => None,
        (Some(k), [t]) => match TableKey::parse(t.key_type(), k) {
            Ok(k) => Some(k),
            Err(why) => return error(400, format!("key: {why}")),
        },
        (Some(_), _) => return error(400, "key: name one table (name=) to look a key up in"),
    };
    let now = now_ms();
    json(
        &chosen
            .iter()
            .map(|t| table_view(t, key.as_ref(), now))
            .collect::<Vec<_>>(),
    )
}

/// The table `name` means: a table of that name, else the table backend
/// `name` sticks on, else `name` (to be reported unknown).
fn table_of(state: &AdminState, name: &str) -> String {
    let all = state.runtime.stick_tables();
    if all.iter().any(|t| t.name() == name) {
        return name.to_string();
    }
    state
        .runtime
        .config()
        .and_then(|c| {
            c.backends
                .get(name)?
                .stick_on
                .as_ref()
                .map(|s| s.table.clone())
        })
        .unwrap_or_else(|| name.to_string())
}

fn table_view(t: &StickTable, key: Option<&TableKey>, now: u64) -> TableView {
    // Cleared entries (tombstones: no server, no counter) are not shown
    // (but count in `used` until they expire: they take room).
    let mut found = match key {
        Some(k) => t.get(k, now).map(|e| (k.clone(), e)).into_iter().collect(),
        None => t.entries(now),
    };
    found.retain(|(_, e)| e.server.is_some() || !e.counters.is_empty());
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let entries = found
        .into_iter()
        .map(|(k, e)| TableEntryView {
            key: k.to_string(),
            backend: e.server.as_ref().map(|s| s.backend.to_string()),
            server: e.server.as_ref().map(|s| s.server.to_string()),
            expire_in_ms: e.expire_at_ms.map(|at| at.saturating_sub(now)),
            written_by: e.written.node,
            written_ms: e.written.at_ms,
            counters: e
                .counters
                .iter()
                .map(|(d, c)| (d.to_string(), c.value(d.period_ms().unwrap_or(0), now)))
                .collect(),
        })
        .collect();
    TableView {
        name: t.name().to_string(),
        key_type: match t.key_type() {
            StickType::Ip => "ip",
            StickType::Integer => "integer",
            StickType::String { .. } => "string",
        },
        size: t.size(),
        used: t.len(),
        entries,
    }
}

/// `POST /tables/clear?name=&key=`: clears table `name` (its entry `key`
/// only) on this node and on every peer; answers what each node did.
pub(super) async fn clear(req: Req, state: &AdminState) -> Answer {
    let Some(name) = req.query.get("name") else {
        return error(400, "name: which table to clear");
    };
    let tables = state.runtime.stick_tables();
    let Some(t) = tables.iter().find(|t| t.name() == name) else {
        let known: Vec<&str> = tables.iter().map(|t| t.name()).collect();
        return error(
            404,
            format!("no stick table {name:?} (tables: {})", known.join(", ")),
        );
    };
    let key = match req
        .query
        .get("key")
        .map(|k| TableKey::parse(t.key_type(), k))
    {
        None => None,
        Some(Ok(k)) => Some(k),
        Some(Err(why)) => return error(400, format!("key: {why}")),
    };
    let done = sync::clear_everywhere(&state.cluster, &state.runtime, name, key.as_ref()).await;
    json(&serde_json::json!({ "table": name, "nodes": done }))
}
