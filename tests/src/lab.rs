//! The lab: a Linux bridge and one network namespace per host (node,
//! backend, client), joined by veth pairs, on the address plan of DESIGN §9
//! (198.51.100.0/24: nodes .1–.9, clients .100–.109, backends .200–.209).
//! Partitions take a host's link down (heal brings it back), or drop the
//! packets between two hosts with nftables. Names carry a
//! per-lab prefix; everything is removed on drop, even after a panic.
//! Needs root, iproute2 and nftables.
//!
//! Sockets are made inside a namespace by a short-lived thread that enters
//! it (setns) — a socket stays in the namespace it was created in — so the
//! test process itself can be a client or a backend of any host.

use crate::{greeting, Backend, Conn};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The lab's subnet: 198.51.100.0/24.
pub const SUBNET: [u8; 3] = [198, 51, 100];

/// The name of every host's interface inside its namespace.
pub const IFACE: &str = "eth0";

/// One host of the lab: a namespace with one address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name.
    pub ns: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The veth end on the bridge (taken down to cut the host off).
    link: String,
}

impl Host {
    /// `ip:port` on this host.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip, port))
    }
}

/// A lab; dropping it removes every namespace, link and bridge it made.
pub struct Lab {
    prefix: String,
    bridge: String,
    hosts: Vec<Host>,
}

fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run `ip` (iproute2 installed?)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn nft(ns: &str, rules: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run nft (nftables installed?)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft in {ns}: {}\n{rules}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// A new, empty lab with a unique name. Panics, saying why, if this is
    /// not root.
    pub fn new() -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Interface names are at most 15 bytes: "rl" + 5 + 2 + "h" + 3.
        Lab::named(&format!("{:05}{n:02}", std::process::id() % 100_000))
    }

    /// A new, empty lab whose names all start with `rl{name}` (at most 7
    /// characters, letters and digits), for scripts that come back to it by
    /// name (`raftlb-lab`).
    pub fn named(name: &str) -> Lab {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the lab needs root (network namespaces); CI runs as root"
        );
        assert!(
            !name.is_empty() && name.len() <= 7 && name.chars().all(|c| c.is_ascii_alphanumeric()),
            "a lab name is 1-7 letters or digits: {name:?}"
        );
        let prefix = format!("rl{name}");
        let bridge = format!("{prefix}br");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let lab = Lab {
            prefix,
            bridge,
            hosts: Vec::new(),
        };
        ip(&["link", "set", &lab.bridge, "up"]);
        lab
    }

    /// The host `name` at `SUBNET.last` of the lab called `lab` (what
    /// [`Lab::host`] made there), to act on a lab another process made.
    pub fn find(lab: &str, name: &str, last: u8) -> Host {
        Host {
            ns: format!("rl{lab}-{name}"),
            ip: Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], last),
            link: format!("rl{lab}h{last}"),
        }
    }

    /// A handle on the lab called `lab` that another process made; dropping
    /// it removes nothing (`Lab::remove` does).
    pub fn find_lab(lab: &str) -> Lab {
        Lab {
            prefix: format!("rl{lab}"),
            bridge: String::new(),
            hosts: Vec::new(),
        }
    }

    /// Leaves everything in place when dropped (for `raftlb-lab up`).
    pub fn keep(mut self) {
        self.hosts.clear();
        self.bridge.clear();
    }

    /// Removes every namespace and link of the lab called `lab`.
    pub fn remove(lab: &str) {
        let prefix = format!("rl{lab}");
        let list = Command::new("ip").args(["netns", "list"]).output();
        let text = list.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        for line in text.unwrap_or_default().lines() {
            let ns = line.split_whitespace().next().unwrap_or("");
            if ns.starts_with(&format!("{prefix}-")) {
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
            }
        }
        let links = Command::new("ip").args(["-o", "link", "show"]).output();
        let text = links.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        for line in text.unwrap_or_default().lines() {
            let name = line.split(": ").nth(1).unwrap_or("");
            let name = name.split('@').next().unwrap_or("");
            let rest = name.strip_prefix(&prefix).unwrap_or("");
            let ours = rest == "br"
                || rest
                    .strip_prefix('h')
                    .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
            if ours {
                let _ = Command::new("ip").args(["link", "del", name]).output();
            }
        }
    }

    /// Adds host `name` at `SUBNET.last`.
    pub fn host(&mut self, name: &str, last: u8) -> Host {
        let ns = format!("{}-{name}", self.prefix);
        let (a, b) = (
            format!("{}h{last}", self.prefix),
            format!("{}n{last}", self.prefix),
        );
        let addr = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], last);
        ip(&["netns", "add", &ns]);
        let host = Host {
            ns: ns.clone(),
            ip: addr,
            link: a.clone(),
        };
        self.hosts.push(host.clone());
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &b, "netns", &ns]);
        ip(&["-n", &ns, "link", "set", &b, "name", IFACE]);
        ip(&["link", "set", &a, "master", &self.bridge, "up"]);
        let cidr = format!("{addr}/24");
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", IFACE]);
        ip(&["-n", &ns, "link", "set", IFACE, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        host
    }

    /// Cuts `h` off the lab network (its link goes down).
    pub fn cut(&self, h: &Host) {
        ip(&["link", "set", &h.link, "down"]);
    }

    /// Brings `h` back.
    pub fn heal(&self, h: &Host) {
        ip(&["link", "set", &h.link, "up"]);
    }

    /// Drops every packet between `a` and `b` (both ways), with nftables in
    /// `a`'s namespace; the rest of the lab still reaches both. Partial
    /// partitions: one link of a triangle.
    pub fn drop_between(&self, a: &Host, b: &Host) {
        let rules = format!(
            "table inet raftlb_lab {{\n\
             chain in {{ type filter hook input priority 0; ip saddr {b} drop; }}\n\
             chain out {{ type filter hook output priority 0; ip daddr {b} drop; }}\n}}\n",
            b = b.ip
        );
        nft(&a.ns, &rules);
    }

    /// Undoes every [`Lab::drop_between`] made in `a`'s namespace.
    pub fn heal_drops(&self, a: &Host) {
        nft(&a.ns, "delete table inet raftlb_lab\n");
    }

    /// A command that runs `program` inside `h`'s namespace.
    pub fn command(&self, h: &Host, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &h.ns]).arg(program);
        c
    }

    /// Runs `f` on a thread inside `h`'s namespace (to make sockets there).
    pub fn inside<T: Send + 'static>(
        &self,
        h: &Host,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let path = format!("/var/run/netns/{}", h.ns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path)?;
            // SAFETY: setns on this thread only, with a namespace fd we hold.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .expect("lab thread panicked")
    }

    /// Starts a backend (greeting + echo) on `h`, port `port`.
    pub fn backend(&self, h: &Host, name: &str, port: u16) -> Backend {
        let addr = h.addr(port);
        let l = self
            .inside(h, move || {
                let l = std::net::TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .expect("bind a backend in the lab");
        Backend::on_listener(
            name,
            tokio::net::TcpListener::from_std(l).expect("tokio listener"),
        )
    }

    /// Gives `h` one more address (IPv4 or IPv6, with its prefix length):
    /// one host can then be many clients.
    pub fn add_address(&self, h: &Host, cidr: &str) {
        ip(&["-n", &h.ns, "addr", "add", cidr, "dev", IFACE, "nodad"]);
    }

    /// Connects from address `src` of `from` to `to` and reads the
    /// backend's greeting.
    pub async fn connect_from(
        &self,
        from: &Host,
        src: std::net::IpAddr,
        to: SocketAddr,
    ) -> std::io::Result<Conn> {
        let s = self.inside(from, move || {
            let domain = socket2::Domain::for_address(to);
            let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            sock.bind(&SocketAddr::new(src, 0).into())?;
            sock.connect_timeout(&to.into(), Duration::from_secs(2))?;
            let s: std::net::TcpStream = sock.into();
            s.set_nonblocking(true)?;
            Ok(s)
        })?;
        greeting(tokio::net::TcpStream::from_std(s)?).await
    }

    /// Connects from `from` to `to` and reads the backend's greeting.
    pub async fn connect(&self, from: &Host, to: SocketAddr) -> std::io::Result<Conn> {
        let s = self.inside(from, move || {
            let s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })?;
        greeting(tokio::net::TcpStream::from_std(s)?).await
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.bridge.is_empty() {
            return; // kept
        }
        for h in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &h.ns]).output();
            let _ = Command::new("ip").args(["link", "del", &h.link]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hosts_reach_each_other_until_cut_and_everything_goes_on_drop() {
        let ns;
        {
            let mut lab = Lab::new();
            let (a, b) = (lab.host("a", 1), lab.host("b", 200));
            ns = a.ns.clone();
            let _srv = lab.backend(&b, "b", 8000);
            let c = lab.connect(&a, b.addr(8000)).await.unwrap();
            assert_eq!(c.server, "b");
            lab.cut(&b);
            assert!(lab.connect(&a, b.addr(8000)).await.is_err());
            lab.heal(&b);
            assert_eq!(lab.connect(&a, b.addr(8000)).await.unwrap().server, "b");
            // A dropped link: a and b no longer talk; c still reaches b.
            let c = lab.host("c", 2);
            lab.drop_between(&a, &b);
            assert!(lab.connect(&a, b.addr(8000)).await.is_err());
            assert_eq!(lab.connect(&c, b.addr(8000)).await.unwrap().server, "b");
            lab.heal_drops(&a);
            assert_eq!(lab.connect(&a, b.addr(8000)).await.unwrap().server, "b");
        }
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&ns));
    }
}

#[cfg(test)]
mod named_tests {
    use super::*;

    #[tokio::test]
    async fn a_kept_lab_is_found_by_name_and_removed_by_name() {
        let name = format!("k{:05}", std::process::id() % 100_000);
        let mut lab = Lab::named(&name);
        let (a, b) = (lab.host("a", 1), lab.host("b", 2));
        lab.keep();
        let other = Lab::find_lab(&name);
        let srv = other.backend(&Lab::find(&name, "b", 2), "b", 8000);
        assert_eq!(other.connect(&a, b.addr(8000)).await.unwrap().server, "b");
        other.cut(&Lab::find(&name, "b", 2));
        assert!(other.connect(&a, b.addr(8000)).await.is_err());
        drop(srv);
        Lab::remove(&name);
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&format!("rl{name}-")));
        let links = Command::new("ip").args(["link", "show"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&links.stdout).contains(&format!("rl{name}")));
    }
}
