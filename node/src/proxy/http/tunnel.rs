//! Tunnels: once a server agrees to an upgrade (101) or a CONNECT (2xx),
//! both connections become one, spliced until both sides are done or
//! `timeout tunnel` passes idle.

use super::log::HttpLog;
use std::time::Duration;

pub(super) fn req_was_connect(log: &HttpLog) -> bool {
    log.connect
}

/// Copies both ways until both sides are done, or nothing moved for `idle`
/// (`timeout tunnel`); bytes up and down.
pub(super) async fn splice<A, B>(a: A, b: B, idle: Option<Duration>) -> (u64, u64)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (mut up, mut down) = (0u64, 0u64);
    let (mut a_open, mut b_open) = (true, true);
    let mut abuf = vec![0u8; 16 * 1024];
    let mut bbuf = vec![0u8; 16 * 1024];
    while a_open || b_open {
        let wait = async {
            match idle {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = ar.read(&mut abuf), if a_open => match r {
                Ok(0) | Err(_) => { a_open = false; let _ = bw.shutdown().await; }
                Ok(n) => {
                    if bw.write_all(&abuf[..n]).await.is_err() { break; }
                    up += n as u64;
                }
            },
            r = br.read(&mut bbuf), if b_open => match r {
                Ok(0) | Err(_) => { b_open = false; let _ = aw.shutdown().await; }
                Ok(n) => {
                    if aw.write_all(&bbuf[..n]).await.is_err() { break; }
                    down += n as u64;
                }
            },
            _ = wait => break,
        }
    }
    (up, down)
}
