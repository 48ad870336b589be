//! What `flotilla vipd` does to the host's network (SPEC.md §11.8): adds and removes a
//! VIP's addresses over route netlink, and announces them from a packet socket —
//! gratuitous ARP for IPv4, unsolicited neighbour advertisements for IPv6 — so that the
//! LAN's caches follow the new holder at once. Needs CAP_NET_ADMIN (addresses) and
//! CAP_NET_RAW (announcements), nothing else.
//!
//! The frames are built here by pure functions (tested below); the sockets are the
//! crates' (`rtnetlink`, `pnet_datalink`), since the workspace forbids unsafe code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use flotilla_core::vip::config::VipAddress;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, CacheInfo};
use rtnetlink::{AddressMessageBuilder, Handle};

/// `EEXIST`: the address is on the interface already.
const EEXIST: i32 = 17;
/// `EADDRNOTAVAIL`: the address is not on the interface.
const EADDRNOTAVAIL: i32 = 99;

/// One interface as the announcer needs it.
#[derive(Clone, Debug)]
pub(crate) struct Interface {
    pub(crate) index: u32,
    pub(crate) mac: [u8; 6],
}

/// The interface named `name` in this network namespace, or why not.
pub(crate) fn interface(name: &str) -> Result<Interface, String> {
    let all = pnet_datalink::interfaces();
    let Some(i) = all.iter().find(|i| i.name == name) else {
        let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "no interface {name} here (interfaces: {})",
            names.join(" ")
        ));
    };
    let mac = i.mac.map_or([0; 6], |m| [m.0, m.1, m.2, m.3, m.4, m.5]);
    Ok(Interface {
        index: i.index,
        mac,
    })
}

/// The route-netlink socket, opened once: its connection runs on its own task.
pub(crate) fn netlink() -> Result<Handle, String> {
    let (conn, handle, _) = rtnetlink::new_connection()
        .map_err(|e| format!("cannot open a route netlink socket: {e}"))?;
    tokio::spawn(conn);
    Ok(handle)
}

fn message(a: &VipAddress, index: u32) -> rtnetlink::packet_route::address::AddressMessage {
    let mut m = match a.ip {
        IpAddr::V4(ip) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(ip, a.prefix)
            .build(),
        IpAddr::V6(ip) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(ip, a.prefix)
            .build(),
    };
    // A VIP is only ever on one node of its component: duplicate address detection
    // would hold an IPv6 VIP unusable for a second after each move.
    if a.ip.is_ipv6() {
        m.header.flags |= AddressHeaderFlags::Nodad;
    }
    m
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// Adds `a`, or renews it (already there counts as added: vipd removed its addresses at
/// start, so one found there is its own). With a `lifetime` (seconds) the kernel removes
/// the address by itself once it passes without a renewal: a holder killed with -9
/// leaves nothing behind for longer than that.
pub(crate) async fn add(
    handle: &Handle,
    a: &VipAddress,
    lifetime: Option<u32>,
) -> Result<(), String> {
    let ifc = interface(&a.interface)?;
    let mut req = handle.address().add(ifc.index, a.ip, a.prefix);
    if a.ip.is_ipv6() {
        req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
    }
    if let Some(secs) = lifetime {
        let mut life = CacheInfo::default();
        life.ifa_preferred = secs;
        life.ifa_valid = secs;
        req.message_mut()
            .attributes
            .push(AddressAttribute::CacheInfo(life));
    }
    match req.replace().execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        Err(e) => Err(format!("cannot add {a}: {}", describe(&e))),
    }
}

/// Removes `a` (not there counts as removed).
pub(crate) async fn remove(handle: &Handle, a: &VipAddress) -> Result<(), String> {
    let ifc = match interface(&a.interface) {
        Ok(i) => i,
        // An interface that is gone has none of its addresses left.
        Err(_) => return Ok(()),
    };
    match handle.address().del(message(a, ifc.index)).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EADDRNOTAVAIL) => Ok(()),
        Err(e) => Err(format!("cannot remove {a}: {}", describe(&e))),
    }
}

fn describe(e: &rtnetlink::Error) -> String {
    match errno(e) {
        Some(1) => "operation not permitted (vipd needs CAP_NET_ADMIN)".to_string(),
        Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
        None => e.to_string(),
    }
}

/// Sends `count` announcements of every address, `interval` apart (the first at once).
pub(crate) async fn announce(
    addresses: &[VipAddress],
    count: u32,
    interval: Duration,
) -> Result<(), String> {
    let mut frames = Vec::new();
    for a in addresses {
        let ifc = interface(&a.interface)?;
        let frame = match a.ip {
            IpAddr::V4(ip) => gratuitous_arp(ifc.mac, ip),
            IpAddr::V6(ip) => unsolicited_na(ifc.mac, ip),
        };
        frames.push((a.interface.clone(), frame));
    }
    for round in 0..count {
        if round > 0 {
            tokio::time::sleep(interval).await;
        }
        let batch = frames.clone();
        tokio::task::spawn_blocking(move || send_frames(&batch))
            .await
            .map_err(|e| format!("the announcer stopped: {e}"))??;
    }
    Ok(())
}

fn send_frames(frames: &[(String, Vec<u8>)]) -> Result<(), String> {
    for (name, frame) in frames {
        let all = pnet_datalink::interfaces();
        let ifc = all
            .iter()
            .find(|i| &i.name == name)
            .ok_or_else(|| format!("no interface {name} here"))?;
        let config = pnet_datalink::Config {
            promiscuous: false,
            read_timeout: Some(Duration::from_millis(1)),
            ..Default::default()
        };
        let chan = pnet_datalink::channel(ifc, config).map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                format!("cannot open a packet socket on {name}: {e} (vipd needs CAP_NET_RAW)")
            } else {
                format!("cannot open a packet socket on {name}: {e}")
            }
        })?;
        let pnet_datalink::Channel::Ethernet(mut tx, _rx) = chan else {
            return Err(format!("{name} is not an Ethernet interface"));
        };
        match tx.send_to(frame, None) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(format!("cannot announce on {name}: {e}")),
            None => return Err(format!("cannot announce on {name}: nothing sent")),
        }
    }
    Ok(())
}

/// A gratuitous ARP request for `ip` from `mac`: broadcast, sender and target address
/// both `ip`, which every neighbour that caches `ip` updates on.
pub(crate) fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]); // to everyone
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x0806u16.to_be_bytes()); // ARP
    f.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&1u16.to_be_bytes()); // request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f.resize(60, 0); // the Ethernet minimum
    f
}

/// An unsolicited neighbour advertisement for `ip` from `mac` (RFC 4861 §7.2.6): to all
/// nodes, override set, with the target link-layer address option.
pub(crate) fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[136, 0, 0, 0]); // neighbour advertisement, checksum later
    icmp.extend_from_slice(&0x2000_0000u32.to_be_bytes()); // override
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac);
    let sum = icmpv6_checksum(ip, all_nodes, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&0x6000_0000u32.to_be_bytes()); // version 6
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]); // ICMPv6, hop limit 255 (neighbour discovery)
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&all_nodes.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The ICMPv6 checksum: one's complement sum over the pseudo-header and the message.
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + msg.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(msg);
    !ones_complement_sum(&pseudo)
}

fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn a_gratuitous_arp_names_the_address_as_sender_and_target() {
        let f = gratuitous_arp(MAC, Ipv4Addr::new(10, 0, 0, 50));
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "a request");
        assert_eq!(&f[22..28], &MAC, "sender hardware address");
        assert_eq!(&f[28..32], &[10, 0, 0, 50], "sender address");
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[10, 0, 0, 50], "target address");
        assert!(f[42..].iter().all(|&b| b == 0));
    }

    #[test]
    fn an_unsolicited_na_checksums_to_zero_and_overrides() {
        let ip: Ipv6Addr = "fd00::60".parse().unwrap();
        let f = unsolicited_na(MAC, ip);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[20], 58);
        assert_eq!(f[21], 255, "neighbour discovery needs hop limit 255");
        assert_eq!(&f[22..38], &ip.octets(), "from the address itself");
        let icmp = &f[54..];
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[4] & 0x20, 0x20, "override set");
        assert_eq!(icmp[4] & 0xc0, 0, "neither router nor solicited");
        assert_eq!(&icmp[8..24], &ip.octets());
        assert_eq!(&icmp[24..26], &[2, 1]);
        assert_eq!(&icmp[26..32], &MAC);
        // The receiver's check: the sum over pseudo-header and message, checksum
        // included, is all ones.
        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip.octets());
        pseudo.extend_from_slice(&all_nodes.octets());
        pseudo.extend_from_slice(&32u32.to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        pseudo.extend_from_slice(icmp);
        assert_eq!(ones_complement_sum(&pseudo), 0xffff);
    }

    #[test]
    fn the_checksum_matches_a_known_answer() {
        // RFC 1071's example words 0001 f203 f4f5 f6f7 sum to ddf2.
        assert_eq!(
            ones_complement_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
        assert_eq!(
            ones_complement_sum(&[0xff]),
            0xff00,
            "an odd byte is padded"
        );
    }

    #[test]
    fn an_unknown_interface_is_named_in_the_refusal() {
        let e = interface("no-such-if0").unwrap_err();
        assert!(e.contains("no interface no-such-if0"), "{e}");
    }
}
