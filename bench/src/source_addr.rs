//! Source addresses for client sockets. A TCP client normally gets one of
//! ~28k ephemeral ports on one source address, which caps connections to one
//! broker port well below 64k. Binding each socket to a different 127.0.0.x
//! (all of 127.0.0.0/8 is on the loopback interface on Linux) lifts that cap.
//!
//! `--source-ips` takes addresses and IPv4 ranges separated by commas, e.g.
//! `127.0.0.1-127.0.0.20` or `127.0.0.1,127.0.0.5-127.0.0.9`; connection `i`
//! uses address `i mod n`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// The most addresses one `--source-ips` value may expand to.
pub const MAX_SOURCE_ADDRS: usize = 65_536;

/// A non-empty list of source addresses, used round-robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs(Vec<IpAddr>);

impl SourceAddrs {
    /// The address connection number `index` binds to (round-robin).
    pub fn for_connection(&self, index: usize) -> IpAddr {
        self.0[index % self.0.len()]
    }

    /// How many distinct addresses are in the list.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `SourceAddrs` holds at least one address.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The addresses in order.
    pub fn addrs(&self) -> &[IpAddr] {
        &self.0
    }
}

/// A `--source-ips` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceAddrError {
    /// Nothing was given.
    #[error("no source address given")]
    Empty,
    /// A part is not an IP address.
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    /// A range runs backwards.
    #[error("range {first}-{last} runs backwards")]
    Descending {
        /// First address of the range.
        first: Ipv4Addr,
        /// Last address of the range.
        last: Ipv4Addr,
    },
    /// Ranges are only supported for IPv4.
    #[error("{0:?}: ranges are only supported between IPv4 addresses")]
    NotIpv4Range(String),
    /// The list mixes IPv4 and IPv6 addresses.
    #[error("source addresses mix IPv4 and IPv6")]
    MixedFamilies,
    /// The list expands to too many addresses.
    #[error("source addresses expand to more than {MAX_SOURCE_ADDRS} addresses")]
    TooMany,
}

impl FromStr for SourceAddrs {
    type Err = SourceAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut addrs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((first, last)) => push_range(&mut addrs, part, first.trim(), last.trim())?,
                None => addrs.push(parse_ip(part)?),
            }
            if addrs.len() > MAX_SOURCE_ADDRS {
                return Err(SourceAddrError::TooMany);
            }
        }
        let first = addrs.first().ok_or(SourceAddrError::Empty)?;
        if addrs.iter().any(|a| a.is_ipv4() != first.is_ipv4()) {
            return Err(SourceAddrError::MixedFamilies);
        }
        Ok(SourceAddrs(addrs))
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, SourceAddrError> {
    s.parse()
        .map_err(|_| SourceAddrError::BadAddress(s.to_string()))
}

fn push_range(
    addrs: &mut Vec<IpAddr>,
    part: &str,
    first: &str,
    last: &str,
) -> Result<(), SourceAddrError> {
    let (IpAddr::V4(first), IpAddr::V4(last)) = (parse_ip(first)?, parse_ip(last)?) else {
        return Err(SourceAddrError::NotIpv4Range(part.to_string()));
    };
    let (lo, hi) = (u32::from(first), u32::from(last));
    if hi < lo {
        return Err(SourceAddrError::Descending { first, last });
    }
    if (hi - lo) as usize >= MAX_SOURCE_ADDRS {
        return Err(SourceAddrError::TooMany);
    }
    addrs.extend((lo..=hi).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
    Ok(())
}

impl fmt::Display for SourceAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.first(), self.0.last()) {
            (Some(first), Some(last)) if self.0.len() > 1 => {
                write!(f, "{first}..{last} ({} addresses)", self.0.len())
            }
            (Some(only), _) => write!(f, "{only}"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn expands_a_range_and_cycles_through_it() {
        let addrs: SourceAddrs = "127.0.0.1-127.0.0.20".parse().unwrap();
        assert_eq!(addrs.len(), 20);
        assert_eq!(addrs.for_connection(0), v4("127.0.0.1"));
        assert_eq!(addrs.for_connection(19), v4("127.0.0.20"));
        assert_eq!(addrs.for_connection(20), v4("127.0.0.1"));
        assert_eq!(addrs.for_connection(45), v4("127.0.0.6"));
    }

    #[test]
    fn ranges_cross_octet_boundaries() {
        let addrs: SourceAddrs = "127.0.0.254-127.0.1.1".parse().unwrap();
        assert_eq!(
            addrs.addrs(),
            &[
                v4("127.0.0.254"),
                v4("127.0.0.255"),
                v4("127.0.1.0"),
                v4("127.0.1.1")
            ]
        );
    }

    #[test]
    fn mixes_single_addresses_and_ranges() {
        let addrs: SourceAddrs = "127.0.0.1, 127.0.0.5-127.0.0.6".parse().unwrap();
        assert_eq!(
            addrs.addrs(),
            &[v4("127.0.0.1"), v4("127.0.0.5"), v4("127.0.0.6")]
        );
        let single: SourceAddrs = "::1".parse().unwrap();
        assert_eq!(single.for_connection(7), v4("::1"));
    }

    #[test]
    fn rejects_bad_values_with_typed_errors() {
        assert_eq!("".parse::<SourceAddrs>(), Err(SourceAddrError::Empty));
        assert_eq!(
            "127.0.0.x".parse::<SourceAddrs>(),
            Err(SourceAddrError::BadAddress("127.0.0.x".into()))
        );
        assert!(matches!(
            "127.0.0.9-127.0.0.1".parse::<SourceAddrs>(),
            Err(SourceAddrError::Descending { .. })
        ));
        assert!(matches!(
            "::1-::5".parse::<SourceAddrs>(),
            Err(SourceAddrError::NotIpv4Range(_))
        ));
        assert_eq!(
            "127.0.0.1,::1".parse::<SourceAddrs>(),
            Err(SourceAddrError::MixedFamilies)
        );
        assert_eq!(
            "127.0.0.0-127.255.255.255".parse::<SourceAddrs>(),
            Err(SourceAddrError::TooMany)
        );
    }
}
