//! Round trips of real wire JSON: requests signed by the official SDK (tests/fixtures/sdk-*,
//! made with tests/interop/sign-evm.mjs) and the spec's examples, with unknown fields added, must
//! decode and re-encode to the same JSON.

use serde_json::Value;

use super::*;

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn reencode(request: &PaymentRequest) -> Value {
    match request {
        PaymentRequest::V1(r) => serde_json::to_value(r),
        PaymentRequest::V2(r) => serde_json::to_value(r),
    }
    .expect("encodes")
}

#[test]
fn sdk_v2_request_round_trips_with_extensions() {
    let text = include_str!("../../tests/fixtures/sdk-v2-verify-request.json");
    let request = parse_request(text.as_bytes()).expect("decodes");
    assert_eq!(request.x402_version(), 2);
    assert_eq!(request.network(), "eip155:84532");
    assert_eq!(request.amount(), "10000");
    assert!(
        request
            .extensions()
            .is_some_and(|e| e.contains_key("bazaar") && e.contains_key("payment-identifier"))
    );
    assert_eq!(reencode(&request), json(text));
}

#[test]
fn sdk_v1_request_round_trips() {
    let text = include_str!("../../tests/fixtures/sdk-v1-verify-request.json");
    let request = parse_request(text.as_bytes()).expect("decodes");
    assert_eq!(request.x402_version(), 1);
    assert_eq!(request.payload_network(), "base-sepolia");
    assert_eq!(request.amount(), "10000");
    assert_eq!(
        request.resource_url(),
        Some("https://api.example.com/premium-data")
    );
    assert_eq!(reencode(&request), json(text));
}

#[test]
fn unknown_fields_and_extra_are_preserved() {
    let text = include_str!("../../tests/fixtures/spec-v2-svm-verify-request.json");
    let request = parse_request(text.as_bytes()).expect("decodes");
    let again = reencode(&request);
    assert_eq!(again, json(text));
    assert_eq!(
        again["paymentRequirements"]["futureField"],
        serde_json::json!([1, 2, 3])
    );
    assert_eq!(
        again["paymentPayload"]["x-client-hint"]["wallet"],
        "phantom"
    );
}

#[test]
fn supported_and_responses_round_trip() {
    let text = include_str!("../../tests/fixtures/spec-v2-supported.json");
    let supported: SupportedResponse = serde_json::from_str(text).expect("decodes");
    assert_eq!(supported.kinds.len(), 5);
    assert_eq!(
        serde_json::to_value(&supported).expect("encodes"),
        json(text)
    );

    let all = json(include_str!("../../tests/fixtures/spec-v2-responses.json"));
    for key in ["verifyValid", "verifyInvalid"] {
        let r: VerifyResponse = serde_json::from_value(all[key].clone()).expect("decodes");
        assert_eq!(serde_json::to_value(&r).expect("encodes"), all[key]);
    }
    for key in ["settleSuccess", "settleFailure"] {
        let r: SettleResponse = serde_json::from_value(all[key].clone()).expect("decodes");
        assert_eq!(serde_json::to_value(&r).expect("encodes"), all[key]);
    }
}

#[test]
fn malformed_versus_invalid() {
    assert!(matches!(
        parse_request(b"nope"),
        Err(RequestError::Malformed(_))
    ));
    assert!(matches!(
        parse_request(b"{}"),
        Err(RequestError::Malformed(_))
    ));
    let v3 = br#"{"paymentPayload": {"x402Version": 3}, "paymentRequirements": {"network": "eip155:1"}}"#;
    match parse_request(v3) {
        Err(RequestError::Invalid {
            reason, network, ..
        }) => {
            assert_eq!(reason, reason::INVALID_X402_VERSION);
            assert_eq!(network, "eip155:1");
        }
        other => panic!("{other:?}"),
    }
}
