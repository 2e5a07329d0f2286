//! Failure domains: the machines that can fail together, so that no two pieces of a
//! stripe go on one of them.
//!
//! A node belongs to the domain of the operator it declares (`--operator`: one person's
//! or organisation's machines go down, or go away, together) and to the network it is
//! seen at: its IPv4 /24 or IPv6 /48 (one site, one uplink, one provider's block). The
//! address is the one the listing node sees the connection come from, not one the node
//! names for itself. Loopback and unspecified addresses say nothing about a machine, so a
//! node seen only there counts by its label alone; a node with neither is a domain of
//! its own.

use std::net::IpAddr;

/// Longest operator label.
pub const MAX_OPERATOR_LEN: usize = 64;

/// One failure domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureDomain {
    /// Machines of one declared operator.
    Operator(String),
    /// An IPv4 /24: the first three octets.
    V4(u32),
    /// An IPv6 /48: the first three 16-bit groups.
    V6(u64),
}

impl std::fmt::Display for FailureDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Operator(o) => write!(f, "operator {o}"),
            Self::V4(n) => {
                let [_, a, b, c] = n.to_be_bytes();
                write!(f, "{a}.{b}.{c}.0/24")
            }
            Self::V6(n) => {
                let g = |i: u32| (n >> (32 - 16 * i)) as u16;
                write!(f, "{:x}:{:x}:{:x}::/48", g(0), g(1), g(2))
            }
        }
    }
}

/// Why an operator label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "operator label {label:?} is not valid: it must be 1 to {MAX_OPERATOR_LEN} characters of letters, digits, '.', '_' or '-'"
)]
pub struct BadOperator {
    /// The label as given.
    pub label: String,
}

/// Checks an operator label: 1 to [`MAX_OPERATOR_LEN`] ASCII letters, digits, `.`, `_`
/// or `-`, so that it prints plainly and compares exactly.
pub fn check_operator(label: &str) -> Result<(), BadOperator> {
    let ok = !label.is_empty()
        && label.len() <= MAX_OPERATOR_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BadOperator {
            label: label.chars().take(MAX_OPERATOR_LEN + 1).collect(),
        })
    }
}

/// The network domain of an address, if it says anything about the machine.
pub fn network_of(ip: IpAddr) -> Option<FailureDomain> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() || ip.is_unspecified() {
        return None;
    }
    Some(match ip {
        IpAddr::V4(v4) => FailureDomain::V4(u32::from(v4) >> 8),
        IpAddr::V6(v6) => FailureDomain::V6((u128::from(v6) >> 80) as u64),
    })
}

/// The domains of a node that declares `operator` and is seen at `seen`. Labels compare
/// without case (`Lab-A` is `lab-a`). A label that is not valid counts for nothing (the
/// node is then placed by its address alone).
pub fn domains_of(operator: Option<&str>, seen: Option<IpAddr>) -> Vec<FailureDomain> {
    let mut out = Vec::with_capacity(2);
    if let Some(o) = operator.filter(|o| check_operator(o).is_ok()) {
        out.push(FailureDomain::Operator(o.to_ascii_lowercase()));
    }
    out.extend(seen.and_then(network_of));
    out
}

/// Numbers domains densely, so placement compares small integers.
#[derive(Debug, Default)]
pub struct Interner {
    ids: std::collections::HashMap<FailureDomain, u32>,
}

impl Interner {
    /// The number of `d`, given on first sight.
    pub fn id(&mut self, d: FailureDomain) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(d).or_insert(next)
    }

    /// The numbers of every domain in `ds`.
    pub fn ids(&mut self, ds: Vec<FailureDomain>) -> Vec<u32> {
        ds.into_iter().map(|d| self.id(d)).collect()
    }

    /// Domains numbered so far.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is numbered yet.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The domain numbered `id`.
    pub fn name(&self, id: u32) -> Option<&FailureDomain> {
        self.ids.iter().find(|(_, i)| **i == id).map(|(d, _)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn networks_are_slash_24_and_slash_48() {
        assert_eq!(network_of(ip("10.1.2.3")), network_of(ip("10.1.2.200")));
        assert_ne!(network_of(ip("10.1.2.3")), network_of(ip("10.1.3.3")));
        assert_eq!(
            network_of(ip("2001:db8:1:ff::1")),
            network_of(ip("2001:db8:1:0::2"))
        );
        assert_ne!(
            network_of(ip("2001:db8:1::1")),
            network_of(ip("2001:db8:2::1"))
        );
        // An IPv4 address written as IPv6 is the same machine.
        assert_eq!(
            network_of(ip("::ffff:10.1.2.3")),
            network_of(ip("10.1.2.9"))
        );
        assert_eq!(
            network_of(ip("10.87.4.9")).map(|d| d.to_string()),
            Some("10.87.4.0/24".into())
        );
        assert_eq!(
            network_of(ip("2001:db8:1::1")).map(|d| d.to_string()),
            Some("2001:db8:1::/48".into())
        );
    }

    #[test]
    fn loopback_counts_by_label_alone() {
        assert_eq!(network_of(ip("127.0.0.1")), None);
        assert_eq!(network_of(ip("::1")), None);
        assert_eq!(network_of(ip("0.0.0.0")), None);
        assert_eq!(
            domains_of(Some("lab-a"), Some(ip("127.0.0.1"))),
            vec![FailureDomain::Operator("lab-a".into())]
        );
        assert!(domains_of(None, Some(ip("127.0.0.1"))).is_empty());
        assert_eq!(domains_of(Some("lab-a"), Some(ip("10.0.0.1"))).len(), 2);
        assert_eq!(
            domains_of(Some("Lab-A"), None),
            domains_of(Some("lab-a"), None)
        );
    }

    #[test]
    fn operator_labels_are_checked() {
        assert!(check_operator("uni-x.lab_3").is_ok());
        for bad in ["", "a b", "ünï", "a/b", &"x".repeat(MAX_OPERATOR_LEN + 1)] {
            assert!(check_operator(bad).is_err(), "{bad:?}");
        }
        // A bad label is no domain.
        assert!(domains_of(Some("a b"), None).is_empty());
    }

    #[test]
    fn interned_ids_are_stable() {
        let mut i = Interner::default();
        let a = i.id(FailureDomain::Operator("a".into()));
        let b = i.id(FailureDomain::V4(7));
        assert_ne!(a, b);
        assert_eq!(i.id(FailureDomain::Operator("a".into())), a);
        assert_eq!(i.name(b), Some(&FailureDomain::V4(7)));
    }
}
