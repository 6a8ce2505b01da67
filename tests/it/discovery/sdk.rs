//! The official SDKs against our catalog (tests/interop/e2e-bazaar.mjs): an `@x402/express`
//! seller declaring discovery on `GET /weather/:city` and `POST /search` plus an MCP tool, the
//! `@x402/fetch` buyer paying each through us on anvil, and `withBazaar`'s `listResources` and
//! `search` parsing what we answer. On both ledger backends.

use alloy::primitives::{U256, hex};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};

use super::poisoning::app;
use crate::harness::chain::{TOKEN_NAME, TOKEN_VERSION};
use crate::harness::{Chain, Db};

const PRICE: u64 = 2500;

fn script() -> String {
    format!(
        "{}/tests/interop/e2e-bazaar.mjs",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn ok<'a>(out: &'a Value, key: &str) -> &'a Value {
    let v = &out[key];
    assert!(v.get("threw").is_none(), "{key} threw: {v:#}");
    &v["ok"]
}

fn resources(page: &Value, key: &str) -> Vec<String> {
    page[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}: {page:#}"))
        .iter()
        .map(|i| i["resource"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn is_iso_millis(s: &Value) -> bool {
    let s = s.as_str().unwrap_or_default();
    let b = s.as_bytes();
    s.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.chars().filter(|c| c.is_ascii_digit()).count() == 17
}

async fn official_sdks_list_and_search_what_they_paid_for(db: Db) {
    let chain = Chain::start().await;
    // The SDK seller listens on 127.0.0.1, which a public catalog refuses by default.
    let app = app(
        &chain,
        &db,
        &[("X402__DISCOVERY__ALLOW_PRIVATE_HOSTS", "true")],
    )
    .await;
    let buyer = PrivateKeySigner::random();
    chain
        .mint(chain.token, buyer.address(), U256::from(1_000_000u64))
        .await;
    let pay_to = PrivateKeySigner::random().address().to_checksum(None);
    let token = chain.token.to_checksum(None);
    let job = json!({
        "facilitatorUrl": app.base,
        "rpcUrl": chain.url,
        "chainId": chain.chain_id,
        "token": token,
        "tokenName": TOKEN_NAME,
        "tokenVersion": TOKEN_VERSION,
        "privateKey": format!("0x{}", hex::encode(buyer.to_bytes())),
        "payTo": pay_to,
        "amount": PRICE.to_string(),
    });
    let out = crate::harness::script::run_json("node", &[script()], Some(&job)).await;
    let network = format!("eip155:{}", chain.chain_id);

    // The three payments went through us and settled.
    assert_eq!(out["unpaidGet"]["status"], 402, "{out:#}");
    for case in ["paidGet", "paidPost"] {
        assert_eq!(out[case]["status"], 200, "{case}: {out:#}");
        assert_eq!(
            out[case]["paymentResponse"]["success"], true,
            "{case}: {out:#}"
        );
    }
    let mcp = ok(&out, "mcp");
    assert_eq!(mcp["verified"]["isValid"], true, "{mcp:#}");
    assert_eq!(mcp["settled"]["success"], true, "{mcp:#}");
    assert_eq!(
        mcp["declared"]["bazaar"]["info"]["input"]["toolName"],
        "get_forecast"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE state = 'settled'")
            .await,
        3
    );

    // listResources, as the official client parsed it.
    let base = out["sellerBase"].as_str().expect("seller base");
    let get_route = format!("{base}/weather/:city");
    let post_route = format!("{base}/search");
    let tool = "mcp://tool/get_forecast".to_string();
    let all = ok(&out, "listAll");
    assert_eq!(all["x402Version"], 2);
    assert_eq!(
        all["pagination"],
        json!({ "limit": 20, "offset": 0, "total": 3 })
    );
    let mut listed = resources(all, "items");
    listed.sort();
    let mut expected = vec![get_route.clone(), post_route.clone(), tool.clone()];
    expected.sort();
    assert_eq!(listed, expected, "{all:#}");
    let item = |r: &str| {
        all["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["resource"] == r))
            .cloned()
            .unwrap_or_else(|| panic!("{r} not listed"))
    };

    let get = item(&get_route);
    assert_eq!(get["type"], "http");
    assert_eq!(get["x402Version"], 2);
    assert!(is_iso_millis(&get["lastUpdated"]), "{get:#}");
    let accept = &get["accepts"][0];
    assert_eq!(get["accepts"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (accept["scheme"].as_str(), accept["network"].as_str()),
        (Some("exact"), Some(network.as_str()))
    );
    assert_eq!(accept["amount"], PRICE.to_string());
    assert_eq!(accept["payTo"], pay_to);
    assert_eq!(accept["asset"], token);
    assert_eq!(get["serviceName"], "Acme Weather");
    assert_eq!(
        get["tags"],
        json!(["weather", "forecast"]),
        "case-insensitive duplicates dropped"
    );
    assert_eq!(get["iconUrl"], "https://acme.example/icon.png");
    assert_eq!(
        get["description"],
        "Current conditions and temperature by city"
    );
    assert_eq!(get["mimeType"], "application/json");
    let bazaar = &get["extensions"]["bazaar"];
    assert_eq!(bazaar["routeTemplate"], "/weather/:city");
    assert_eq!(bazaar["info"]["input"]["method"], "GET");
    assert_eq!(bazaar["info"]["input"]["pathParams"]["city"], "paris");
    assert!(bazaar["schema"].is_object());
    let observed = &get["observed"];
    assert_eq!(observed["paid"], true);
    assert_eq!(observed["settledPayments30d"], 1);
    assert_eq!(observed["payers30d"], 1);
    assert!(is_iso_millis(&observed["lastSettledAt"]), "{observed:#}");
    assert_eq!(
        observed["priceRange"],
        json!([{ "network": network, "asset": token.to_lowercase(),
                 "min": PRICE.to_string(), "max": PRICE.to_string() }])
    );

    let post = item(&post_route);
    assert_eq!(
        post["extensions"]["bazaar"]["info"]["input"]["method"],
        "POST"
    );
    assert_eq!(
        post["extensions"]["bazaar"]["info"]["input"]["bodyType"],
        "json"
    );
    assert_eq!(
        post["extensions"]["bazaar"]["info"]["input"]["body"]["query"],
        "margherita"
    );
    assert!(post["extensions"]["bazaar"].get("routeTemplate").is_none());
    assert_eq!(post["serviceName"], "Pizza Finder");

    let mcp_item = item(&tool);
    assert_eq!(mcp_item["type"], "mcp");
    assert_eq!(
        mcp_item["extensions"]["bazaar"]["info"]["input"]["toolName"],
        "get_forecast"
    );
    assert_eq!(
        mcp_item["extensions"]["bazaar"]["info"]["input"]["transport"],
        "streamable-http"
    );
    assert_eq!(mcp_item["serviceName"], "Acme Forecast MCP");
    assert_eq!(mcp_item["observed"]["settledPayments30d"], 1);

    // Filters and pages through the official client's parameters.
    let http_only = ok(&out, "listHttp");
    assert_eq!(http_only["pagination"]["total"], 2);
    assert!(
        http_only["items"]
            .as_array()
            .is_some_and(|i| i.iter().all(|i| i["type"] == "http"))
    );
    assert_eq!(resources(ok(&out, "listMcp"), "items"), [tool.as_str()]);
    let page2 = ok(&out, "listPage2");
    assert_eq!(
        page2["pagination"],
        json!({ "limit": 1, "offset": 1, "total": 3 })
    );
    assert_eq!(page2["items"][0], all["items"][1]);
    assert_eq!(ok(&out, "listByFilters")["pagination"]["total"], 3);
    assert_eq!(ok(&out, "listOtherPayTo")["pagination"]["total"], 0);

    // search: the serviceName match first, then the tag match ("weather-proof").
    let weather = ok(&out, "searchWeather");
    assert_eq!(weather["x402Version"], 2);
    assert_eq!(
        resources(weather, "resources"),
        [get_route.clone(), post_route.clone()],
        "{weather:#}"
    );
    assert_eq!(
        weather["pagination"],
        json!({ "limit": 20, "cursor": null })
    );
    assert_eq!(weather["partialResults"], false);
    assert_eq!(
        resources(ok(&out, "searchPizza"), "resources"),
        [post_route.as_str()]
    );
    assert_eq!(
        resources(ok(&out, "searchMcp"), "resources"),
        [tool.as_str()]
    );
    let first = ok(&out, "searchPage1");
    assert_eq!(resources(first, "resources"), [tool.as_str()], "{first:#}");
    assert_eq!(first["pagination"], json!({ "limit": 1, "cursor": "1" }));
    let second = ok(&out, "searchPage2");
    assert_eq!(
        resources(second, "resources"),
        [get_route.as_str()],
        "{second:#}"
    );
    assert_eq!(second["pagination"]["cursor"], Value::Null);

    // Our additions, by raw request.
    assert_eq!(out["cheapEnough"]["status"], 200);
    assert_eq!(out["cheapEnough"]["body"]["pagination"]["total"], 3);
    assert_eq!(out["tooExpensive"]["body"]["pagination"]["total"], 0);
    for bad in ["badLimit", "badSearch"] {
        assert_eq!(out[bad]["status"], 400, "{bad}: {out:#}");
        assert!(out[bad]["body"]["error"].is_string(), "{bad}: {out:#}");
    }
    let refused = out["errorFromClient"]["threw"].as_str().unwrap_or_default();
    assert!(
        refused.contains("listDiscoveryResources failed (400)"),
        "{out:#}"
    );
    app.stop().await;
}

#[tokio::test]
async fn official_sdks_list_and_search_what_they_paid_for_on_sqlite() {
    official_sdks_list_and_search_what_they_paid_for(Db::sqlite()).await;
}

#[tokio::test]
async fn official_sdks_list_and_search_what_they_paid_for_on_postgres() {
    official_sdks_list_and_search_what_they_paid_for(Db::postgres().await).await;
}
