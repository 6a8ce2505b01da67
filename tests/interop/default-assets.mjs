#!/usr/bin/env node
// Print, as JSON, the default-asset tables of the INSTALLED official SDKs, which
// config/networks.toml mirrors: @x402/evm DEFAULT_ASSETS and @x402/svm DEFAULT_ASSETS (per CAIP-2
// network, the `$` default first), and the v1 names (@x402/evm/v1 EVM_NETWORK_CHAIN_ID_MAP,
// @x402/svm V1_TO_V2_NETWORK_MAP). Nothing is fetched from the network.
//
// Usage: node default-assets.mjs            (from tests/interop, after npm ci)

import fs from "node:fs";
import { DEFAULT_ASSETS as EVM_ASSETS } from "@x402/evm";
import { EVM_NETWORK_CHAIN_ID_MAP } from "@x402/evm/v1";
import { DEFAULT_ASSETS as SVM_ASSETS, V1_TO_V2_NETWORK_MAP } from "@x402/svm";

const versionOf = name =>
  JSON.parse(fs.readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8")).version;

const v1 = {};
for (const [name, id] of Object.entries(EVM_NETWORK_CHAIN_ID_MAP)) v1[`eip155:${id}`] = name;
for (const [name, caip2] of Object.entries(V1_TO_V2_NETWORK_MAP)) v1[caip2] = name;

process.stdout.write(
  JSON.stringify({
    versions: { "@x402/evm": versionOf("@x402/evm"), "@x402/svm": versionOf("@x402/svm") },
    evm: EVM_ASSETS,
    svm: SVM_ASSETS,
    v1,
  }) + "\n",
);
