//! Address patterns (`10.0.0.1`, `198.51.100.0/24`, `10.0.0.0/255.0.0.0`,
//! `2001:db8::/32`) and how an IPv4 or IPv6 client address matches them,
//! following HAProxy §7.1.6.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address with a network mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IpPattern {
    /// IPv4; the mask may be any dotted mask, as HAProxy accepts.
    V4 {
        /// The address with the bits outside the mask cleared.
        addr: u32,
        /// The mask.
        mask: u32,
    },
    /// IPv6; the mask is a prefix.
    V6 {
        /// The address with the bits outside the mask cleared.
        addr: u128,
        /// The mask.
        mask: u128,
    },
}

impl IpPattern {
    /// Parses `address[/bits]`, or `v4address/dotted.mask`. Host names are
    /// not resolved, and abbreviated IPv4 forms (`10.12`, which HAProxy reads
    /// as 10.0.0.12) are refused as too easy to misread.
    pub fn parse(text: &str) -> Result<IpPattern, String> {
        let (addr, mask) = match text.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (text, None),
        };
        if addr.contains(':') {
            let addr: Ipv6Addr = addr
                .parse()
                .map_err(|_| format!("\"{addr}\" is not an IPv6 address"))?;
            let bits = match mask {
                None => 128,
                Some(m) => match m.parse::<u32>() {
                    Ok(bits) if bits <= 128 => bits,
                    _ => return Err(format!("bad IPv6 prefix length \"{m}\" (0-128)")),
                },
            };
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            return Ok(IpPattern::V6 {
                addr: u128::from(addr) & mask,
                mask,
            });
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| {
            let dotted = !addr.is_empty()
                && addr.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if dotted && addr.split('.').count() < 4 {
                format!("write all four parts of \"{addr}\" (HAProxy would read an abbreviated address as a.0.0.b)")
            } else {
                format!("\"{addr}\" is not an IPv4 or IPv6 address (host names are not resolved)")
            }
        })?;
        let mask = match mask {
            None => u32::MAX,
            Some(m) if m.contains('.') => m
                .parse::<Ipv4Addr>()
                .map(u32::from)
                .map_err(|_| format!("bad IPv4 netmask \"{m}\""))?,
            Some(m) => match m.parse::<u32>() {
                Ok(bits) if bits <= 32 => u32::MAX.checked_shl(32 - bits).unwrap_or(0),
                _ => return Err(format!("bad IPv4 prefix length \"{m}\" (0-32)")),
            },
        };
        Ok(IpPattern::V4 {
            addr: u32::from(addr) & mask,
            mask,
        })
    }

    /// Whether `ip` is in the network. An IPv4 client tested against an IPv6
    /// pattern is first mapped to `::ffff:a.b.c.d`; an IPv6 client tested
    /// against an IPv4 pattern matches through the IPv4 address it embeds
    /// (`::ffff:a.b.c.d`, `::a.b.c.d` or 6to4 `2002:AABB:CCDD::`), else not.
    pub fn matches(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (IpPattern::V4 { addr, mask }, IpAddr::V4(v4)) => u32::from(v4) & mask == addr,
            (IpPattern::V4 { addr, mask }, IpAddr::V6(v6)) => {
                embedded_v4(v6).is_some_and(|v4| v4 & mask == addr)
            }
            (IpPattern::V6 { addr, mask }, IpAddr::V6(v6)) => u128::from(v6) & mask == addr,
            (IpPattern::V6 { addr, mask }, IpAddr::V4(v4)) => {
                u128::from(v4.to_ipv6_mapped()) & mask == addr
            }
        }
    }
}

/// The IPv4 address an IPv6 one carries, as HAProxy's `v6tov4`.
fn embedded_v4(v6: Ipv6Addr) -> Option<u32> {
    let bits = u128::from(v6);
    let mapped_or_compatible = bits >> 64 == 0 && matches!((bits >> 32) as u32, 0 | 0xffff);
    if mapped_or_compatible {
        Some(bits as u32)
    } else if bits >> 112 == 0x2002 {
        Some((bits >> 80) as u32)
    } else {
        None
    }
}

impl fmt::Display for IpPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpPattern::V4 { addr, mask } => {
                write!(f, "{}", Ipv4Addr::from(addr))?;
                if mask == u32::MAX {
                    Ok(())
                } else if mask.leading_ones() + mask.trailing_zeros() == 32 {
                    write!(f, "/{}", mask.leading_ones())
                } else {
                    write!(f, "/{}", Ipv4Addr::from(mask))
                }
            }
            IpPattern::V6 { addr, mask } => {
                write!(f, "{}", Ipv6Addr::from(addr))?;
                if mask != u128::MAX {
                    write!(f, "/{}", mask.leading_ones())?;
                }
                Ok(())
            }
        }
    }
}
