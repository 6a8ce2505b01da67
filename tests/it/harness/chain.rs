//! A real local EVM chain: an anvil process on a loopback port, with our test contracts
//! (contracts/artifacts, built by contracts/build.sh) deployed on it.

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

sol! {
    interface ITestToken {
        function mint(address to, uint256 amount) external returns (bool);
        function balanceOf(address account) external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
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
        let (_, multicall_code) = artifact("Multicall3");
        let _: Value = provider
            .raw_request("anvil_setCode".into(), (MULTICALL3, multicall_code))
            .await
            .expect("anvil_setCode");
        let mut chain = Chain {
            _anvil: child,
            url,
            chain_id,
            provider,
            token: Address::ZERO,
            factory: Address::ZERO,
        };
        chain.token = chain.deploy_token(TOKEN_NAME, TOKEN_VERSION).await;
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
