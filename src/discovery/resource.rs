//! Which URL a sighting is catalogued under: the `routeTemplate` poisoning guard (digest §6.1,
//! upstream `isValidRouteTemplate`), the canonical resource URL, and the host rules that keep a
//! public catalog from pointing agents at loopback or private networks.
//!
//! Everything here is payer-controlled: the buyer may rewrite `paymentPayload.resource` and the
//! whole bazaar extension without the seller's echo check noticing (research note §a.2).

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Longest canonical resource URL we store (the iconUrl bound of the spec).
pub const MAX_RESOURCE_LEN: usize = 2048;

/// Percent-decoding passes before a template counts as undecodable (as the TS SDK).
const DECODE_PASSES: usize = 5;

/// Host names that always mean "this machine" or a local network.
const LOCAL_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
];

/// Suffixes of names that only resolve inside a private network.
const LOCAL_SUFFIXES: &[&str] = &[".localhost", ".local", ".internal", ".home.arpa", ".lan"];

/// The template guard of every SDK and the spec: non-empty, `^/[a-zA-Z0-9_/:.\-~%]+$`, and
/// neither `..` nor `://` once fully percent-decoded. A `%` that is not followed by two hex
/// digits, or a decoding that is not UTF-8, makes the template invalid (JS `decodeURIComponent`
/// throws on both; Rust's lenient decoders would let them through).
pub fn valid_route_template(template: &str) -> bool {
    let shape = template.len() > 1
        && template.starts_with('/')
        && template
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_/:.-~%".contains(&b));
    if !shape {
        return false;
    }
    match fully_decode(template) {
        Some(decoded) => !decoded.contains("..") && !decoded.contains("://"),
        None => false,
    }
}

/// Decodes until nothing changes, at most [`DECODE_PASSES`] times; `None` if it never settles
/// or a pass fails.
fn fully_decode(s: &str) -> Option<String> {
    let mut current = s.to_string();
    for _ in 0..DECODE_PASSES {
        let next = decode_once(&current)?;
        if next == current {
            return Some(current);
        }
        current = next;
    }
    None
}

/// One strict percent-decoding pass.
fn decode_once(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why a resource URL is not catalogued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadResource {
    Unparsable,
    Scheme,
    PrivateHost,
    TooLong,
}

/// The key a resource is catalogued under, and whether the template was used for it.
///
/// HTTP(S): origin + route template when the template passes the guard *and* describes the path
/// that was paid for, otherwise origin + path (query, fragment and userinfo dropped; the host
/// lowercased and IDNA-mapped, a default port dropped). Built by concatenation: `Url::join` would
/// let a template like `//evil.com/x` change the host.
///
/// Other schemes (`mcp://tool/<name>`, allowed for MCP tools only) have no origin (the TS SDK
/// catalogues them as `null/<name>`); they are kept whole without userinfo, query or fragment.
pub fn canonical(
    raw: &str,
    template: Option<&str>,
    mcp: bool,
    allow_private: bool,
) -> Result<(String, bool), BadResource> {
    let mut url = Url::parse(raw).map_err(|_| BadResource::Unparsable)?;
    let mut used = false;
    let canonical = match url.scheme() {
        "http" | "https" => {
            let host = url.host().ok_or(BadResource::Unparsable)?;
            if !allow_private && is_private_host(&host) {
                return Err(BadResource::PrivateHost);
            }
            let path = match template {
                Some(t) if template_describes(t, url.path()) => {
                    used = true;
                    t.to_string()
                }
                _ => url.path().to_string(),
            };
            format!("{}{path}", url.origin().ascii_serialization())
        }
        "mcp" if mcp => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        _ => return Err(BadResource::Scheme),
    };
    if canonical.len() > MAX_RESOURCE_LEN {
        return Err(BadResource::TooLong);
    }
    Ok((canonical, used))
}

/// Whether `template` (`/weather/:city`) matches `path` (`/weather/paris`) segment by segment: a
/// `:param` segment matches any non-empty segment, a final `:varN` (the SDK's name for `*`) also
/// several, others must be equal once decoded. A template that does not describe the paid path
/// would let a payer file someone else's route under a made-up one.
fn template_describes(template: &str, path: &str) -> bool {
    let trim = |p: &str| -> String {
        match p.strip_suffix('/') {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => p.to_string(),
        }
    };
    let (template, path) = (trim(template), trim(path));
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    let wildcard_tail = t.last().is_some_and(|last| {
        last.strip_prefix(":var")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    let lengths_fit = t.len() == p.len() || (wildcard_tail && p.len() > t.len());
    if !lengths_fit {
        return false;
    }
    t.iter().zip(&p).all(|(ts, ps)| {
        if ts.starts_with(':') {
            !ps.is_empty()
        } else {
            decode_once(ts).is_some_and(|a| decode_once(ps).is_some_and(|b| a == b))
        }
    }) && p[t.len() - 1..].iter().all(|s| !s.is_empty())
}

/// Loopback, private, link-local, unspecified, multicast and shared-address hosts, and names
/// that only resolve locally (single-label names included).
pub fn is_private_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => is_local_name(d),
        Host::Ipv4(ip) => is_private_v4(ip),
        Host::Ipv6(ip) => is_private_v6(ip),
    }
}

/// A domain that names this machine or a private network.
pub fn is_local_name(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    d.is_empty()
        || !d.contains('.')
        || LOCAL_NAMES.contains(&d.as_str())
        || LOCAL_SUFFIXES.iter().any(|s| d.ends_with(s))
}

fn is_private_v4(ip: &Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT
        || (a == 100 && (64..128).contains(&b))
}

fn is_private_v6(ip: &Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_private_v4(&v4);
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates_follow_the_sdk_vectors() {
        for (template, valid) in [
            ("/users/:id", true),
            ("/a/%2e%2e/b", false),
            ("/a/%252e%252e", false),
            ("/a/%25252525252e", false),
            ("/a/%zz", false),
            ("/a/%2", false),
            ("/a/%c3", false),
            ("/", false),
            ("", false),
            ("/a b", false),
            ("/a/..b", false),
            ("/users/[id]", false),
            ("/http%3A%2F%2Fx", false),
            ("//evil.com/x", true),
            ("/a:b//c", true),
            ("/weather/:city", true),
        ] {
            assert_eq!(valid_route_template(template), valid, "{template:?}");
        }
    }

    fn key(url: &str, template: Option<&str>) -> Result<String, BadResource> {
        canonical(url, template, false, false).map(|(k, _)| k)
    }

    fn key_mcp(url: &str, allow_private: bool) -> Result<String, BadResource> {
        canonical(url, None, true, allow_private).map(|(k, _)| k)
    }

    #[test]
    fn canonical_urls_drop_query_fragment_userinfo_and_default_port() {
        assert_eq!(
            key("https://user:pw@API.X.com:443/a/b/", None),
            Ok("https://api.x.com/a/b/".into())
        );
        assert_eq!(
            key("https://api.x.com/a/b?q=1#f", None),
            Ok("https://api.x.com/a/b".into())
        );
        assert_eq!(
            key("https://api.x.com:8443/w/paris?u=1", Some("/w/:city")),
            Ok("https://api.x.com:8443/w/:city".into())
        );
    }

    #[test]
    fn templates_must_describe_the_paid_path() {
        // The guard lets `//evil.com/x` through; concatenation keeps the host, and it does not
        // describe the path anyway.
        assert_eq!(
            key("https://api.x.com/a/b", Some("//evil.com/x")),
            Ok("https://api.x.com/a/b".into())
        );
        assert_eq!(
            key("https://api.x.com/weather/paris", Some("/admin/:x")),
            Ok("https://api.x.com/weather/paris".into())
        );
        assert_eq!(
            key("https://api.x.com/weather/paris/", Some("/weather/:city")),
            Ok("https://api.x.com/weather/:city".into())
        );
        assert_eq!(
            key("https://api.x.com/files/a/b", Some("/files/:var1")),
            Ok("https://api.x.com/files/:var1".into())
        );
        assert_eq!(
            key("https://api.x.com/files/a/b", Some("/files/:name")),
            Ok("https://api.x.com/files/a/b".into())
        );
        assert_eq!(
            key("https://api.x.com/caf%C3%A9/1", Some("/caf%c3%a9/:id")),
            Ok("https://api.x.com/caf%c3%a9/:id".into())
        );
    }

    #[test]
    fn other_schemes_only_for_mcp() {
        assert_eq!(
            key_mcp("mcp://tool/get_weather?s=1", false),
            Ok("mcp://tool/get_weather".into())
        );
        assert_eq!(
            key_mcp("mcp://user:secret@tool/get_weather#x", false),
            Ok("mcp://tool/get_weather".into())
        );
        assert_eq!(
            key("mcp://tool/get_weather", None),
            Err(BadResource::Scheme)
        );
        for raw in [
            "javascript:alert(1)",
            "data:text/html,x",
            "ftp://x.com/a",
            "file:///etc/passwd",
        ] {
            assert_eq!(
                canonical(raw, None, true, false),
                Err(BadResource::Scheme),
                "{raw}"
            );
        }
        assert_eq!(key("not a url", None), Err(BadResource::Unparsable));
    }

    #[test]
    fn private_hosts_are_refused_unless_allowed() {
        for raw in [
            "http://localhost/x",
            "http://LOCALHOST./x",
            "http://foo.localhost/x",
            "http://127.0.0.1/x",
            "http://2130706433/x",
            "http://0x7f000001/x",
            "http://10.1.2.3/x",
            "http://192.168.0.1/x",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/x",
            "http://0.0.0.0/x",
            "http://[::1]/x",
            "http://[fd00::1]/x",
            "http://[fe80::1]/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://intranet/x",
            "http://metadata.google.internal/x",
            "http://printer.local/x",
        ] {
            assert_eq!(key(raw, None), Err(BadResource::PrivateHost), "{raw}");
        }
        assert!(key("http://8.8.8.8/x", None).is_ok());
        assert!(key("https://[2001:4860::8888]/x", None).is_ok());
        assert_eq!(
            key_mcp("http://127.0.0.1:4021/x", true),
            Ok("http://127.0.0.1:4021/x".into())
        );
    }
}
