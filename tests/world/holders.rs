//! Who holds a VIP: a netlink handle inside each node's namespace, read
//! the way the node itself reads its interface.

use super::{World, DEADLINE};
use raftlb::vip::{announce, netlink::Addresses};
use raftlb_testkit::lab::IFACE;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// Each node's addresses on the lab interface.
pub struct Holders {
    vip: Ipv4Addr,
    nodes: Vec<(u64, Addresses, u32)>,
}

impl Holders {
    /// Opens a handle in every node's namespace of `w`, to look for `vip`.
    pub fn new(w: &World, vip: Ipv4Addr) -> Holders {
        let rt = tokio::runtime::Handle::current();
        let nodes = (1..=w.nodes.len() as u64)
            .map(|id| {
                let rt = rt.clone();
                let (nl, index) = w
                    .lab
                    .inside(w.host(id), move || {
                        let _in_rt = rt.enter();
                        let io = |e: raftlb::vip::VipError| std::io::Error::other(e.to_string());
                        let index = announce::interface(IFACE).map_err(io)?.index;
                        Ok((Addresses::open().map_err(io)?, index))
                    })
                    .expect("netlink in a node's namespace");
                (id, nl, index)
            })
            .collect();
        Holders { vip, nodes }
    }

    /// The nodes whose interface has the VIP now, leaving out those
    /// `skip` names.
    pub async fn now_except(&self, skip: impl Fn(u64) -> bool) -> Vec<u64> {
        let mut out = Vec::new();
        for (id, nl, index) in &self.nodes {
            if skip(*id) {
                continue;
            }
            if nl
                .has(*index, IpAddr::V4(self.vip))
                .await
                .expect("list addresses")
            {
                out.push(*id);
            }
        }
        out
    }

    /// The nodes whose interface has the VIP now.
    pub async fn now(&self) -> Vec<u64> {
        self.now_except(|_| false).await
    }

    /// Waits until the holders satisfy `cond`; returns them.
    pub async fn wait(&self, what: &str, cond: impl Fn(&[u64]) -> bool) -> Vec<u64> {
        let end = Instant::now() + DEADLINE;
        loop {
            let h = self.now().await;
            if cond(&h) {
                return h;
            }
            assert!(Instant::now() < end, "{what}: holders now {h:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
