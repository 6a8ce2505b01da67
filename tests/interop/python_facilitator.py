#!/usr/bin/env python3
"""Our facilitator through the OFFICIAL Python SDK (PyPI `x402`, pinned in
tests/interop/python-requirements.txt; scripts/provision.sh installs it into a venv and exports
X402_PYTHON).

What a Python resource server does with a facilitator, unchanged:
  1. HTTPFacilitatorClientSync.get_supported() -> our GET /supported, parsed by the SDK's models;
     the kind for this job (v2 `eip155:<chainId>`, or the v1 EVM `exact` kind, e.g.
     `base-sepolia`) must be listed;
  2. the SDK's own EVM client signer (EthAccountSigner over an eth_account LocalAccount, registered
     with register_exact_evm_client on an x402ClientSync) signs a payment for requirements priced
     in the local test token;
  3. verify() and settle() through the SDK's facilitator client;
  4. the same payload again: verify() and settle() must both be refused (replay);
  5. a payment the SDK signed for half the price, verified against the full-price requirements
     (underpaid) must be refused.

stdin (or the file named by argv[1]): one JSON job
  { "facilitatorUrl": "http://127.0.0.1:8402", "chainId": 31337, "x402Version": 2,
    "token": "0x…", "tokenName": "USD Coin", "tokenVersion": "2",
    "privateKey": "0x…", "payTo": "0x…", "amount": "2500" }
stdout: one JSON object (every SDK model dumped by alias). Harness errors: {"error": …} on
stderr, exit code 2.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from typing import Any

from eth_account import Account
from x402 import x402ClientSync
from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo
from x402.schemas.v1 import PaymentRequiredV1, PaymentRequirementsV1

RESOURCE = "http://127.0.0.1:4021/weather"


def fail(message: str) -> None:
    sys.stderr.write(json.dumps({"error": message}) + "\n")
    sys.exit(2)


def dump(model: Any) -> Any:
    return json.loads(model.model_dump_json(by_alias=True, exclude_none=True))


def outcome(call) -> dict[str, Any]:
    """The SDK's parsed answer, or what it raised (it raises on any non-200)."""
    try:
        return {"answer": dump(call())}
    except Exception as e:  # noqa: BLE001 - report whatever the SDK raised
        return {"raised": f"{type(e).__name__}: {e}"}


def requirements_for(job: dict[str, Any], x402_version: int, network: str, amount: str):
    extra = {"name": job["tokenName"], "version": job["tokenVersion"]}
    if x402_version == 2:
        return PaymentRequirements(
            scheme="exact",
            network=network,
            asset=job["token"],
            amount=amount,
            pay_to=job["payTo"],
            max_timeout_seconds=60,
            extra=extra,
        )
    return PaymentRequirementsV1(
        scheme="exact",
        network=network,
        max_amount_required=amount,
        resource=RESOURCE,
        description="weather",
        mime_type="application/json",
        pay_to=job["payTo"],
        max_timeout_seconds=60,
        asset=job["token"],
        extra=extra,
    )


def sign(client: x402ClientSync, x402_version: int, requirements):
    if x402_version == 2:
        required = PaymentRequired(
            x402_version=2,
            resource=ResourceInfo(url=RESOURCE, description="weather", mime_type="application/json"),
            accepts=[requirements],
        )
    else:
        required = PaymentRequiredV1(x402_version=1, accepts=[requirements])
    return client.create_payment_payload(required)


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else None
    job = json.load(open(path) if path else sys.stdin)
    for key in ("facilitatorUrl", "token", "tokenName", "tokenVersion", "privateKey", "payTo", "amount"):
        if key not in job:
            fail(f"job.{key} is required")
    x402_version = int(job.get("x402Version", 2))
    chain_id = int(job.get("chainId", 31337))

    facilitator = HTTPFacilitatorClientSync(FacilitatorConfig(url=job["facilitatorUrl"], timeout=30.0))
    result: dict[str, Any] = {"versions": {p: version(p) for p in ("x402", "eth-account", "httpx", "pydantic")}}

    supported = facilitator.get_supported()
    result["supported"] = dump(supported)
    if x402_version == 2:
        kind = next(
            (k for k in supported.kinds
             if k.x402_version == 2 and k.scheme == "exact" and k.network == f"eip155:{chain_id}"),
            None,
        )
    else:
        kind = next(
            (k for k in supported.kinds
             if k.x402_version == 1 and k.scheme == "exact" and not str(k.network).startswith("solana")),
            None,
        )
    if kind is None:
        fail(f"our /supported has no v{x402_version} exact kind for chain {chain_id}: {result['supported']}")
    network = str(kind.network)
    result["kind"] = dump(kind)

    client = x402ClientSync()
    # The local test token is not in the SDK's default-asset table; default spend controls would
    # refuse it before signing.
    client.set_spend_controls(False)
    signer = EthAccountSigner(Account.from_key(job["privateKey"]))
    register_exact_evm_client(client, signer, networks=[network] if x402_version == 2 else None)
    result["payer"] = signer.address

    requirements = requirements_for(job, x402_version, network, str(job["amount"]))
    payload = sign(client, x402_version, requirements)
    result["paymentPayload"] = dump(payload)

    result["verify"] = outcome(lambda: facilitator.verify(payload, requirements))
    result["settle"] = outcome(lambda: facilitator.settle(payload, requirements))
    result["replayVerify"] = outcome(lambda: facilitator.verify(payload, requirements))
    result["replaySettle"] = outcome(lambda: facilitator.settle(payload, requirements))

    # Signed by the SDK for half the price; presented against the full-price requirements.
    half = str(int(job["amount"]) // 2)
    underpaid = sign(client, x402_version, requirements_for(job, x402_version, network, half))
    if x402_version == 2:
        underpaid = underpaid.model_copy(update={"accepted": requirements})
    result["underpaidVerify"] = outcome(lambda: facilitator.verify(underpaid, requirements))
    result["underpaidSettle"] = outcome(lambda: facilitator.settle(underpaid, requirements))

    facilitator.close()
    print(json.dumps(result))


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        import traceback

        fail(traceback.format_exc())
