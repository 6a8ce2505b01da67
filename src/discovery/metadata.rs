//! The descriptive fields of `paymentPayload.resource` (digest §10.1.3; upstream bazaar spec,
//! "Service Metadata on `resource`"): each one is *soft-dropped*: a bad field is left out and the
//! rest of the resource is still catalogued.
//!
//! `serviceName`, `tags` and `iconUrl` follow the SDK rules; `description` and `mimeType` get
//! size bounds of ours so that a page of listings stays under the 4 MiB the TS client reads.

use serde_json::Value;
use url::{Host, Url};

use super::resource::is_local_name;

const MAX_SERVICE_NAME: usize = 32;
const MAX_TAG: usize = 32;
const MAX_TAGS: usize = 5;
const MAX_ICON_URL: usize = 2048;
/// Serialised JSON bytes (escapes counted), not characters.
pub const MAX_DESCRIPTION: usize = 1024;
const MAX_MIME_TYPE: usize = 128;

/// The service metadata of a resource, each field present only when valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceMetadata {
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub service_name: Option<String>,
    pub tags: Vec<String>,
    pub icon_url: Option<String>,
}

impl ServiceMetadata {
    /// Reads the fields from `resource` (the v2 `ResourceInfo`, as JSON).
    pub fn from_resource(resource: &Value) -> Self {
        let field = |k: &str| resource.get(k);
        ServiceMetadata {
            description: field("description")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty() && json_len(d) <= MAX_DESCRIPTION)
                .map(str::to_string),
            mime_type: field("mimeType")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty() && m.len() <= MAX_MIME_TYPE && printable_ascii(m))
                .map(str::to_string),
            service_name: field("serviceName")
                .and_then(Value::as_str)
                .filter(|n| valid_service_name(n))
                .map(str::to_string),
            tags: field("tags").map(sanitize_tags).unwrap_or_default(),
            icon_url: field("iconUrl")
                .and_then(Value::as_str)
                .filter(|u| valid_icon_url(u))
                .map(str::to_string),
        }
    }
}

fn json_len(s: &str) -> usize {
    serde_json::to_string(s)
        .map(|j| j.len())
        .unwrap_or(usize::MAX)
}

/// Printable ASCII (0x20–0x7e), which also excludes every control character.
fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// 1–32 printable ASCII characters.
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_SERVICE_NAME && printable_ascii(name)
}

/// Strings of 1–32 printable ASCII characters, de-duplicated without regard to ASCII case (the
/// first spelling wins), at most five; anything else in the array is skipped.
pub fn sanitize_tags(value: &Value) -> Vec<String> {
    let Some(items) = value.as_array() else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for tag in items.iter().filter_map(Value::as_str) {
        if tag.is_empty() || tag.len() > MAX_TAG || !printable_ascii(tag) {
            continue;
        }
        if out.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            continue;
        }
        out.push(tag.to_string());
        if out.len() == MAX_TAGS {
            break;
        }
    }
    out
}

/// An `http(s)` URL of at most 2048 characters without control characters or userinfo, whose
/// host is a public domain name: no IP literal in any notation (`url` already turns
/// `2130706433`, `0x7f000001` and `1.2.3` into IPv4 hosts, as WHATWG does), no `localhost` or
/// local-only name. We never fetch it; the rules protect whoever renders the catalog.
pub fn valid_icon_url(raw: &str) -> bool {
    if raw.is_empty()
        || raw.encode_utf16().count() > MAX_ICON_URL
        || raw.chars().any(|c| c.is_control())
    {
        return false;
    }
    let Ok(url) = Url::parse(raw) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() {
        return false;
    }
    if url.password().is_some() {
        return false;
    }
    match url.host() {
        Some(Host::Domain(d)) => !is_local_name(d) && !looks_numeric(d),
        _ => false,
    }
}

/// The SDK's backstops for hosts that are numbers in disguise (all digits, dotted digits, hex).
fn looks_numeric(host: &str) -> bool {
    let h = host.trim_end_matches('.');
    h.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || h.strip_prefix("0x")
            .or_else(|| h.strip_prefix("0X"))
            .is_some_and(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn service_names() {
        for ok in ["Acme", " ", &"a".repeat(32)] {
            assert!(valid_service_name(ok), "{ok:?}");
        }
        for bad in ["", &"a".repeat(33), "Café", "a\tb", "a\u{7f}"] {
            assert!(!valid_service_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn tags_follow_the_sdk_vector() {
        let tags = json!(["a", "A", "b", "", "c".repeat(33), 5, "d", "e", "f", "g"]);
        assert_eq!(sanitize_tags(&tags), ["a", "b", "d", "e", "f"]);
        assert!(sanitize_tags(&json!("weather")).is_empty());
        assert!(sanitize_tags(&json!(["Wetter\u{e4}"])).is_empty());
    }

    #[test]
    fn icon_urls() {
        for bad in [
            "http://localhost/x",
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://2130706433/x",
            "https://0x7f000001/x",
            "https://u:p@x.com/i",
            "https://:p@x.com/i",
            "data:image/png;base64,AAAA",
            "javascript:alert(1)",
            "https://ｌｏｃａｌｈｏｓｔ/x",
            "https://1.2.3/x",
            "ftp://x.com/i",
            "https://LOCALHOST./x",
            "https://foo.localhost/x",
            "https://x.com/a\nb",
            "",
            &format!("https://x.com/{}", "a".repeat(2048)),
        ] {
            assert!(!valid_icon_url(bad), "{bad:?}");
        }
        for ok in [
            "https://exa%6dple.com/x",
            "https://x.com:8443/i.png",
            "https://пример.рф/i",
            "http://acme.example/icon.png",
        ] {
            assert!(valid_icon_url(ok), "{ok:?}");
        }
    }

    #[test]
    fn bad_fields_are_dropped_one_by_one() {
        let m = ServiceMetadata::from_resource(&json!({
            "url": "https://x.com/a",
            "description": "d".repeat(2000),
            "mimeType": "application/json",
            "serviceName": "Café",
            "tags": ["weather", "WEATHER"],
            "iconUrl": "http://127.0.0.1/i.png",
        }));
        assert_eq!(
            m,
            ServiceMetadata {
                description: None,
                mime_type: Some("application/json".into()),
                service_name: None,
                tags: vec!["weather".into()],
                icon_url: None,
            }
        );
    }
}
