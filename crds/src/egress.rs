//! Which destinations the gateway refuses to call unless a resource opts in with
//! `allowLocalAddresses` (server-side request forgery guard).
//!
//! One classifier serves both checks: the compiler refuses a `baseUrl` or `jwksUri` whose host
//! is a forbidden literal (an IP address, or a name such as `localhost` or `metadata`), and the
//! gateway's resolver refuses every forbidden address a host name resolves to, at connect time,
//! so DNS rebinding gains nothing. Whoever writes an `LlmProvider` must not be able to make the
//! gateway call the pod's own admin ports, the cluster's services or the cloud's metadata
//! endpoint and hand the answer back to a client.

pub(crate) mod cel;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 networks that are never the public Internet, as (network, prefix length).
const FORBIDDEN_V4: [(Ipv4Addr, u8); 11] = [
    // "This network": 0.0.0.0 reaches the local host on Linux.
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    // Carrier-grade NAT, also Alibaba Cloud's metadata (100.100.100.200).
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    // Link-local: the AWS, GCP, Azure and OCI metadata endpoint 169.254.169.254 and ECS's.
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    // IETF protocol assignments (192.0.0.192 was Oracle Cloud Classic's metadata).
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    // Benchmarking, often routed inside data centres.
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    // Multicast.
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    // Reserved, including the broadcast address 255.255.255.255.
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// Cloud metadata and platform endpoints. The first two lie inside [`FORBIDDEN_V4`] and are
/// named for the tests and the reader; Azure's WireServer is a public-range address.
pub const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];

/// AWS's instance metadata endpoint over IPv6 (inside the unique-local range fc00::/7).
pub const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Host names that always mean this machine, the cluster's API server or a metadata service,
/// compared without case and without a trailing dot. `localhost` and `*.localhost` are
/// handled apart. Names such as `ip6-localhost` that only `/etc/hosts` defines are left to
/// the connect-time check, which refuses what they resolve to.
const FORBIDDEN_NAMES: [&str; 11] = [
    "localhost.localdomain",
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// Whether `ip` is link-local or a cloud metadata endpoint (in any IPv6 form): never an
/// upstream, even with `allowLocalAddresses` (which the author of a provider grants itself, so
/// it must not open the node's credentials to them).
pub fn is_never_allowed_ip(ip: IpAddr) -> bool {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => v4,
            None => return v6 == METADATA_V6 || v6.segments()[0] & 0xffc0 == 0xfe80,
        },
    };
    v4.is_link_local() || METADATA_V4.contains(&v4)
}

/// Whether `url`'s host is a never-allowed address literal or a metadata service's name.
pub fn is_never_allowed_url_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            FORBIDDEN_NAMES.iter().any(|n| {
                *n == name && (n.starts_with("metadata") || n.starts_with("instance-data"))
            })
        }
        Some(url::Host::Ipv4(ip)) => is_never_allowed_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_never_allowed_ip(IpAddr::V6(ip)),
        None => true,
    }
}

/// Whether the gateway must not connect to `ip` without `allowLocalAddresses`.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

/// Whether `ip` is loopback, private, link-local, CGNAT, reserved or a metadata endpoint.
pub fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    FORBIDDEN_V4.iter().any(|&(network, prefix)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        bits & mask == u32::from(network)
    }) || METADATA_V4.contains(&ip)
}

/// Whether `ip` is loopback, unspecified, unique-local, link-local, site-local, multicast or
/// reserved, or carries a forbidden IPv4 address (mapped, NAT64 or 6to4 forms, which reach
/// that IPv4 address through the host's or the network's translation).
pub fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_forbidden_v4(v4);
    }
    let s = ip.segments();
    // The rest of ::/64: unspecified, loopback and the deprecated IPv4-compatible (::a.b.c.d)
    // and IPv4-translated forms, none of which names a public host.
    s[..4] == [0; 4]
        // Unique local fc00::/7 (fd00:ec2::254 among them).
        || s[0] & 0xfe00 == 0xfc00
        // Link-local fe80::/10 and the deprecated site-local fec0::/10.
        || s[0] & 0xff80 == 0xfe80
        // Multicast ff00::/8.
        || s[0] & 0xff00 == 0xff00
        // Local-use NAT64 64:ff9b:1::/48 (RFC 8215): translates into the local network.
        || s[..3] == [0x64, 0xff9b, 1]
        // Teredo 2001::/32: tunnels to an IPv4 address hidden in the bits.
        || s[..2] == [0x2001, 0]
        // Discard-only 100::/64 and documentation 2001:db8::/32.
        || s[..4] == [0x100, 0, 0, 0]
        || s[..2] == [0x2001, 0xdb8]
        || ip == METADATA_V6
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped `::ffff:a.b.c.d`, the NAT64
/// well-known prefix `64:ff9b::/96` and 6to4 `2002:AABB:CCDD::/48`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let from = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(from(s[6], s[7]));
    }
    (s[0] == 0x2002).then(|| from(s[1], s[2]))
}

/// Whether a host name (not an address) always designates this machine, the cluster's API
/// server or a metadata service: `localhost`, `*.localhost` and the names of
/// `FORBIDDEN_NAMES`, in any case, with or without a trailing dot.
pub fn is_forbidden_host_name(host: &str) -> bool {
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || FORBIDDEN_NAMES.contains(&name.as_str())
}

/// Whether `url`'s host, as written, is forbidden: an address of [`is_forbidden_ip`] or a name
/// of [`is_forbidden_host_name`]. A URL without a host is forbidden too. HTTP clients connect
/// to an address literal without resolving it, so this is the only check such a URL gets.
pub fn is_forbidden_url_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => is_forbidden_host_name(name),
        Some(url::Host::Ipv4(ip)) => is_forbidden_v4(ip),
        Some(url::Host::Ipv6(ip)) => is_forbidden_v6(ip),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or_else(|e| panic!("{text} is not an address: {e}"))
    }

    #[test]
    fn private_loopback_link_local_cgnat_and_metadata_v4_are_forbidden() {
        for text in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.100.100.200",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "169.254.170.2",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.192",
            "192.168.1.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "168.63.129.16",
        ] {
            assert!(is_forbidden_ip(ip(text)), "{text} must be forbidden");
        }
    }

    #[test]
    fn link_local_and_metadata_are_never_allowed_even_for_local_providers() {
        for never in [
            "169.254.169.254",
            "169.254.1.1",
            "100.100.100.200",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "fe80::1",
        ] {
            assert!(is_never_allowed_ip(ip(never)), "{never}");
        }
        for local in ["10.0.0.1", "127.0.0.1", "::1", "fd00::1"] {
            assert!(!is_never_allowed_ip(ip(local)), "{local}");
        }
        for url in [
            "http://metadata.google.internal/",
            "http://[fd00:ec2::254]/",
            "http://169.254.169.254/latest",
        ] {
            let url = url::Url::parse(url).unwrap();
            assert!(is_never_allowed_url_host(&url), "{url}");
        }
    }

    #[test]
    fn public_v4_is_allowed() {
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "162.159.140.245",
            "168.63.129.17",
        ] {
            assert!(!is_forbidden_ip(ip(text)), "{text} must be allowed");
        }
    }

    #[test]
    fn local_v6_and_v6_forms_of_forbidden_v4_are_forbidden() {
        for text in [
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::127.0.0.1",
            "64:ff9b::10.1.2.3",
            "64:ff9b:1::8.8.8.8",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::",
            "fd00:ec2::254",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(is_forbidden_ip(ip(text)), "{text} must be forbidden");
        }
    }

    #[test]
    fn public_v6_and_translated_public_v4_are_allowed() {
        for text in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860::8888",
        ] {
            assert!(!is_forbidden_ip(ip(text)), "{text} must be allowed");
        }
    }

    #[test]
    fn local_and_metadata_names_are_forbidden_in_any_case_with_a_trailing_dot() {
        for name in [
            "localhost",
            "LOCALHOST.",
            "LocalHost",
            "api.localhost",
            "a.b.LOCALHOST.",
            "metadata",
            "Metadata.",
            "metadata.google.internal",
            "METADATA.GOOGLE.INTERNAL.",
            "instance-data",
            "kubernetes.default.svc.cluster.local.",
        ] {
            assert!(is_forbidden_host_name(name), "{name} must be forbidden");
        }
        for name in [
            "api.openai.com",
            "localhost.example.com",
            "mylocalhost",
            "metadata.example.com",
            "ip6-localhost",
        ] {
            assert!(!is_forbidden_host_name(name), "{name} must be allowed");
        }
    }

    #[test]
    fn url_hosts_are_classified_after_parsing() {
        let forbidden = |text: &str| {
            let url = url::Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            is_forbidden_url_host(&url)
        };
        for text in [
            "http://LOCALHOST./v1",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[fd00:ec2::254]/latest",
            "http://100.100.100.200/",
            // Numeric forms the URL parser turns into 127.0.0.1.
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://127.0.0.1./",
        ] {
            assert!(forbidden(text), "{text} must be forbidden");
        }
        assert!(!forbidden("https://api.openai.com/v1"));
        assert!(!forbidden("https://[2606:4700:4700::1111]/"));
    }
}
