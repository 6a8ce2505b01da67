//! From a sighting (the parts of a verified or settled payment that discovery needs) to a
//! validated [`NewListing`], or the reason it is not catalogued.
//!
//! The order follows the TS SDK's `extractDiscoveryInfo` and the research note §c.1: presence,
//! size, `routeTemplate` (read before validation; a bad one is ignored, not fatal), the schema
//! check, a stricter shape check than the SDK's (the buyer can replace the seller's schema with
//! `{}`, so the schema alone proves nothing about the shape), the canonical URL, the soft-dropped
//! metadata, and the seller's requirements as the accept. Runs on a blocking thread: schema
//! compilation is CPU work whose cost the payer chooses.

use serde_json::{Map, Value, json};

use super::metadata::ServiceMetadata;
use super::resource::{self, BadResource};
use super::schema::{SchemaCache, SchemaFailure};
use crate::ledger::catalog::amount_key;
use crate::ledger::{ListingAccept, ListingPayment, NewListing};
use crate::protocol::PaymentRequirementsV2;

/// Largest `extensions.bazaar` we catalogue, serialised. The SDK's declarations are 1–3 KiB;
/// with the other bounds this keeps a page of 100 listings under the TS client's 4 MiB.
pub const MAX_BAZAAR_BYTES: usize = 16 * 1024;
/// Largest `PaymentRequirements` we keep as an accept (real ones are 300–500 bytes).
pub const MAX_REQUIREMENT_BYTES: usize = 1024;
/// Longest HTTP method or MCP tool name kept in the key.
const MAX_NAME: usize = 128;

const QUERY_METHODS: &[&str] = &["GET", "HEAD", "DELETE"];
const BODY_METHODS: &[&str] = &["POST", "PUT", "PATCH"];
const BODY_TYPES: &[&str] = &["json", "form-data", "text"];
const MCP_TRANSPORTS: &[&str] = &["streamable-http", "sse"];

/// What the hot path copies out of a verified or settled v2 payment.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// `paymentPayload.resource` as JSON (absent in some payloads).
    pub resource: Option<Value>,
    /// `paymentPayload.extensions.bazaar`.
    pub bazaar: Value,
    /// The seller's `paymentRequirements` (not the buyer's `accepted` copy).
    pub requirements: PaymentRequirementsV2,
    /// Set for a successful settle.
    pub payment: Option<ListingPayment>,
    /// Unix ms.
    pub seen_at: i64,
}

/// Why a sighting is not catalogued; the label is its `/metrics` outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `bazaar` or its `info` is not an object, or `info.input` is missing.
    Malformed,
    TooLarge,
    /// The declared schema is unusable (external reference, other draft, does not build).
    SchemaRejected,
    /// `info` fails its schema.
    InfoMismatch,
    /// `info` is not a shape the spec defines (type, method, bodyType, toolName, transport).
    BadShape,
    BadResource(BadResource),
    /// The requirements carry no usable amount.
    BadRequirements,
}

impl Skip {
    pub fn label(self) -> &'static str {
        match self {
            Skip::Malformed => "malformed",
            Skip::TooLarge => "too_large",
            Skip::SchemaRejected => "schema_rejected",
            Skip::InfoMismatch => "info_mismatch",
            Skip::BadShape => "bad_shape",
            Skip::BadResource(BadResource::PrivateHost) => "private_host",
            Skip::BadResource(_) => "bad_resource",
            Skip::BadRequirements => "bad_requirements",
        }
    }
}

/// The input variant of a valid `info`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Input {
    Http { method: String },
    Mcp { tool_name: String },
}

/// Validates a sighting into a listing.
pub fn prepare(
    s: &Sighting,
    schemas: &SchemaCache,
    allow_private_hosts: bool,
) -> Result<NewListing, Skip> {
    let bazaar = s.bazaar.as_object().ok_or(Skip::Malformed)?;
    let info = bazaar
        .get("info")
        .filter(|i| i.is_object())
        .ok_or(Skip::Malformed)?;
    if s.bazaar.to_string().len() > MAX_BAZAAR_BYTES {
        return Err(Skip::TooLarge);
    }
    let template = bazaar
        .get("routeTemplate")
        .and_then(Value::as_str)
        .filter(|t| resource::valid_route_template(t));
    let schema = bazaar.get("schema").ok_or(Skip::SchemaRejected)?;
    schemas.check(schema, info).map_err(|f| match f {
        SchemaFailure::Schema => Skip::SchemaRejected,
        SchemaFailure::Info => Skip::InfoMismatch,
    })?;
    let input = shape(info)?;
    let resource_json = s.resource.clone().unwrap_or(Value::Null);
    let url = resource_json
        .get("url")
        .and_then(Value::as_str)
        .ok_or(Skip::BadResource(BadResource::Unparsable))?;
    let mcp = matches!(input, Input::Mcp { .. });
    // MCP tools have no route template (the SDK never sets one for them).
    let template = template.filter(|_| !mcp);
    let (canonical, template_used) =
        resource::canonical(url, template, mcp, allow_private_hosts).map_err(Skip::BadResource)?;
    let template = template.filter(|_| template_used);
    let metadata = ServiceMetadata::from_resource(&resource_json);
    let accept = accept(&s.requirements)?;
    let (kind, method, tool_name) = match input {
        Input::Http { method } => ("http", method, String::new()),
        Input::Mcp { tool_name } => ("mcp", String::new(), tool_name),
    };
    Ok(NewListing {
        resource: canonical,
        kind: kind.into(),
        method,
        tool_name,
        x402_version: 2,
        description: metadata.description,
        mime_type: metadata.mime_type,
        service_name: metadata.service_name,
        tags: metadata.tags,
        icon_url: metadata.icon_url,
        bazaar: stored_extension(bazaar, template).to_string(),
        accept,
        payment: s.payment.clone(),
        seen_at: s.seen_at,
    })
}

/// The shape checks of the SDK's `validateDiscoveryExtensionSpec`, which sellers run on their
/// own declarations at start-up but nobody runs on what a buyer sends.
fn shape(info: &Value) -> Result<Input, Skip> {
    let input = info.get("input").ok_or(Skip::Malformed)?;
    let input = input.as_object().ok_or(Skip::Malformed)?;
    let text = |k: &str| {
        input
            .get(k)
            .map(|v| v.as_str().ok_or(Skip::BadShape))
            .transpose()
    };
    match text("type")? {
        Some("http") => {
            let method = text("method")?.unwrap_or("");
            let known = QUERY_METHODS.contains(&method) || BODY_METHODS.contains(&method);
            if !(method.is_empty() || known) {
                return Err(Skip::BadShape);
            }
            if let Some(body_type) = text("bodyType")? {
                let body_method = method.is_empty() || BODY_METHODS.contains(&method);
                if !BODY_TYPES.contains(&body_type) || !body_method {
                    return Err(Skip::BadShape);
                }
            }
            Ok(Input::Http {
                method: method.to_string(),
            })
        }
        Some("mcp") => {
            let tool_name = text("toolName")?.unwrap_or("");
            let transport_ok = text("transport")?.is_none_or(|t| MCP_TRANSPORTS.contains(&t));
            let schema_ok = input.get("inputSchema").is_some_and(Value::is_object);
            if tool_name.is_empty() || tool_name.len() > MAX_NAME || !transport_ok || !schema_ok {
                return Err(Skip::BadShape);
            }
            Ok(Input::Mcp {
                tool_name: tool_name.to_string(),
            })
        }
        _ => Err(Skip::BadShape),
    }
}

/// The accept a sighting contributes: the seller's requirements, with normalised copies of the
/// fields filters match on.
fn accept(r: &PaymentRequirementsV2) -> Result<ListingAccept, Skip> {
    let amount_key = amount_key(&r.amount).ok_or(Skip::BadRequirements)?;
    let requirement = serde_json::to_string(r).map_err(|_| Skip::BadRequirements)?;
    if requirement.len() > MAX_REQUIREMENT_BYTES {
        return Err(Skip::TooLarge);
    }
    Ok(ListingAccept {
        scheme: r.scheme.clone(),
        network: r.network.clone(),
        pay_to: normalize_address(&r.pay_to),
        asset: normalize_address(&r.asset),
        amount_key,
        requirement,
    })
}

/// EVM addresses match in any case (checksummed or not); other addresses (base58) are
/// case-sensitive and kept as given.
pub fn normalize_address(address: &str) -> String {
    let hex = address
        .as_bytes()
        .get(..2)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"0x"));
    if hex && address.len() > 2 {
        address.to_ascii_lowercase()
    } else {
        address.to_string()
    }
}

/// What is stored and echoed: `info`, `schema` and the template when it was used, nothing else
/// of the buyer's object (and no other extension: they may carry the buyer's data, such as a
/// payment-identifier).
fn stored_extension(bazaar: &Map<String, Value>, template: Option<&str>) -> Value {
    let mut out = json!({
        "info": bazaar.get("info").cloned().unwrap_or(Value::Null),
        "schema": bazaar.get("schema").cloned().unwrap_or(Value::Null),
    });
    if let Some(t) = template {
        out["routeTemplate"] = json!(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirements() -> PaymentRequirementsV2 {
        serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:84532", "amount": "1000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x2096A1fB8B6aBdCeD1A1a5Ef0aAa5D2eCBd3287C", "maxTimeoutSeconds": 60,
            "extra": { "name": "USDC", "version": "2" }
        }))
        .expect("requirements")
    }

    fn weather() -> Sighting {
        Sighting {
            resource: Some(json!({
                "url": "https://api.acme.example/weather/paris?units=metric",
                "description": "Weather by city", "mimeType": "application/json",
                "serviceName": "Acme Weather", "tags": ["weather", "Weather", "forecast"],
                "iconUrl": "https://acme.example/icon.png"
            })),
            bazaar: json!({
                "info": {
                    "input": { "type": "http", "method": "GET", "queryParams": { "units": "metric" },
                               "pathParams": { "city": "paris" } },
                    "output": { "type": "json", "example": { "temp": 60 } }
                },
                "schema": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                    "properties": { "input": { "type": "object", "properties": {
                        "type": { "type": "string", "const": "http" },
                        "method": { "type": "string", "enum": ["GET"] } },
                        "required": ["type", "method"] } },
                    "required": ["input"]
                },
                "routeTemplate": "/weather/:city",
                "sneaky": "not stored"
            }),
            requirements: requirements(),
            payment: None,
            seen_at: 1,
        }
    }

    fn run(s: &Sighting) -> Result<NewListing, Skip> {
        prepare(s, &SchemaCache::default(), false)
    }

    #[test]
    fn an_sdk_declaration_becomes_a_listing() {
        let l = run(&weather()).expect("catalogued");
        assert_eq!(l.resource, "https://api.acme.example/weather/:city");
        assert_eq!(
            (l.kind.as_str(), l.method.as_str(), l.tool_name.as_str()),
            ("http", "GET", "")
        );
        assert_eq!(l.service_name.as_deref(), Some("Acme Weather"));
        assert_eq!(l.tags, ["weather", "forecast"]);
        assert_eq!(
            l.accept.pay_to,
            "0x2096a1fb8b6abdced1a1a5ef0aaa5d2ecbd3287c"
        );
        assert_eq!(l.accept.amount_key.len(), 78);
        let stored: Value = serde_json::from_str(&l.bazaar).expect("json");
        assert_eq!(stored["routeTemplate"], "/weather/:city");
        assert!(stored.get("sneaky").is_none());
    }

    #[test]
    fn poisoned_templates_fall_back_to_the_path() {
        for t in [
            "/weather/../admin",
            "/a/%2e%2e/b",
            "/http%3A%2F%2Fevil.com",
            "/x/%zz",
            "/admin/:x",
        ] {
            let mut s = weather();
            s.bazaar["routeTemplate"] = json!(t);
            let l = run(&s).expect("still catalogued");
            assert_eq!(l.resource, "https://api.acme.example/weather/paris", "{t}");
            let stored: Value = serde_json::from_str(&l.bazaar).expect("json");
            assert!(stored.get("routeTemplate").is_none(), "{t}");
        }
    }

    #[test]
    fn hostile_extensions_are_skipped() {
        let with = |f: &dyn Fn(&mut Sighting)| {
            let mut s = weather();
            f(&mut s);
            run(&s).err()
        };
        assert_eq!(with(&|s| s.bazaar = json!("x")), Some(Skip::Malformed));
        assert_eq!(
            with(&|s| s.bazaar["info"] = json!([1])),
            Some(Skip::Malformed)
        );
        assert_eq!(
            with(&|s| {
                s.bazaar.as_object_mut().map(|m| m.remove("schema"));
            }),
            Some(Skip::SchemaRejected)
        );
        assert_eq!(
            with(&|s| s.bazaar["info"]["input"]["method"] = json!("POST")),
            Some(Skip::InfoMismatch)
        );
        assert_eq!(
            with(&|s| s.bazaar["schema"]["$ref"] = json!("https://evil.example/s.json")),
            Some(Skip::SchemaRejected)
        );
        assert_eq!(
            with(&|s| s.bazaar["padding"] = json!("x".repeat(MAX_BAZAAR_BYTES))),
            Some(Skip::TooLarge)
        );
        // The buyer swaps in an empty schema: the shape check still holds.
        let swap = |input: Value| {
            move |s: &mut Sighting| {
                s.bazaar["schema"] = json!({});
                s.bazaar["info"]["input"] = input.clone();
            }
        };
        assert_eq!(
            with(&swap(json!({ "type": "weird" }))),
            Some(Skip::BadShape)
        );
        assert_eq!(
            with(&swap(json!({ "type": "http", "method": "TRACE" }))),
            Some(Skip::BadShape)
        );
        assert_eq!(
            with(&swap(
                json!({ "type": "http", "method": "GET", "bodyType": "json" })
            )),
            Some(Skip::BadShape)
        );
        assert_eq!(
            with(&swap(
                json!({ "type": "mcp", "toolName": "", "inputSchema": {} })
            )),
            Some(Skip::BadShape)
        );
        assert_eq!(
            with(&swap(
                json!({ "type": "mcp", "toolName": "t", "inputSchema": {}, "transport": "ws" })
            )),
            Some(Skip::BadShape)
        );
        assert_eq!(
            with(&|s| s.resource = Some(json!({ "url": "http://169.254.169.254/latest" }))),
            Some(Skip::BadResource(BadResource::PrivateHost))
        );
        assert_eq!(
            with(&|s| s.resource = Some(json!({ "url": "javascript:alert(1)" }))),
            Some(Skip::BadResource(BadResource::Scheme))
        );
        assert_eq!(
            with(&|s| s.resource = None),
            Some(Skip::BadResource(BadResource::Unparsable))
        );
        assert_eq!(
            with(&|s| s.requirements.amount = "1e3".into()),
            Some(Skip::BadRequirements)
        );
        assert_eq!(
            with(&|s| s.requirements.extra = Some(json!({ "pad": "x".repeat(2000) }))),
            Some(Skip::TooLarge)
        );
    }

    #[test]
    fn addresses_fold_only_when_hex() {
        assert_eq!(normalize_address("0xAbC"), "0xabc");
        assert_eq!(normalize_address("0XAB"), "0xab");
        assert_eq!(normalize_address("So1anaBase58"), "So1anaBase58");
        // Multi-byte text must not be sliced inside a character.
        assert_eq!(normalize_address("aé"), "aé");
        assert_eq!(normalize_address("é"), "é");
        assert_eq!(normalize_address("0x"), "0x");
    }

    #[test]
    fn mcp_tools_are_keyed_by_url_and_tool() {
        let mut s = weather();
        s.resource = Some(json!({ "url": "https://api.x.example/mcp?session=1" }));
        s.bazaar = json!({
            "info": { "input": { "type": "mcp", "toolName": "t1", "inputSchema": { "type": "object" } } },
            "schema": { "type": "object" },
            "routeTemplate": "/mcp"
        });
        let l = run(&s).expect("catalogued");
        assert_eq!(l.resource, "https://api.x.example/mcp");
        assert_eq!(
            (l.kind.as_str(), l.method.as_str(), l.tool_name.as_str()),
            ("mcp", "", "t1")
        );
        s.resource = Some(json!({ "url": "mcp://tool/t1" }));
        assert_eq!(run(&s).expect("catalogued").resource, "mcp://tool/t1");
    }
}
