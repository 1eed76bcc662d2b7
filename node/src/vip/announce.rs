//! Announcing a VIP on its link: gratuitous ARP for IPv4 (an ARP request
//! from the VIP for the VIP, to the broadcast address, as keepalived sends
//! it) and an unsolicited neighbour advertisement for IPv6 (to all nodes,
//! with the override flag), through pnet on the raw link.

use super::error::VipError;
use pnet_datalink::{Channel, MacAddr, NetworkInterface};
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::icmpv6::Icmpv6Packet;
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::MutableIpv6Packet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const ETH: usize = 14;
const ARP: usize = 28;
const IPV6: usize = 40;
/// ICMPv6 header (4) + flags (4) + target (16) + target link-layer option (8).
const NA: usize = 32;

/// The interface `name` (its index, MAC and flags), as the kernel has it now.
pub fn interface(name: &str) -> Result<NetworkInterface, VipError> {
    pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| VipError::NoInterface(name.to_string()))
}

/// The Ethernet frame that announces `vip` as being at `mac`.
pub fn frame(mac: MacAddr, vip: IpAddr) -> Vec<u8> {
    match vip {
        IpAddr::V4(ip) => garp(mac, ip),
        IpAddr::V6(ip) => unsolicited_na(mac, ip),
    }
}

fn garp(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    let mut buf = vec![0u8; ETH + ARP];
    let mut eth = MutableEthernetPacket::new(&mut buf).expect("frame size");
    eth.set_destination(MacAddr::broadcast());
    eth.set_source(mac);
    eth.set_ethertype(EtherTypes::Arp);
    let mut arp = MutableArpPacket::new(&mut buf[ETH..]).expect("ARP size");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(mac);
    arp.set_sender_proto_addr(ip);
    arp.set_target_hw_addr(MacAddr::broadcast());
    arp.set_target_proto_addr(ip);
    buf
}

fn unsolicited_na(mac: MacAddr, ip: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut buf = vec![0u8; ETH + IPV6 + NA];
    let mut eth = MutableEthernetPacket::new(&mut buf).expect("frame size");
    eth.set_destination(MacAddr::new(0x33, 0x33, 0, 0, 0, 1));
    eth.set_source(mac);
    eth.set_ethertype(EtherTypes::Ipv6);
    let mut v6 = MutableIpv6Packet::new(&mut buf[ETH..]).expect("IPv6 size");
    v6.set_version(6);
    v6.set_payload_length(NA as u16);
    v6.set_next_header(IpNextHeaderProtocols::Icmpv6);
    v6.set_hop_limit(255);
    v6.set_source(ip);
    v6.set_destination(all_nodes);
    let na = &mut buf[ETH + IPV6..];
    na[0] = 136; // neighbour advertisement
    na[4] = 0x20; // override; neither router nor solicited
    na[8..24].copy_from_slice(&ip.octets());
    na[24] = 2; // target link-layer address
    na[25] = 1; // in units of 8 bytes
    na[26..32].copy_from_slice(&mac.octets());
    let sum =
        pnet_packet::icmpv6::checksum(&Icmpv6Packet::new(na).expect("NA size"), &ip, &all_nodes);
    na[2..4].copy_from_slice(&sum.to_be_bytes());
    buf
}

/// Sends `count` announcements of each of `vips` on `iface` right now (a
/// raw socket is opened for the purpose and closed again, so that it does
/// not copy the link's traffic while the VIP is merely held).
pub fn send(iface: &NetworkInterface, vips: &[IpAddr]) -> Result<(), VipError> {
    let mac = iface
        .mac
        .ok_or_else(|| VipError::Announce(format!("{} has no MAC address", iface.name)))?;
    let config = pnet_datalink::Config {
        promiscuous: false,
        read_buffer_size: 256,
        ..Default::default()
    };
    let (mut tx, _rx) = match pnet_datalink::channel(iface, config) {
        Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
        Ok(_) => return Err(VipError::Announce("not an Ethernet link".into())),
        Err(e) => {
            return Err(VipError::Announce(format!(
                "raw socket on {}: {e}",
                iface.name
            )))
        }
    };
    for vip in vips {
        let f = frame(mac, *vip);
        match tx.send_to(&f, None) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(VipError::Announce(format!("send on {}: {e}", iface.name))),
            None => return Err(VipError::Announce("the raw socket sent nothing".into())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::arp::ArpPacket;
    use pnet_packet::ethernet::EthernetPacket;
    use pnet_packet::Packet;

    const MAC: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x07);

    #[test]
    fn garp_is_a_broadcast_request_from_the_vip_for_the_vip() {
        let ip = Ipv4Addr::new(198, 51, 100, 50);
        let f = frame(MAC, IpAddr::V4(ip));
        // Golden bytes: Ethernet, then ARP (RFC 826 layout).
        let expect: Vec<u8> = [
            &[0xff; 6][..],
            &[2, 0, 0, 0, 0, 7],
            &[0x08, 0x06],
            &[0, 1, 0x08, 0x00, 6, 4, 0, 1],
            &[2, 0, 0, 0, 0, 7],
            &[198, 51, 100, 50],
            &[0xff; 6],
            &[198, 51, 100, 50],
        ]
        .concat();
        assert_eq!(f, expect);
        let eth = EthernetPacket::new(&f).unwrap();
        let arp = ArpPacket::new(eth.payload()).unwrap();
        assert_eq!(arp.get_sender_proto_addr(), arp.get_target_proto_addr());
    }

    #[test]
    fn unsolicited_na_is_valid_icmpv6_with_override_and_our_mac() {
        let ip: Ipv6Addr = "2001:db8::50".parse().unwrap();
        let f = frame(MAC, IpAddr::V6(ip));
        assert_eq!(f.len(), ETH + IPV6 + NA);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        let v6 = &f[ETH..ETH + IPV6];
        assert_eq!(v6[6], 58, "next header ICMPv6");
        assert_eq!(v6[7], 255, "hop limit 255, as NDP requires");
        let na = &f[ETH + IPV6..];
        assert_eq!(na[0], 136);
        assert_eq!(na[4], 0x20, "override only");
        assert_eq!(&na[8..24], &ip.octets());
        assert_eq!(&na[24..26], &[2, 1]);
        assert_eq!(&na[26..32], &[2, 0, 0, 0, 0, 7]);
        // The checksum over the pseudo-header and the message sums to 0xffff.
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let mut sum: u32 = 0;
        let mut add = |b: &[u8]| {
            for c in b.chunks(2) {
                sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
        };
        add(&ip.octets());
        add(&dst.octets());
        add(&(NA as u32).to_be_bytes());
        add(&[0, 0, 0, 58]);
        add(na);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
    }
}
