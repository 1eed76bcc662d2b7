//! Adding and removing the VIP on an interface, over rtnetlink (what `ip
//! addr add|del` does, without running it).

use super::error::VipError;
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, CacheInfo};
use std::net::IpAddr;

/// An rtnetlink connection; its task runs on the runtime that opened it.
pub struct Addresses {
    handle: rtnetlink::Handle,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for Addresses {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

fn failed(what: String) -> impl FnOnce(rtnetlink::Error) -> VipError {
    move |e| VipError::Netlink {
        what,
        error: e.to_string(),
    }
}

/// The address a message carries (IFA_LOCAL, else IFA_ADDRESS).
fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

impl Addresses {
    /// Opens a connection. Must run inside a tokio runtime.
    pub fn open() -> Result<Addresses, VipError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| VipError::Netlink {
            what: "open a netlink socket".into(),
            error: e.to_string(),
        })?;
        Ok(Addresses {
            handle,
            conn: tokio::spawn(conn),
        })
    }

    /// The addresses on interface `index`, with their prefix lengths.
    pub async fn list(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, VipError> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(failed(format!("list the addresses of interface {index}")))?;
        Ok(msgs
            .iter()
            .filter_map(|m| Some((address_of(m)?, m.header.prefix_len)))
            .collect())
    }

    /// Whether `addr` is on interface `index`.
    pub async fn has(&self, index: u32, addr: IpAddr) -> Result<bool, VipError> {
        Ok(self.list(index).await?.iter().any(|(a, _)| *a == addr))
    }

    /// Adds `addr/prefix` to interface `index` for `lifetime` seconds (the
    /// kernel removes it then, unless it is added again before: a lease the
    /// kernel enforces, which outlives no crashed or frozen process by more
    /// than that); already there, its lifetime starts again. IPv6 addresses
    /// skip duplicate address detection (a VIP moves between nodes; DAD
    /// would hold it tentative for a second).
    pub async fn add(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
        lifetime: u32,
    ) -> Result<(), VipError> {
        let mut req = self.handle.address().add(index, addr, prefix).replace();
        let mut life = CacheInfo::default();
        life.ifa_valid = lifetime;
        life.ifa_preferred = lifetime;
        let attrs = &mut req.message_mut().attributes;
        attrs.push(AddressAttribute::CacheInfo(life));
        if addr.is_ipv6() {
            attrs.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .map_err(failed(format!("add {addr}/{prefix} to interface {index}")))
    }

    /// Removes `addr` from interface `index`; whether it was there.
    pub async fn remove(&self, index: u32, addr: IpAddr) -> Result<bool, VipError> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(addr)
            .execute()
            .try_collect()
            .await
            .map_err(failed(format!("look for {addr} on interface {index}")))?;
        let mut removed = false;
        for m in msgs.into_iter().filter(|m| address_of(m) == Some(addr)) {
            match self.handle.address().del(m).execute().await {
                Ok(()) => removed = true,
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EADDRNOTAVAIL => {}
                Err(e) => return Err(failed(format!("remove {addr} from interface {index}"))(e)),
            }
        }
        Ok(removed)
    }
}
