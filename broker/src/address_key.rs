//! The key a source address is counted and limited under, shared by the
//! rate limits (`crate::limits`), the per-address connection caps
//! (`crate::listeners`) and the login and sign-up throttles.

use std::net::{IpAddr, Ipv6Addr};

/// The key a source address is limited under: IPv4 addresses (also when
/// mapped into IPv6) as they are, IPv6 addresses by their /64 prefix, which
/// is what one host or subscriber normally gets.
pub(crate) fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_as_is_mapped_ipv4_unwrapped_ipv6_by_prefix() {
        let v4: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(limit_key(v4), v4);
        assert_eq!(limit_key("::ffff:10.0.0.1".parse().unwrap()), v4);
        assert_eq!(
            limit_key("2001:db8:1:2:ffff::9".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
    }
}
