//! Defaults as HAProxy's.

use std::time::Duration;

/// `inter`.
pub const INTER: Duration = Duration::from_secs(2);
/// `rise`.
pub const RISE: u32 = 2;
/// `fall`.
pub const FALL: u32 = 3;
/// `weight`.
pub const WEIGHT: u32 = 1;
/// Largest `weight`.
pub const MAX_WEIGHT: u32 = 256;
/// `error_limit`.
pub const ERROR_LIMIT: u32 = 10;
/// `retries`.
pub const RETRIES: u32 = 3;
/// A frontend's `maxconn` when neither it nor `[defaults]` sets one.
pub const FRONTEND_MAXCONN: u32 = 10_000;
/// A VIP's `garp_repeat` (keepalived's `garp_master_repeat`).
pub const GARP_REPEAT: u32 = 5;
/// A VIP's `garp_interval`.
pub const GARP_INTERVAL: Duration = Duration::from_millis(20);
/// A VIP's `garp_refresh` (keepalived's second burst comes after 5 s).
pub const GARP_REFRESH: Duration = Duration::from_secs(5);
