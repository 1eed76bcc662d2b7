//! The admin API: a small HTTP server (hyper's HTTP/1) on `[admin] listen`
//! (loopback, or beyond with `[admin] token_file`: then every request needs
//! a token of a role) that the CLI, scripts and the stats page use. No
//! other request from a web page is served; writes need the node's admin
//! token or an operator's. Reads: `GET /stats` (the page), `/health` (200
//! once the node has started), `/status`
//! (this node's proxy), `/cluster` (members, roles, every node's view of
//! every server), `/config`, `/tables` (this node's stick tables),
//! `/metrics` (Prometheus' text format). Writes,
//! committed through the cluster:
//! `POST /config`, `/leave`, `/server`; and `POST /tables/clear`, carried
//! to every node by the stick-table sync.

pub mod client;
mod guard;
mod http;
mod metrics;
mod routes;
mod server;
mod state;
mod tables;
mod token;
mod users;
mod views;

pub use client::{get, request, ClientError};
pub use guard::WRITE_CONTENT_TYPE;
pub use http::escape;
pub use server::serve;
pub use state::AdminState;
pub use token::{AdminToken, TOKEN_FILE};
pub use users::Users;
pub use views::{ClusterView, ConfigView, NodeStatus, TableEntryView, TableView};
