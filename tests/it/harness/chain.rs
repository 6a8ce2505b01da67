//! A real local EVM chain: an anvil process on a loopback port, with our test contracts
//! (contracts/artifacts, built by contracts/build.sh) deployed on it: an EIP-3009 token, an
//! 18-decimals EIP-2612 token without EIP-3009, the ERC-6492 wallet factory, and Multicall3,
//! Permit2 and the two x402 Permit2 proxies at the addresses the official SDK hard-codes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, U256, address};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{SolCall, SolValue};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const MULTICALL3: Address = address!("cA11bde05977b3631167028862bE2a173976CA11");
pub const TOKEN_NAME: &str = "USD Coin";
pub const TOKEN_VERSION: &str = "2";
/// Where the SDK expects Permit2 and the x402 proxies (`@x402/evm` 2.27 constants).
pub const PERMIT2: Address = address!("000000000022D473030F116dDEE9F6B43aC78BA3");
pub const EXACT_PROXY: Address = address!("402085c248EeA27D92E8b30b2C58ed07f9E20001");
pub const UPTO_PROXY: Address = address!("4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");
/// The EIP-712 domain of the Permit2-only token (like Mezo USD).
pub const PERMIT_TOKEN_NAME: &str = "Mezo USD";
pub const PERMIT_TOKEN_VERSION: &str = "1";

sol! {
    interface ITestToken {
        function mint(address to, uint256 amount) external returns (bool);
        function balanceOf(address account) external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function approve(address spender, uint256 value) external returns (bool);
        function nonces(address owner) external view returns (uint256);
    }
    interface IPermit2Bitmap {
        function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
        function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external;
    }
    interface IWalletFactory {
        function deploy(address owner, bytes32 salt) external returns (address);
        function predict(address owner, bytes32 salt) external view returns (address);
    }
}

pub struct Chain {
    _anvil: Child,
    pub url: String,
    pub chain_id: u64,
    pub provider: DynProvider,
    pub token: Address,
    /// An 18-decimals ERC-20 with EIP-2612 and no EIP-3009: payable only through Permit2.
    pub permit_token: Address,
    pub factory: Address,
}

fn anvil_bin() -> PathBuf {
    std::env::var_os("ANVIL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("anvil"))
}

pub fn artifact(name: &str) -> (Bytes, Bytes) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("contracts/artifacts/{name}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).expect("artifact JSON");
    let hex = |k: &str| json[k].as_str().expect(k).parse::<Bytes>().expect("hex");
    (hex("bytecode"), hex("deployedBytecode"))
}

impl Chain {
    pub async fn start() -> Self {
        Self::start_with(31337, &[]).await
    }

    /// Starts anvil with `--port 0` and reads the port it reports.
    pub async fn start_with(chain_id: u64, extra_args: &[&str]) -> Self {
        let mut child = Command::new(anvil_bin())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--chain-id",
                &chain_id.to_string(),
            ])
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start anvil ({}): {e}; run scripts/test",
                    anvil_bin().display()
                )
            });
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("Listening on ") {
                    return addr
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.trim().parse::<u16>().ok());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("anvil reported no port");
        // Keep draining stdout so anvil never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let url = format!("http://127.0.0.1:{port}");
        let deployer = PrivateKeySigner::random();
        let bare = ProviderBuilder::new().connect_http(url.parse().expect("url"));
        set_balance(&bare, deployer.address(), U256::from(10u128.pow(21))).await;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(deployer))
            .connect_http(url.parse().expect("url"))
            .erased();
        // No constructor runs for code placed this way: these contracts have no immutables.
        for (name, at) in [
            ("Multicall3", MULTICALL3),
            ("Permit2", PERMIT2),
            ("X402ExactPermit2Proxy", EXACT_PROXY),
            ("X402UptoPermit2Proxy", UPTO_PROXY),
        ] {
            let (_, code) = artifact(name);
            let _: Value = provider
                .raw_request("anvil_setCode".into(), (at, code))
                .await
                .expect("anvil_setCode");
        }
        let mut chain = Chain {
            _anvil: child,
            url,
            chain_id,
            provider,
            token: Address::ZERO,
            permit_token: Address::ZERO,
            factory: Address::ZERO,
        };
        chain.token = chain.deploy_token(TOKEN_NAME, TOKEN_VERSION).await;
        chain.permit_token = chain
            .deploy(
                "PermitToken",
                (
                    PERMIT_TOKEN_NAME.to_string(),
                    PERMIT_TOKEN_VERSION.to_string(),
                )
                    .abi_encode_params()
                    .into(),
            )
            .await;
        chain.factory = chain.deploy("WalletFactory", Bytes::new()).await;
        chain
    }

    pub async fn deploy(&self, name: &str, ctor_args: Bytes) -> Address {
        let (code, _) = artifact(name);
        let mut input = code.to_vec();
        input.extend_from_slice(&ctor_args);
        let tx = TransactionRequest::default().with_deploy_code(Bytes::from(input));
        let receipt = self
            .provider
            .send_transaction(tx)
            .await
            .expect("deploy sent")
            .get_receipt()
            .await
            .expect("deploy mined");
        receipt.contract_address.expect("contract address")
    }

    pub async fn deploy_token(&self, name: &str, version: &str) -> Address {
        self.deploy(
            "TestToken",
            (name.to_string(), version.to_string())
                .abi_encode_params()
                .into(),
        )
        .await
    }

    pub async fn send(&self, to: Address, data: Vec<u8>) {
        let tx = TransactionRequest::default().with_to(to).with_input(data);
        let receipt = self
            .provider
            .send_transaction(tx)
            .await
            .expect("tx sent")
            .get_receipt()
            .await
            .expect("tx mined");
        assert!(receipt.status(), "harness transaction reverted");
    }

    /// Sends a call from the harness account with a priority fee of `tip` wei, without waiting
    /// for it to be mined (to race a transaction already in the mempool); returns its hash.
    pub async fn send_with_tip(&self, to: Address, data: Vec<u8>, tip: u128) -> String {
        let tx = TransactionRequest::default()
            .with_to(to)
            .with_input(data)
            .with_gas_limit(300_000)
            .with_max_priority_fee_per_gas(tip)
            .with_max_fee_per_gas(tip * 4);
        let pending = self.provider.send_transaction(tx).await.expect("tx sent");
        format!("{:#x}", pending.tx_hash())
    }

    pub async fn mint(&self, token: Address, to: Address, amount: U256) {
        self.send(token, ITestToken::mintCall { to, amount }.abi_encode())
            .await;
    }

    pub async fn balance(&self, token: Address, who: Address) -> U256 {
        let tx = TransactionRequest::default()
            .with_to(token)
            .with_input(ITestToken::balanceOfCall { account: who }.abi_encode());
        let out = self.provider.call(tx).await.expect("balanceOf");
        U256::abi_decode(&out).expect("uint256")
    }

    /// A transaction sent by `key` itself (funded with gas money first).
    pub async fn send_as(&self, key: &PrivateKeySigner, to: Address, data: Vec<u8>) {
        self.fund(key.address(), U256::from(10u128.pow(19))).await;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(key.clone()))
            .connect_http(self.url.parse().expect("url"));
        let tx = TransactionRequest::default().with_to(to).with_input(data);
        let receipt = provider
            .send_transaction(tx)
            .await
            .expect("tx sent")
            .get_receipt()
            .await
            .expect("tx mined");
        assert!(
            receipt.status(),
            "transaction of {} reverted",
            key.address()
        );
    }

    /// A transaction sent by `key` itself with a priority fee of `tip` wei, without waiting for
    /// it to be mined (to race a transaction already in the mempool); returns its hash.
    pub async fn send_as_with_tip(
        &self,
        key: &PrivateKeySigner,
        to: Address,
        data: Vec<u8>,
        tip: u128,
    ) -> String {
        self.fund(key.address(), U256::from(10u128.pow(19))).await;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(key.clone()))
            .connect_http(self.url.parse().expect("url"));
        let tx = TransactionRequest::default()
            .with_to(to)
            .with_input(data)
            .with_gas_limit(300_000)
            .with_max_priority_fee_per_gas(tip)
            .with_max_fee_per_gas(tip * 4);
        let pending = provider.send_transaction(tx).await.expect("tx sent");
        format!("{:#x}", pending.tx_hash())
    }

    /// The calldata of a transaction (mined or in the mempool).
    pub async fn input_of(&self, tx: &str) -> Vec<u8> {
        let t = self
            .rpc("eth_getTransactionByHash", (tx.to_string(),))
            .await;
        let hex = t["input"].as_str().expect("a known transaction");
        alloy::hex::decode(hex).expect("hex calldata")
    }

    /// `owner` approves Permit2 for `token` without limit (what `createPermit2ApprovalTx` does).
    pub async fn approve_permit2(&self, owner: &PrivateKeySigner, token: Address) {
        let data = ITestToken::approveCall {
            spender: PERMIT2,
            value: U256::MAX,
        }
        .abi_encode();
        self.send_as(owner, token, data).await;
    }

    /// Whether Permit2 has `owner`'s unordered `nonce` marked as used.
    pub async fn permit2_nonce_used(&self, owner: Address, nonce: U256) -> bool {
        let call = IPermit2Bitmap::nonceBitmapCall {
            owner,
            wordPos: nonce >> 8,
        };
        let tx = TransactionRequest::default()
            .with_to(PERMIT2)
            .with_input(call.abi_encode());
        let word =
            U256::abi_decode(&self.provider.call(tx).await.expect("nonceBitmap")).expect("uint256");
        let bit = U256::from(1u8) << (nonce & U256::from(0xffu8)).to::<usize>();
        word & bit != U256::ZERO
    }

    /// `owner` spends its own Permit2 nonce (`invalidateUnorderedNonces`), as a payer may.
    pub async fn invalidate_permit2_nonce(&self, owner: &PrivateKeySigner, nonce: U256) {
        let bit = U256::from(1u8) << (nonce & U256::from(0xffu8)).to::<usize>();
        let data = IPermit2Bitmap::invalidateUnorderedNoncesCall {
            wordPos: nonce >> 8,
            mask: bit,
        }
        .abi_encode();
        self.send_as(owner, PERMIT2, data).await;
    }

    /// The EIP-2612 nonce of `owner` on `token`.
    pub async fn permit_nonce(&self, token: Address, owner: Address) -> U256 {
        let tx = TransactionRequest::default()
            .with_to(token)
            .with_input(ITestToken::noncesCall { owner }.abi_encode());
        U256::abi_decode(&self.provider.call(tx).await.expect("nonces")).expect("uint256")
    }

    /// `who`'s native balance in wei.
    pub async fn provider_balance(&self, who: Address) -> U256 {
        self.provider
            .get_balance(who)
            .await
            .expect("eth_getBalance")
    }

    pub async fn fund(&self, who: Address, wei: U256) {
        set_balance(&self.provider, who, wei).await;
    }

    pub async fn predict_wallet(&self, owner: Address, salt: alloy::primitives::B256) -> Address {
        let tx = TransactionRequest::default()
            .with_to(self.factory)
            .with_input(IWalletFactory::predictCall { owner, salt }.abi_encode());
        let out = self.provider.call(tx).await.expect("predict");
        Address::abi_decode(&out).expect("address")
    }

    /// `Transfer` logs emitted by `token` with `from` as sender, across the whole chain.
    pub async fn transfers_from(&self, token: Address, from: Address) -> usize {
        let filter = alloy::rpc::types::Filter::new()
            .address(token)
            .event("Transfer(address,address,uint256)")
            .topic1(from.into_word())
            .from_block(0);
        self.provider
            .get_logs(&filter)
            .await
            .expect("get_logs")
            .len()
    }

    pub async fn code_at(&self, who: Address) -> Bytes {
        self.provider.get_code_at(who).await.expect("getCode")
    }

    /// Turns automatic mining on or off (to hold transactions in the mempool).
    pub async fn set_automine(&self, on: bool) {
        let _: Value = self
            .provider
            .raw_request("evm_setAutomine".into(), (on,))
            .await
            .expect("evm_setAutomine");
    }

    /// Any parameterless JSON-RPC method (e.g. `txpool_status`).
    pub async fn raw(&self, method: &'static str) -> Value {
        self.provider
            .raw_request(method.into(), ())
            .await
            .expect(method)
    }

    /// Any JSON-RPC method with parameters (e.g. `anvil_setNextBlockBaseFeePerGas`).
    pub async fn rpc<P>(&self, method: &'static str, params: P) -> Value
    where
        P: serde::Serialize + Clone + Send + Sync + std::fmt::Debug + Unpin + 'static,
    {
        self.provider
            .raw_request(method.into(), params)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Whether the chain has a receipt for `tx` (`0x…` hash).
    pub async fn has_receipt(&self, tx: &str) -> bool {
        let receipt: Value = self
            .provider
            .raw_request("eth_getTransactionReceipt".into(), (tx,))
            .await
            .expect("eth_getTransactionReceipt");
        !receipt.is_null()
    }

    /// Who sent transaction `tx` (`0x…` hash).
    pub async fn sender_of(&self, tx: &str) -> Address {
        let found: Value = self
            .provider
            .raw_request("eth_getTransactionByHash".into(), (tx,))
            .await
            .expect("eth_getTransactionByHash");
        found["from"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no transaction {tx}: {found}"))
    }

    pub async fn mine(&self) {
        let _: Value = self
            .provider
            .raw_request("evm_mine".into(), ())
            .await
            .expect("evm_mine");
    }
}

async fn set_balance<P: Provider>(provider: &P, who: Address, wei: U256) {
    let _: Value = provider
        .raw_request("anvil_setBalance".into(), (who, wei))
        .await
        .expect("anvil_setBalance");
}
