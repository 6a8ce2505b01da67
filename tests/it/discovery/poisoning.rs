//! The hostile side of discovery, through the real app on a real chain: really-signed payments
//! (valid ones: cataloguing only sees what passed verify or settle) carrying poisoned bazaar
//! extensions, an unpaid payment, free verifies; then the operator's knobs and the query
//! parameters.
//!
//! Cataloguing is asynchronous and FIFO, so a test ends its hostile sightings with a harmless
//! "sentinel" payment and waits for it to be listed: everything sent before has been handled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::harness::app::{base_env, spawn_env};
use crate::harness::payment::random_b256;
use crate::harness::{Chain, Db, Options, Payment, TestApp, spawn_with};

const WAIT: Duration = Duration::from_secs(20);

/// What the SDK's `declareDiscoveryExtension` produces for `GET /weather/:city` (research note
/// §a.1), with `routeTemplate` as given.
pub fn weather_extension(template: Option<&str>) -> Value {
    let mut ext = json!({
        "info": {
            "input": { "type": "http", "method": "GET", "queryParams": { "units": "metric" },
                       "pathParams": { "city": "paris" } },
            "output": { "type": "json", "example": { "temp": 18 } }
        },
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "input": {
                    "type": "object",
                    "properties": {
                        "type": { "type": "string", "const": "http" },
                        "method": { "type": "string", "enum": ["GET"] },
                        "queryParams": { "type": "object" },
                        "pathParams": { "type": "object" }
                    },
                    "required": ["type", "method"],
                    "additionalProperties": false
                },
                "output": { "type": "object" }
            },
            "required": ["input"]
        }
    });
    if let Some(t) = template {
        ext["routeTemplate"] = json!(t);
    }
    ext
}

/// A fresh, funded, really-signed payment for `resource` carrying `bazaar`.
pub struct Payer {
    base: Payment,
}

impl Payer {
    pub async fn new(chain: &Chain) -> Self {
        let base = Payment::new(chain);
        chain
            .mint(chain.token, base.from, U256::from(10_000_000u64))
            .await;
        Payer { base }
    }

    pub fn body(&self, resource: Value, bazaar: Value) -> Value {
        let mut p = self.base.clone();
        p.nonce = random_b256();
        p.extensions = Some(json!({ "bazaar": bazaar }));
        let mut body = p.body();
        body["paymentPayload"]["resource"] = resource;
        body
    }
}

/// The app on `chain`, with `env` added to the test defaults.
pub async fn app(chain: &Chain, db: &Db, env: &[(&str, &str)]) -> TestApp {
    let mut options = Options::default();
    for (k, v) in env {
        options = options.env(k, *v);
    }
    spawn_with(chain, db, options).await
}

pub async fn settled(app: &TestApp, body: &Value) {
    let answer = app.settle(body).await;
    assert_eq!(answer["success"], true, "{answer}");
}

/// `GET path` as JSON with its status.
pub async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let resp = app
        .http
        .get(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .send()
        .await
        .expect("request sent");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON {status}: {text}"));
    (status, json)
}

/// The catalogued resources (`resource` of every item), once `until` holds for the listing.
pub async fn listing_once(app: &TestApp, path: &str, until: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, page) = get(app, path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        if until(&page) {
            return page;
        }
        assert!(
            started.elapsed() < WAIT,
            "catalog never reached the state: {page:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["resource"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `x402_discovery_sightings_total{outcome}` from `/metrics`.
pub async fn sightings(app: &TestApp, outcome: &str) -> u64 {
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let prefix = format!("x402_discovery_sightings_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {outcome} series in {text}"))
}

/// A loopback listener that counts connections: nothing discovery stores may ever be fetched.
async fn tripwire() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::Relaxed);
        }
    });
    (url, hits)
}

#[tokio::test]
async fn poisoned_payments_catalogue_nothing_they_should_not() {
    let chain = Chain::start().await;
    let db = Db::sqlite();
    let app = app(&chain, &db, &[]).await;
    let payer = Payer::new(&chain).await;
    let (trap, trap_hits) = tripwire().await;
    let weather = json!({ "url": "https://api.acme.example/weather/paris?units=metric",
                          "description": "Weather by city", "mimeType": "application/json" });

    // Route templates that try to file the payment under another route: each is ignored and
    // the resource is catalogued under the path that was paid for.
    for template in [
        "/weather/../admin",
        "/weather/%2e%2e/admin",
        "/weather/%252e%252e/admin",
        "/a/%25252525252e",
        "/http%3A%2F%2Fevil.example",
        "/weather/%zz",
        "//evil.example/x",
        "/admin/:x",
        "/",
    ] {
        settled(
            &app,
            &payer.body(weather.clone(), weather_extension(Some(template))),
        )
        .await;
    }
    // Info that fails its own schema.
    let mut mismatch = weather_extension(None);
    mismatch["info"]["input"]["method"] = json!("DELETE");
    let at = |url: &str| json!({ "url": url, "description": "poison" });
    settled(
        &app,
        &payer.body(at("https://mismatch.example/x"), mismatch),
    )
    .await;
    // A schema that points outside the document (at our tripwire, which must stay silent).
    let mut remote = weather_extension(None);
    remote["schema"]["properties"]["input"] = json!({ "$ref": format!("{trap}/schema.json") });
    settled(&app, &payer.body(at("https://ref.example/x"), remote)).await;
    // The buyer swaps in an empty schema and an input type nobody defines.
    let swapped = json!({ "info": { "input": { "type": "weird" } }, "schema": {} });
    settled(&app, &payer.body(at("https://swapped.example/x"), swapped)).await;
    // Hosts and schemes a public catalog must not point agents at.
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:8080/admin",
        "http://10.0.0.7/x",
    ] {
        settled(&app, &payer.body(at(url), weather_extension(None))).await;
    }
    settled(
        &app,
        &payer.body(at("javascript:alert(1)"), weather_extension(None)),
    )
    .await;
    // An extension too large to list.
    let mut huge = weather_extension(None);
    huge["info"]["output"]["example"] = json!({ "pad": "x".repeat(20_000) });
    settled(&app, &payer.body(at("https://huge.example/x"), huge)).await;
    // An invalid payment (signed by a stranger) carrying a perfectly good extension.
    let mut unpaid = payer.body(at("https://unpaid.example/x"), weather_extension(None));
    let stranger = PrivateKeySigner::random();
    let mut forged = Payment::new(&chain);
    forged.payer = stranger;
    unpaid["paymentPayload"]["payload"]["signature"] = json!(forged.signature().to_string());
    let v = app.verify(&unpaid).await;
    assert_eq!(v["isValid"], false, "{v}");
    let s = app.settle(&unpaid).await;
    assert_eq!(s["success"], false, "{s}");
    // A free verify: by default not even stored (it could never be listed).
    let free = payer.body(at("https://free.example/x"), weather_extension(None));
    assert_eq!(app.verify(&free).await["isValid"], true);
    // Soft-dropped metadata on an otherwise good resource, and a neighbouring extension whose
    // data (a buyer's payment id) must not be echoed.
    let mut decorated = payer.body(
        json!({ "url": "https://decorated.example/x", "serviceName": "Café", "tags": "weather",
                "iconUrl": format!("{trap}/icon.png") }),
        weather_extension(None),
    );
    decorated["paymentPayload"]["extensions"]["payment-identifier"] =
        json!({ "info": { "id": "buyer-secret-id-0123456789" } });
    settled(&app, &decorated).await;
    // The sentinel: a private-looking but allowed resource would be refused, so a public one.
    settled(
        &app,
        &payer.body(at("https://sentinel.example/x"), weather_extension(None)),
    )
    .await;

    let page = listing_once(&app, "/discovery/resources", |p| {
        names(p).contains(&"https://sentinel.example/x".to_string())
    })
    .await;
    let mut listed = names(&page);
    listed.sort();
    assert_eq!(
        listed,
        [
            "https://api.acme.example/weather/paris",
            "https://decorated.example/x",
            "https://sentinel.example/x",
        ],
        "{page:#}"
    );
    let text = page.to_string();
    for banned in [
        "evil",
        "admin",
        "%2e",
        "..",
        "buyer-secret-id",
        "Café",
        "/icon.png",
    ] {
        assert!(
            !text.contains(banned),
            "{banned} reached the catalog: {page:#}"
        );
    }
    for item in page["items"].as_array().expect("items") {
        assert!(
            item["extensions"]["bazaar"].get("routeTemplate").is_none(),
            "{item:#}"
        );
        assert_eq!(
            item["extensions"].as_object().map(|e| e.len()),
            Some(1),
            "{item:#}"
        );
    }
    // Each refusal for its own reason.
    for (outcome, n) in [
        ("info_mismatch", 1),
        ("schema_rejected", 1),
        ("bad_shape", 1),
        ("private_host", 3),
        ("bad_resource", 1),
        ("too_large", 1),
        ("inserted", 3), // weather, decorated, sentinel
        ("updated", 8),  // the other eight template attempts
        ("dropped", 0),
    ] {
        assert_eq!(sightings(&app, outcome).await, n, "{outcome}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM catalog_resources").await,
        3,
        "nothing unlisted was stored either"
    );
    assert_eq!(
        trap_hits.load(Ordering::Relaxed),
        0,
        "something fetched a URL from a payload"
    );
    // The weather resource was paid nine times, in nine transactions.
    let weather = page["items"]
        .as_array()
        .and_then(|i| {
            i.iter()
                .find(|i| i["resource"] == "https://api.acme.example/weather/paris")
        })
        .expect("weather");
    assert_eq!(weather["observed"]["settledPayments30d"], 9, "{weather:#}");
    assert_eq!(weather["observed"]["paid"], true);
    assert_eq!(weather["description"], "Weather by city");
}

#[tokio::test]
async fn verify_only_resources_are_listed_only_when_the_operator_allows_it() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let app = app(&chain, &db, &[("X402__DISCOVERY__LIST_UNPAID", "true")]).await;
    let payer = Payer::new(&chain).await;
    let at = |url: &str| json!({ "url": url, "serviceName": "Weather Co" });
    let free = payer.body(at("https://free.example/w"), weather_extension(None));
    assert_eq!(app.verify(&free).await["isValid"], true);
    let paid = payer.body(at("https://paid.example/w"), weather_extension(None));
    assert_eq!(app.verify(&paid).await["isValid"], true);
    settled(&app, &paid).await;
    // Wait for the settle's sighting, not only the two verifies'.
    let page = listing_once(&app, "/discovery/resources", |p| {
        p["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .any(|i| i["resource"] == "https://paid.example/w" && i["observed"]["paid"] == true)
        })
    })
    .await;
    assert_eq!(
        names(&page),
        ["https://paid.example/w", "https://free.example/w"],
        "paid resources first: {page:#}"
    );
    assert_eq!(page["items"][0]["observed"]["paid"], true);
    assert_eq!(page["items"][0]["observed"]["settledPayments30d"], 1);
    assert_eq!(page["items"][1]["observed"]["paid"], false);
    assert_eq!(page["items"][1]["observed"]["lastSettledAt"], Value::Null);
    let (_, found) = get(&app, "/discovery/search?query=weather").await;
    let order: Vec<&str> = found["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["resource"].as_str())
        .collect();
    assert_eq!(order, ["https://paid.example/w", "https://free.example/w"]);
    // Each verify inserted its resource; the settle updated the one it paid for.
    assert_eq!(sightings(&app, "inserted").await, 2);
    assert_eq!(sightings(&app, "updated").await, 1);
}

#[tokio::test]
async fn discovery_answers_bad_parameters_with_json_400_and_can_be_switched_off() {
    for db in crate::harness::db::both().await {
        let app = spawn_env(base_env(&db), Vec::new()).await;
        let (_, supported) = app.get("/supported").await;
        assert!(
            supported["extensions"]
                .as_array()
                .is_some_and(|e| e.contains(&json!("bazaar"))),
            "{supported}"
        );
        let (status, empty) = get(&app, "/discovery/resources").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            empty,
            json!({ "x402Version": 2, "items": [],
                    "pagination": { "limit": 20, "offset": 0, "total": 0 } })
        );
        let (status, none) = get(&app, "/discovery/search?query=weather").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            none,
            json!({ "x402Version": 2, "resources": [], "partialResults": false,
                    "pagination": { "limit": 20, "cursor": null } })
        );
        for hostile in [
            "%22",
            "*",
            "NEAR(a%20b)",
            "service_name%3Ax",
            "x%27%20OR%20%271%27%3D%271",
            "%27)%3B%20DROP%20TABLE%20catalog_resources%3B--",
            "%F0%9F%92%A9",
            "the",
        ] {
            let (status, body) = get(&app, &format!("/discovery/search?query={hostile}")).await;
            assert_eq!(status, StatusCode::OK, "{hostile}: {body}");
        }
        let long = "a".repeat(300);
        for bad in [
            "/discovery/resources?limit=abc".to_string(),
            "/discovery/resources?limit=0".into(),
            "/discovery/resources?offset=-1".into(),
            "/discovery/resources?offset=99999999999999999999".into(),
            "/discovery/resources?sort=random".into(),
            "/discovery/resources?maxPrice=100".into(),
            "/discovery/resources?maxPrice=1.5&asset=0xa".into(),
            "/discovery/resources?type=http&type=mcp".into(),
            format!("/discovery/resources?payTo={long}"),
            "/discovery/resources?cursor=20".into(),
            "/discovery/search".into(),
            "/discovery/search?query=x&cursor=abc".into(),
            format!("/discovery/search?query={long}"),
            "/discovery/search?query=x&offset=5".into(),
        ] {
            let (status, body) = get(&app, &bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
            assert!(
                body["error"].is_string() && body["errorId"].is_string(),
                "{bad}: {body}"
            );
        }
        app.stop().await;
    }
    let db = Db::sqlite();
    let mut env = base_env(&db);
    env.push(("X402__DISCOVERY__ENABLED".into(), "false".into()));
    let app = spawn_env(env, Vec::new()).await;
    let (_, supported) = app.get("/supported").await;
    assert_eq!(supported["extensions"], json!(["payment-identifier"]));
    for path in ["/discovery/resources", "/discovery/search?query=x"] {
        let (status, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(body["error"].is_string(), "{body}");
    }
}
