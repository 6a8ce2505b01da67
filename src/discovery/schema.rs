//! Validating a bazaar `info` against the JSON Schema its extension declares (digest §6.1: the
//! facilitator MUST validate before cataloguing), matching what the TS SDK 2.27 accepts with
//! Ajv2020 (research note §c.4), and safe against a hostile schema:
//!
//! - no retrieval at all: the validator is built offline, so an `http(s)://` or `file://` `$ref`
//!   fails to build (the crate's default features would fetch them with a blocking client);
//!   and, as the SDK does first, any `$ref`/`$id`/`$dynamicRef` not starting with `#` rejects;
//! - draft 2020-12 only: a `$schema` naming another draft rejects (Ajv2020 has no such
//!   meta-schema; the crate would quietly accept draft-07);
//! - `pattern`s run on the linear-time `regex` engine (no backtracking blow-up; look-around, which
//!   it lacks, makes the schema fail to build, so such a resource is not catalogued);
//! - nesting is bounded before the schema is compiled;
//! - compiled validators (and refusals) are cached by the schema's hash in a small bounded map,
//!   since every sighting of a route carries the same schema.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use jsonschema::{Draft, PatternOptions, Validator};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How deeply a schema or an `info` may nest (the SDK's own schemas nest about 6 deep).
pub const MAX_DEPTH: usize = 32;
/// Compiled schemas kept.
const CACHE_SIZE: usize = 256;

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Why an extension's schema check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaFailure {
    /// The schema itself is unusable: external reference, other draft, too deep, does not build.
    Schema,
    /// `info` does not satisfy the schema.
    Info,
}

type Compiled = Result<Arc<Validator>, SchemaFailure>;

/// The bounded cache of compiled schemas; shared by the cataloguing worker's blocking calls.
#[derive(Default)]
pub struct SchemaCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<[u8; 32], Compiled>,
    order: VecDeque<[u8; 32]>,
}

impl SchemaCache {
    /// Checks `info` against `schema`.
    pub fn check(&self, schema: &Value, info: &Value) -> Result<(), SchemaFailure> {
        if depth(info) > MAX_DEPTH {
            return Err(SchemaFailure::Info);
        }
        let validator = self.compiled(schema)?;
        if validator.is_valid(info) {
            Ok(())
        } else {
            Err(SchemaFailure::Info)
        }
    }

    fn compiled(&self, schema: &Value) -> Compiled {
        let key: [u8; 32] = Sha256::digest(schema.to_string().as_bytes()).into();
        if let Some(hit) = self.lock().map.get(&key) {
            return hit.clone();
        }
        let compiled = compile(schema);
        let mut cache = self.lock();
        if cache.map.insert(key, compiled.clone()).is_none() {
            cache.order.push_back(key);
        }
        while cache.order.len() > CACHE_SIZE {
            if let Some(old) = cache.order.pop_front() {
                cache.map.remove(&old);
            }
        }
        compiled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn compile(schema: &Value) -> Compiled {
    if depth(schema) > MAX_DEPTH || has_forbidden_reference(schema) || !is_2020_12(schema) {
        return Err(SchemaFailure::Schema);
    }
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .offline()
        .with_pattern_options(PatternOptions::regex())
        .build(schema)
        .map(Arc::new)
        .map_err(|_| SchemaFailure::Schema)
}

/// `$schema`, where given, names 2020-12 (with or without the empty fragment).
fn is_2020_12(schema: &Value) -> bool {
    match schema.get("$schema") {
        None => true,
        Some(Value::String(s)) => s.strip_suffix('#').unwrap_or(s) == DRAFT_2020_12,
        Some(_) => false,
    }
}

/// The SDK's pre-scan (`hasExternalSchemaReference`), over every object key in the tree, plus
/// `$dynamicRef` and nested `$schema`s naming another draft.
fn has_forbidden_reference(node: &Value) -> bool {
    match node {
        Value::Array(items) => items.iter().any(has_forbidden_reference),
        Value::Object(map) => map.iter().any(|(k, v)| {
            let bad = match k.as_str() {
                "$ref" | "$id" | "$dynamicRef" => !v.as_str().is_some_and(|s| s.starts_with('#')),
                "$schema" => v
                    .as_str()
                    .is_some_and(|s| s.strip_suffix('#').unwrap_or(s) != DRAFT_2020_12),
                _ => false,
            };
            bad || has_forbidden_reference(v)
        }),
        _ => false,
    }
}

/// Nesting depth of a JSON value (a scalar is 0).
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(schema: Value, info: Value) -> Result<(), SchemaFailure> {
        SchemaCache::default().check(&schema, &info)
    }

    #[test]
    fn behaves_like_ajv2020_in_the_sdk() {
        let info = json!({ "input": { "type": "http", "method": "GET" } });
        let object = json!({ "type": "object", "properties": { "input": { "type": "object" } } });
        assert_eq!(check(object.clone(), info.clone()), Ok(()));
        let mut with_draft = object.clone();
        with_draft["$schema"] = json!("https://json-schema.org/draft/2020-12/schema#");
        assert_eq!(check(with_draft, info.clone()), Ok(()));
        for other in [
            "http://json-schema.org/draft-07/schema#",
            "http://json-schema.org/draft-04/schema#",
            "https://json-schema.org/draft/2019-09/schema",
        ] {
            let mut s = object.clone();
            s["$schema"] = json!(other);
            assert_eq!(
                check(s, info.clone()),
                Err(SchemaFailure::Schema),
                "{other}"
            );
        }
        assert_eq!(check(json!(true), info.clone()), Ok(()));
        assert_eq!(check(json!(false), info.clone()), Err(SchemaFailure::Info));
        assert_eq!(check(json!(null), info.clone()), Err(SchemaFailure::Schema));
        assert_eq!(
            check(json!({ "type": "nope" }), info.clone()),
            Err(SchemaFailure::Schema)
        );
        // Formats are annotations in 2020-12, unknown ones ignored.
        assert_eq!(check(json!({ "format": "email" }), json!("x")), Ok(()));
        assert_eq!(
            check(json!({ "format": "no-such-format" }), json!("x")),
            Ok(())
        );
        let example_object = json!({ "properties": { "output": { "properties": {
            "example": { "type": "object" } } } } });
        assert_eq!(
            check(example_object, json!({ "output": { "example": [1] } })),
            Err(SchemaFailure::Info)
        );
    }

    #[test]
    fn references_never_leave_the_document() {
        let info = json!({ "a": 1 });
        for schema in [
            json!({ "$ref": "https://example.com/s.json" }),
            json!({ "$ref": "file:///etc/passwd" }),
            json!({ "properties": { "a": { "$ref": "http://169.254.169.254/" } } }),
            json!({ "$id": "https://example.com/root" }),
            json!({ "$id": "#foo" }),
            json!({ "$dynamicRef": "https://example.com/x" }),
            json!({ "$ref": 5 }),
            json!({ "properties": { "$ref": { "type": "object" } } }),
            json!({ "items": { "$schema": "http://json-schema.org/draft-07/schema#" } }),
        ] {
            assert_eq!(
                check(schema.clone(), info.clone()),
                Err(SchemaFailure::Schema),
                "{schema}"
            );
        }
        let local = json!({ "$defs": { "n": { "type": "integer" } },
                            "properties": { "a": { "$ref": "#/$defs/n" } } });
        assert_eq!(check(local.clone(), info), Ok(()));
        assert_eq!(check(local, json!({ "a": "x" })), Err(SchemaFailure::Info));
    }

    #[test]
    fn patterns_are_linear_and_nesting_is_bounded() {
        let evil = json!({ "type": "string", "pattern": "^(a+)+$" });
        let started = std::time::Instant::now();
        assert_eq!(
            check(evil, json!(format!("{}!", "a".repeat(5000)))),
            Err(SchemaFailure::Info)
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let lookahead = json!({ "type": "string", "pattern": "^(?=a)a$" });
        assert_eq!(check(lookahead, json!("a")), Err(SchemaFailure::Schema));
        let mut deep = json!({});
        for _ in 0..40 {
            deep = json!({ "properties": { "a": deep } });
        }
        assert_eq!(check(deep, json!({})), Err(SchemaFailure::Schema));
        let mut deep_info = json!(1);
        for _ in 0..40 {
            deep_info = json!([deep_info]);
        }
        assert_eq!(check(json!(true), deep_info), Err(SchemaFailure::Info));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = SchemaCache::default();
        for i in 0..(CACHE_SIZE + 10) {
            let _ = cache.check(&json!({ "minimum": i }), &json!(i));
        }
        assert_eq!(cache.lock().map.len(), CACHE_SIZE);
        assert_eq!(cache.lock().order.len(), CACHE_SIZE);
    }
}
