//! The VIPs on the interface, through rtnetlink: adding one this node
//! takes, removing one it releases, and reconciling the interface with what
//! it holds (a held VIP someone removed goes back; one it does not hold
//! goes).

use super::holder::{Held, Holder};
use super::{announce, netlink};
use raftlb_proto::config::Vip;
use std::net::IpAddr;
use std::time::SystemTime;
use tokio::time::Instant;

impl Holder {
    fn index(&self) -> Option<(u32, String)> {
        let name = self.fitness.settings.interface.clone()?;
        announce::interface(&name).ok().map(|i| (i.index, name))
    }

    fn nl(&mut self) -> Option<&netlink::Addresses> {
        if self.nl.is_none() {
            match netlink::Addresses::open() {
                Ok(nl) => self.nl = Some(nl),
                Err(e) => tracing::error!(error = %e, "VIP: no netlink"),
            }
        }
        self.nl.as_ref()
    }

    pub(super) async fn take(&mut self, v: &Vip) {
        let Some((index, iface)) = self.index() else {
            return;
        };
        let lifetime = self.lifetime;
        let Some(nl) = self.nl() else { return };
        if let Err(e) = nl.add(index, v.address, v.prefix, lifetime).await {
            tracing::error!(vip = %v.cidr(), error = %e, "cannot take the VIP");
            return;
        }
        let s = self.cluster.status();
        tracing::info!(vip = %v.cidr(), interface = %iface, term = s.term, "took VIP: leader with a quorum lease");
        self.held.insert(
            v.address,
            Held {
                vip: v.clone(),
                since: SystemTime::now(),
                sent: 0,
                next: Some(Instant::now()),
                last: None,
            },
        );
        self.announce(&[v.address]);
        let _ = self.notify.send((
            "MASTER",
            v.cidr(),
            "took: leader with a quorum lease".into(),
        ));
    }

    /// Starts each held VIP's lifetime again (see [`super::holder::lifetime_for`]).
    pub(super) async fn renew(&mut self) {
        let Some((index, _)) = self.index() else {
            return;
        };
        let vips: Vec<Vip> = self.held.values().map(|h| h.vip.clone()).collect();
        let lifetime = self.lifetime;
        let Some(nl) = self.nl() else { return };
        for v in vips {
            if let Err(e) = nl.add(index, v.address, v.prefix, lifetime).await {
                tracing::error!(vip = %v.cidr(), error = %e, "cannot renew the VIP's lifetime");
            }
        }
    }

    pub(super) async fn release(&mut self, addr: IpAddr, why: &str) {
        let Some(h) = self.held.remove(&addr) else {
            return;
        };
        let cidr = h.vip.cidr();
        match self.index() {
            Some((index, iface)) => match self.nl() {
                Some(nl) => match nl.remove(index, addr).await {
                    Ok(_) => {
                        tracing::warn!(vip = %cidr, interface = %iface, reason = %why, "released VIP")
                    }
                    Err(e) => tracing::error!(vip = %cidr, error = %e, "cannot release the VIP"),
                },
                None => tracing::error!(vip = %cidr, "cannot release the VIP: no netlink"),
            },
            None => {
                tracing::warn!(vip = %cidr, reason = %why, "released VIP (its interface is gone)")
            }
        }
        let _ = self.notify.send(("BACKUP", cidr, why.to_string()));
    }

    /// Makes the interface agree: a held VIP someone removed goes back (and
    /// is announced again); a configured VIP this node does not hold goes
    /// (a crashed process's leftover, or one added by hand).
    pub(super) async fn reconcile(&mut self, vips: &[Vip]) {
        let Some((index, iface)) = self.index() else {
            return;
        };
        let lifetime = self.lifetime;
        let Some(nl) = self.nl() else { return };
        let present = match nl.list(index).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the interface's addresses");
                return;
            }
        };
        let mut readd = Vec::new();
        let mut stale = Vec::new();
        for v in vips {
            let on = present.iter().any(|(a, _)| *a == v.address);
            match (self.held.contains_key(&v.address), on) {
                (true, false) => readd.push(v.clone()),
                (false, true) => stale.push(v.clone()),
                _ => {}
            }
        }
        for v in readd {
            tracing::warn!(vip = %v.cidr(), interface = %iface, "held VIP was removed from the interface: adding it back");
            if let Some(nl) = self.nl() {
                if let Err(e) = nl.add(index, v.address, v.prefix, lifetime).await {
                    tracing::error!(vip = %v.cidr(), error = %e, "cannot add the VIP back");
                }
            }
            self.announce(&[v.address]);
        }
        for v in stale {
            if let Some(nl) = self.nl() {
                match nl.remove(index, v.address).await {
                    Ok(_) => {
                        tracing::warn!(vip = %v.cidr(), interface = %iface, reason = "this node does not hold it (left by a crash, or added by hand)", "released VIP")
                    }
                    Err(e) => {
                        tracing::error!(vip = %v.cidr(), error = %e, "cannot remove a stale VIP")
                    }
                }
            }
        }
    }
}
