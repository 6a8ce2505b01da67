#!/usr/bin/env node
// Bazaar discovery end to end with the OFFICIAL SDKs, unchanged, against OUR facilitator:
//   seller: express + @x402/express paymentMiddleware with two routes declaring discovery through
//           @x402/extensions' declareDiscoveryExtension: `GET /weather/:city` (query parameters,
//           service metadata: serviceName, tags, iconUrl) and `POST /search` (a JSON body schema);
//           and an MCP tool, paid the way @x402/mcp's payment wrapper does it (that package is
//           not installed): the same x402ResourceServer builds the 402 for `mcp://tool/<name>`
//           with an MCP discovery declaration, then verifies and settles the buyer's payload;
//   buyer:  @x402/fetch wrapFetchWithPayment + @x402/evm ExactEvmScheme for the HTTP routes, and
//           x402Client.createPaymentPayload for the tool;
//   discovery client: @x402/extensions' withBazaar(HTTPFacilitatorClient) listResources() and
//           search() against our facilitator, as an agent would use them.
//
// stdin: one JSON job { "facilitatorUrl", "rpcUrl", "chainId", "token", "tokenName",
//   "tokenVersion", "privateKey", "payTo", "amount" }.
// stdout: one JSON result (see `result`). On a harness error: {"error": …} on stderr, exit 2.

import fs from "node:fs";
import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { HTTPFacilitatorClient, decodePaymentResponseHeader } from "@x402/core/http";
import { registerExactEvmScheme as registerServerScheme } from "@x402/evm/exact/server";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { registerExactEvmScheme as registerClientScheme } from "@x402/evm/exact/client";
import { declareDiscoveryExtension, withBazaar } from "@x402/extensions/bazaar";
import { privateKeyToAccount } from "viem/accounts";

const DEADLINE_MS = 100_000;
const CATALOGUE_WAIT_MS = 30_000;

function fail(message) {
  process.stderr.write(JSON.stringify({ error: message }) + "\n");
  process.exit(2);
}
setTimeout(() => fail(`e2e-bazaar did not finish within ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

const jsonSafe = obj =>
  obj === undefined
    ? null
    : JSON.parse(JSON.stringify(obj, (_, v) => (typeof v === "bigint" ? v.toString() : v)));

async function readJob() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const versionOf = name =>
  JSON.parse(fs.readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8"))
    .version;

/** A call's answer, or what it threw (so that a parse failure of the client is visible). */
async function attempt(call) {
  try {
    return { ok: jsonSafe(await call()) };
  } catch (e) {
    return { threw: e instanceof Error ? e.message : String(e) };
  }
}

async function main() {
  const job = await readJob();
  for (const k of ["facilitatorUrl", "token", "tokenName", "tokenVersion", "privateKey", "payTo", "amount"]) {
    if (job[k] === undefined) fail(`job.${k} is required`);
  }
  const network = `eip155:${Number(job.chainId ?? 31337)}`;
  const account = privateKeyToAccount(job.privateKey);
  const price = {
    amount: String(job.amount),
    asset: job.token,
    extra: { name: job.tokenName, version: job.tokenVersion },
  };
  const accept = { scheme: "exact", network, payTo: job.payTo, price, maxTimeoutSeconds: 60 };

  // ---- seller ----
  const resourceServer = new x402ResourceServer(new HTTPFacilitatorClient({ url: job.facilitatorUrl }));
  registerServerScheme(resourceServer);
  const app = express();
  app.use(express.json());
  app.use(
    paymentMiddleware(
      {
        "GET /weather/:city": {
          accepts: accept,
          description: "Current conditions and temperature by city",
          mimeType: "application/json",
          serviceName: "Acme Weather",
          tags: ["weather", "Weather", "forecast"],
          iconUrl: "https://acme.example/icon.png",
          extensions: {
            ...declareDiscoveryExtension({
              input: { units: "metric" },
              inputSchema: {
                properties: { units: { type: "string", enum: ["metric", "imperial"] } },
                required: ["units"],
              },
              output: { example: { city: "paris", temp: 18 } },
            }),
          },
        },
        "POST /search": {
          accepts: accept,
          description: "Full-text search over pizza restaurants",
          mimeType: "application/json",
          serviceName: "Pizza Finder",
          tags: ["food", "weather-proof"],
          extensions: {
            ...declareDiscoveryExtension({
              bodyType: "json",
              input: { query: "margherita", limit: 5 },
              inputSchema: {
                properties: { query: { type: "string" }, limit: { type: "integer" } },
                required: ["query"],
              },
              output: { example: { results: [] } },
            }),
          },
        },
      },
      resourceServer,
    ),
  );
  app.get("/weather/:city", (req, res) => res.json({ city: req.params.city, temp: 18 }));
  app.post("/search", (req, res) => res.json({ results: [`${req.body?.query ?? ""} place`] }));
  const listener = await new Promise((resolve, reject) => {
    const l = app.listen(0, "127.0.0.1", () => resolve(l));
    l.on("error", reject);
  });
  const base = `http://127.0.0.1:${listener.address().port}`;

  // ---- buyer ----
  const buyer = () => {
    const client = new x402Client();
    // The local test token is not in @x402/evm's default-asset table (see e2e-v2.mjs).
    client.setSpendControls(false);
    registerClientScheme(client, { signer: account, networks: [network] });
    return client;
  };
  const payingFetch = wrapFetchWithPayment(fetch, buyer());
  const describe = async response => ({
    status: response.status,
    body: await response.json().catch(() => null),
    paymentResponse: response.headers.get("PAYMENT-RESPONSE")
      ? decodePaymentResponseHeader(response.headers.get("PAYMENT-RESPONSE"))
      : null,
  });

  const result = {
    versions: Object.fromEntries(
      ["@x402/core", "@x402/evm", "@x402/express", "@x402/extensions", "@x402/fetch"].map(n => [n, versionOf(n)]),
    ),
    sellerBase: base,
  };
  result.unpaidGet = await describe(await fetch(`${base}/weather/paris?units=metric`));
  result.paidGet = await describe(await payingFetch(`${base}/weather/paris?units=metric`));
  result.paidPost = await describe(
    await payingFetch(`${base}/search`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "margherita", limit: 5 }),
    }),
  );

  // ---- MCP tool, through the resource server as @x402/mcp's payment wrapper drives it ----
  const toolName = "get_forecast";
  const toolExtensions = declareDiscoveryExtension({
    toolName,
    description: "Five-day forecast for a city",
    transport: "streamable-http",
    inputSchema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    example: { city: "Paris" },
    output: { example: { days: [] } },
  });
  result.mcp = await attempt(async () => {
    const requirements = await resourceServer.buildPaymentRequirements(accept);
    const paymentRequired = await resourceServer.createPaymentRequiredResponse(
      requirements,
      {
        url: `mcp://tool/${toolName}`,
        description: "Five-day forecast tool for agents",
        mimeType: "application/json",
        serviceName: "Acme Forecast MCP",
        tags: ["forecast", "mcp"],
      },
      "Payment required",
      toolExtensions,
      { toolName, arguments: { city: "Paris" } },
    );
    const payload = await buyer().createPaymentPayload(paymentRequired);
    const matched = resourceServer.findMatchingRequirements(requirements, payload);
    const verified = await resourceServer.verifyPayment(payload, matched, toolExtensions);
    const settled = await resourceServer.settlePayment(payload, matched, toolExtensions);
    return { declared: paymentRequired.extensions, verified, settled };
  });

  // ---- the official discovery client ----
  const discovery = withBazaar(new HTTPFacilitatorClient({ url: job.facilitatorUrl })).extensions.bazaar;
  const waitStarted = Date.now();
  let listed = null;
  while (Date.now() - waitStarted < CATALOGUE_WAIT_MS) {
    listed = await attempt(() => discovery.listResources());
    if ((listed.ok?.items?.length ?? 0) >= 3) break;
    await new Promise(r => setTimeout(r, 100));
  }
  result.catalogueWaitMs = Date.now() - waitStarted;
  result.listAll = listed;
  result.listHttp = await attempt(() => discovery.listResources({ type: "http", limit: 10 }));
  result.listMcp = await attempt(() => discovery.listResources({ type: "mcp" }));
  result.listPage2 = await attempt(() => discovery.listResources({ limit: 1, offset: 1 }));
  result.listByFilters = await attempt(() =>
    discovery.listResources({ payTo: job.payTo.toLowerCase(), scheme: "exact", network, extensions: "bazaar" }),
  );
  result.listOtherPayTo = await attempt(() =>
    discovery.listResources({ payTo: "0x000000000000000000000000000000000000dead" }),
  );
  result.searchWeather = await attempt(() => discovery.search({ query: "weather" }));
  result.searchPizza = await attempt(() => discovery.search({ query: "pizza restaurants" }));
  result.searchMcp = await attempt(() => discovery.search({ query: "forecast", type: "mcp" }));
  result.searchPage1 = await attempt(() => discovery.search({ query: "forecast", limit: 1 }));
  const cursor = result.searchPage1.ok?.pagination?.cursor;
  result.searchPage2 = cursor
    ? await attempt(() => discovery.search({ query: "forecast", limit: 1, cursor }))
    : null;
  // Our additions, which the official client has no parameters for: raw requests.
  const raw = async path => {
    const response = await fetch(`${job.facilitatorUrl}${path}`);
    return { status: response.status, body: await response.json().catch(() => null) };
  };
  const asset = encodeURIComponent(job.token);
  result.cheapEnough = await raw(`/discovery/resources?asset=${asset}&maxPrice=${job.amount}&sort=popularity`);
  result.tooExpensive = await raw(`/discovery/resources?asset=${asset}&maxPrice=${BigInt(job.amount) - 1n}`);
  result.badLimit = await raw(`/discovery/resources?limit=abc`);
  result.badSearch = await raw(`/discovery/search`);
  result.errorFromClient = await attempt(() => discovery.listResources({ limit: 0 }));

  listener.closeAllConnections?.();
  listener.close();
  process.stdout.write(JSON.stringify(jsonSafe(result)) + "\n");
  process.exit(0);
}

main().catch(e => fail(e instanceof Error ? e.stack ?? e.message : String(e)));
