//! Rate limits (GCRA, `governor`): per client IP and per API key, per endpoint class. The
//! client IP is the TCP peer, or, when the peer is a trusted proxy, the right-most address of
//! `X-Forwarded-For` that is not a trusted proxy (left-most entries are whatever the client
//! wrote, so they are never believed).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;

use super::settings::{RateLimitSettings, Rates};

/// Endpoints grouped by what they cost us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Verify,
    Settle,
    Other,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Verify => "verify",
            Class::Settle => "settle",
            Class::Other => "other",
        }
    }

    fn rate(self, rates: &Rates) -> u32 {
        match self {
            Class::Verify => rates.verify,
            Class::Settle => rates.settle,
            Class::Other => rates.other,
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Ip,
    Key,
}

impl Limited {
    pub fn as_str(self) -> &'static str {
        match self {
            Limited::Ip => "ip",
            Limited::Key => "key",
        }
    }
}

pub struct Limits {
    enabled: bool,
    burst_seconds: u32,
    per_key: Rates,
    per_ip: [Option<DefaultKeyedRateLimiter<IpAddr>>; 3],
    keys: Mutex<HashMap<(Class, String), Arc<DefaultDirectRateLimiter>>>,
    trusted: Vec<IpNet>,
    exempt: Vec<IpNet>,
    clock: DefaultClock,
}

fn nets(list: &[String], what: &str) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("rate_limit.{what}: `{s}` is not an IP address or CIDR"))
        })
        .collect()
}

fn quota(rate: u32, burst_seconds: u32) -> Option<Quota> {
    let per_second = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(rate.saturating_mul(burst_seconds.max(1))).unwrap_or(per_second);
    Some(Quota::per_second(per_second).allow_burst(burst))
}

impl Limits {
    pub fn new(settings: &RateLimitSettings) -> Result<Self, String> {
        let ip = |class: Class| {
            quota(class.rate(&settings.per_ip), settings.burst_seconds)
                .map(DefaultKeyedRateLimiter::keyed)
        };
        Ok(Limits {
            enabled: settings.enabled,
            burst_seconds: settings.burst_seconds,
            per_key: settings.per_key,
            per_ip: [ip(Class::Verify), ip(Class::Settle), ip(Class::Other)],
            keys: Mutex::new(HashMap::new()),
            trusted: nets(&settings.trusted_proxies, "trusted_proxies")?,
            exempt: nets(&settings.exempt, "exempt")?,
            clock: DefaultClock::default(),
        })
    }

    /// The client's address: the peer, or what trusted proxies say it is. `forwarded_for` is
    /// every `X-Forwarded-For` line joined with commas, in order.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = canonical(peer);
        let trusted = |ip: &IpAddr| self.trusted.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in header.rsplit(',') {
            match hop_ip(hop) {
                Some(ip) => {
                    client = ip;
                    if !trusted(&ip) {
                        break;
                    }
                }
                // Garbage from further left cannot be believed; stop at the last good hop.
                None => break,
            }
        }
        client
    }

    /// `Err(wait, Ip)` when the client is over its limit for this class. IPv6 clients are
    /// limited per /64 (one subscriber's usual allocation), or one host could take endless
    /// fresh buckets.
    pub fn check_ip(&self, class: Class, ip: IpAddr) -> Result<(), (Duration, Limited)> {
        if !self.enabled || self.exempt.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        let bucket = match ip {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        };
        if let Some(limiter) = &self.per_ip[class as usize]
            && let Err(not_until) = limiter.check_key(&bucket)
        {
            return Err((not_until.wait_time_from(self.clock.now()), Limited::Ip));
        }
        Ok(())
    }

    /// `Err(wait, Key)` when the key `id` (with its own rate, if it has one) is over its limit.
    /// Keys are limited wherever they call from (the IP exemption does not cover them).
    pub fn check_key(
        &self,
        class: Class,
        id: &str,
        own_rate: Option<u32>,
    ) -> Result<(), (Duration, Limited)> {
        if !self.enabled {
            return Ok(());
        }
        {
            let rate = own_rate.unwrap_or_else(|| class.rate(&self.per_key));
            let limiter = {
                let Ok(mut keys) = self.keys.lock() else {
                    return Ok(());
                };
                match keys.get(&(class, id.to_string())) {
                    Some(l) => l.clone(),
                    None => {
                        let Some(q) = quota(rate, self.burst_seconds) else {
                            return Ok(());
                        };
                        let l = Arc::new(DefaultDirectRateLimiter::direct(q));
                        keys.insert((class, id.to_string()), l.clone());
                        l
                    }
                }
            };
            if let Err(not_until) = limiter.check() {
                return Err((not_until.wait_time_from(self.clock.now()), Limited::Key));
            }
        }
        Ok(())
    }

    /// Drops per-IP state that no longer limits anyone (called periodically; bounds memory).
    pub fn shrink(&self) {
        for limiter in self.per_ip.iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// IPv4-mapped IPv6 peers (`::ffff:1.2.3.4`, what a dual-stack socket reports) as IPv4, so
/// that IPv4 ranges match them.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// One hop of `X-Forwarded-For`: an address, maybe with a port (`1.2.3.4:5`, `[::1]:5`).
fn hop_ip(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &[&str]) -> Limits {
        let settings = RateLimitSettings {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            exempt: vec![],
            per_ip: Rates {
                verify: 1,
                settle: 1,
                other: 1,
            },
            burst_seconds: 2,
            ..RateLimitSettings::default()
        };
        Limits::new(&settings).expect("valid")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let l = limits(&["10.0.0.0/8"]);
        // Not a proxy: its header is the client's own words.
        assert_eq!(
            l.client_ip(ip("203.0.113.9"), Some("1.1.1.1")),
            ip("203.0.113.9")
        );
        // A proxy: the right-most untrusted hop, whatever the client prepended.
        assert_eq!(
            l.client_ip(ip("10.0.0.2"), Some("6.6.6.6, 198.51.100.7, 10.0.0.3")),
            ip("198.51.100.7")
        );
        assert_eq!(l.client_ip(ip("10.0.0.2"), None), ip("10.0.0.2"));
        assert_eq!(
            l.client_ip(ip("10.0.0.2"), Some("garbage, 198.51.100.7")),
            ip("198.51.100.7")
        );
        // Ports, brackets and dual-stack peers do not make the proxy the client.
        assert_eq!(
            l.client_ip(ip("10.0.0.2"), Some("198.51.100.7:4711")),
            ip("198.51.100.7")
        );
        assert_eq!(
            l.client_ip(ip("::ffff:10.0.0.2"), Some("[2001:db8::1]:443")),
            ip("2001:db8::1")
        );
        assert_eq!(
            l.client_ip(ip("::ffff:203.0.113.9"), None),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_burst_then_a_wait() {
        let l = limits(&[]);
        let who = ip("198.51.100.7");
        assert!(l.check_ip(Class::Verify, who).is_ok());
        assert!(l.check_ip(Class::Verify, who).is_ok());
        let Err((wait, Limited::Ip)) = l.check_ip(Class::Verify, who) else {
            panic!("the third request in a burst of 2 is limited");
        };
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        // Another class and another client are not affected.
        assert!(l.check_ip(Class::Settle, who).is_ok());
        assert!(l.check_ip(Class::Verify, ip("198.51.100.8")).is_ok());
        // One IPv6 /64 is one client.
        assert!(l.check_ip(Class::Verify, ip("2001:db8:1:2::1")).is_ok());
        assert!(l.check_ip(Class::Verify, ip("2001:db8:1:2::2")).is_ok());
        assert!(l.check_ip(Class::Verify, ip("2001:db8:1:2::3")).is_err());
    }

    #[test]
    fn keys_have_their_own_limit() {
        let mut settings = RateLimitSettings::default();
        settings.exempt.clear();
        settings.per_key.verify = 1;
        settings.burst_seconds = 1;
        let l = Limits::new(&settings).expect("valid");
        let who = ip("198.51.100.7");
        let _ = who;
        assert!(l.check_key(Class::Verify, "k1", None).is_ok());
        assert!(matches!(
            l.check_key(Class::Verify, "k1", None),
            Err((_, Limited::Key))
        ));
        assert!(l.check_key(Class::Verify, "k2", Some(5)).is_ok());
    }
}
