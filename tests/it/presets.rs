//! The network presets (config/networks.toml) are the installed SDKs' default-asset tables:
//! every network and every asset of `@x402/evm` and `@x402/svm` (tests/interop/default-assets.mjs),
//! field by field, in the same order, and no network the SDKs do not have.

use serde_json::Value;

#[tokio::test]
async fn presets_are_the_installed_sdks_default_asset_tables() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/default-assets.mjs"
    );
    let sdk = crate::harness::script::run_json("node", &[script.to_string()], None).await;
    let presets = x402_facilitator::config::presets().expect("the presets parse");
    let mut differences = Vec::new();
    let mut sdk_networks = 0;
    for (family, table) in [("evm", &sdk["evm"]), ("svm", &sdk["svm"])] {
        let table = table.as_object().cloned().unwrap_or_default();
        for (network, assets) in table {
            sdk_networks += 1;
            let Some((slug, preset)) = presets.iter().find(|(_, p)| p.network == network) else {
                differences.push(format!("{family} {network} has no preset"));
                continue;
            };
            let sdk_v1 = sdk["v1"][&network].as_str();
            if preset.v1_name.as_deref() != sdk_v1 {
                differences.push(format!(
                    "{slug}: v1 name {:?} ≠ SDK {sdk_v1:?}",
                    preset.v1_name
                ));
            }
            let assets = assets.as_array().cloned().unwrap_or_default();
            if assets.len() != preset.assets.len() {
                differences.push(format!(
                    "{slug}: {} assets ≠ SDK {}",
                    preset.assets.len(),
                    assets.len()
                ));
            }
            for (ours, theirs) in preset.assets.iter().zip(&assets) {
                let text = |k: &str| theirs[k].as_str().map(str::to_string);
                let same = Some(ours.address.clone()) == text("asset")
                    && Some(ours.symbol.clone()) == text("symbol")
                    && Some(u64::from(ours.decimals)) == theirs["decimals"].as_u64()
                    && match family {
                        "evm" => {
                            ours.eip712_name == text("name")
                                && ours.eip712_version == text("version")
                                && ours.transfer_method.as_deref()
                                    == Some(
                                        text("assetTransferMethod").as_deref().unwrap_or("eip3009"),
                                    )
                                && ours.eip2612 == (theirs["supportsEip2612"] == Value::Bool(true))
                        }
                        _ => ours.token_program == text("tokenProgram"),
                    };
                if !same {
                    differences.push(format!("{slug}: {ours:?} ≠ SDK {theirs}"));
                }
            }
        }
    }
    if presets.len() != sdk_networks {
        differences.push(format!(
            "{} presets for {sdk_networks} SDK networks",
            presets.len()
        ));
    }
    assert!(
        differences.is_empty(),
        "config/networks.toml differs from the SDKs ({}):\n  {}",
        sdk["versions"],
        differences.join("\n  ")
    );
}
