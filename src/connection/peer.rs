//! A client's address as its connection keeps it: 19 bytes with an alignment of one, where a
//! `SocketAddr` takes 32 (an IPv6 address's flow info and scope id, which the server never
//! uses, and padding). Every idle connection carries one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr {
    /// An IPv4 address in its first four bytes, or an IPv6 address.
    ip: [u8; 16],
    port: [u8; 2],
    v6: bool,
}

impl From<SocketAddr> for PeerAddr {
    fn from(address: SocketAddr) -> Self {
        let mut ip = [0; 16];
        let v6 = match address.ip() {
            IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                false
            }
            IpAddr::V6(v6) => {
                ip = v6.octets();
                true
            }
        };
        Self { ip, port: address.port().to_be_bytes(), v6 }
    }
}

impl PeerAddr {
    /// The address as accepted (without an IPv6 address's flow info and scope id).
    pub fn get(&self) -> SocketAddr {
        let ip = if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(self.ip[0], self.ip[1], self.ip[2], self.ip[3]))
        };
        SocketAddr::new(ip, u16::from_be_bytes(self.port))
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_back_as_they_went_in() {
        for text in [
            "127.0.0.1:9001",
            "255.255.255.255:65535",
            "0.0.0.0:0",
            "[::1]:443",
            "[::ffff:10.0.0.1]:80",
            "[2001:db8::7]:1",
        ] {
            let address: SocketAddr = text.parse().unwrap();
            assert_eq!(PeerAddr::from(address).get(), address, "{text}");
        }
        assert_eq!(std::mem::size_of::<PeerAddr>(), 19);
        assert_eq!(std::mem::align_of::<PeerAddr>(), 1);
    }
}
