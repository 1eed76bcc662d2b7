//! Telling systemd how the node is, for a `Type=notify` unit (sd_notify(3),
//! by hand: one datagram to `$NOTIFY_SOCKET`, a path or `@name` in the
//! abstract namespace): `READY=1` once the node serves, `STOPPING=1` when
//! it drains, `WATCHDOG=1` from a task of the node's runtime every half of
//! `$WATCHDOG_USEC` (so a runtime that stops turning is restarted). Outside
//! systemd (no `$NOTIFY_SOCKET`) every call does nothing.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` (`READY=1`, `STOPPING=1`, `STATUS=…`, one per line) to
/// systemd; whether it was sent (false outside systemd).
pub fn notify(state: &str) -> bool {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) => notify_to(&path, state),
        None => false,
    }
}

/// Sends `state` to the notification socket at `path` (`@name`: in the
/// abstract namespace); whether it was sent.
pub fn notify_to(path: &std::ffi::OsStr, state: &str) -> bool {
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    // Never wait for systemd: a full queue drops this message (the next
    // watchdog ping comes soon) rather than blocking a runtime thread.
    if sock.set_nonblocking(true).is_err() {
        return false;
    }
    let sent = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        }
        None => sock.send_to(state.as_bytes(), path),
    };
    match sent {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            tracing::debug!(socket = ?path, "systemd's notification queue is full; dropped one");
            false
        }
        Err(e) => {
            tracing::warn!(socket = ?path, error = %e, "cannot notify systemd");
            false
        }
    }
}

/// How often systemd wants to hear from this process (`$WATCHDOG_USEC`,
/// if `$WATCHDOG_PID` is unset or this process).
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Feeds systemd's watchdog from the current runtime, twice per interval,
/// until the returned task is aborted; none without a watchdog.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let every = watchdog_interval()? / 2;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            notify("WATCHDOG=1");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reaches_a_socket_by_path_or_abstract_name() {
        let dir = std::env::temp_dir().join(format!("raftlb-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        assert!(notify_to(path.as_os_str(), "READY=1"));
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("raftlb-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        assert!(notify_to(
            std::ffi::OsStr::new(&format!("@{name}")),
            "STOPPING=1"
        ));
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        assert!(!notify_to(
            std::ffi::OsStr::new("/nonexistent/raftlb/notify"),
            "READY=1"
        ));
    }

    #[test]
    fn a_socket_nobody_reads_drops_messages_and_never_blocks() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("raftlb-notify-full-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _listener = UnixDatagram::bind_addr(&addr).unwrap();
        let path = format!("@{name}");
        // The queue holds a few datagrams (net.unix.max_dgram_qlen); the
        // rest are dropped at once instead of waiting for a reader.
        let sent = (0..1000)
            .filter(|_| notify_to(std::ffi::OsStr::new(&path), "WATCHDOG=1"))
            .count();
        assert!(sent > 0 && sent < 1000, "{sent}");
    }
}
