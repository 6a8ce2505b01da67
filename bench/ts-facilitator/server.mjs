// The official TypeScript facilitator, wired the way the upstream example wires it
// (x402Facilitator + ExactEvmScheme + a viem wallet client with public actions), served over
// express with /verify, /settle and /supported. Used only as the benchmark's reference point.
//
// env: RPC_URL, CHAIN_ID, PRIVATE_KEY (its own gas account), PORT (0 = random).
// Prints "Listening on 127.0.0.1:<port>" when ready.
import express from "express";
import { x402Facilitator } from "@x402/core/facilitator";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { createWalletClient, defineChain, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const rpc = process.env.RPC_URL;
const chainId = Number(process.env.CHAIN_ID ?? 31337);
const account = privateKeyToAccount(process.env.PRIVATE_KEY);
const chain = defineChain({
  id: chainId,
  name: "local",
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpc] } },
});
const client = createWalletClient({ account, chain, transport: http(rpc) }).extend(publicActions);
const signer = toFacilitatorEvmSigner(Object.assign(client, { address: account.address }), {
  confirmationTimeoutMs: 15_000,
});
const facilitator = new x402Facilitator().register(`eip155:${chainId}`, new ExactEvmScheme(signer));

const app = express();
app.use(express.json({ limit: "64kb" }));
const handle = method => async (req, res) => {
  const { paymentPayload, paymentRequirements } = req.body ?? {};
  if (!paymentPayload || !paymentRequirements) {
    return res.status(400).json({ error: "Missing paymentPayload or paymentRequirements" });
  }
  try {
    res.json(await facilitator[method](paymentPayload, paymentRequirements));
  } catch (e) {
    res.status(500).json({ error: String(e?.message ?? e) });
  }
};
app.post("/verify", handle("verify"));
app.post("/settle", handle("settle"));
app.get("/supported", (_req, res) => res.json(facilitator.getSupported()));
const server = app.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`Listening on 127.0.0.1:${server.address().port}`);
});
