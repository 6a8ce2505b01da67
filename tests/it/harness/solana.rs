//! A real local Solana chain: LiteSVM behind ordinary JSON-RPC (tests/solana-chain/server.mjs),
//! with the real SPL Token, Token-2022 and ATA programs; plus a transaction builder for payments
//! shaped exactly as the tests need, adversarial ones included. Messages are built with the
//! official `solana-message` types (not with the facilitator's own decoder), keys and signatures
//! with `solana-keypair`, Token-2022 extension mints with `spl-token-2022-interface`'s
//! instruction builders, executed by the chain's real Token-2022 program.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_message::compiled_instruction::CompiledInstruction;
use solana_message::v0::MessageAddressTableLookup;
use solana_message::{MessageHeader, VersionedMessage, v0};
pub use solana_pubkey::Pubkey;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use x402_facilitator::schemes::svm::keys::{
    COMPUTE_BUDGET_PROGRAM, MEMO_PROGRAM, SYSTEM_PROGRAM, TOKEN_2022_PROGRAM, TOKEN_PROGRAM,
    associated_token_address,
};
use x402_facilitator::schemes::svm::wire;

/// The local chain serves devnet's genesis hash, so it is this CAIP-2 network.
pub const DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";

pub struct SolanaChain {
    _node: Child,
    pub url: String,
    http: reqwest::Client,
}

/// A keypair the tests can also hand to the official client (as its 32-byte seed).
pub struct TestKey {
    pub seed: [u8; 32],
    pub keypair: Keypair,
}

impl TestKey {
    pub fn random() -> Self {
        let seed: [u8; 32] = super::payment::random_b256().0;
        TestKey {
            seed,
            keypair: Keypair::new_from_array(seed),
        }
    }
    pub fn pubkey(&self) -> Pubkey {
        self.keypair.pubkey()
    }
    /// The usual base58 secret||public form operators configure.
    pub fn secret_base58(&self) -> String {
        let mut bytes = self.seed.to_vec();
        bytes.extend_from_slice(self.pubkey().as_ref());
        bs58::encode(bytes).into_string()
    }
}

/// The settings an operator gives to serve the local chain (through `rpc_urls`, comma-separated)
/// with `fee_payer`, under the slug `sol` (to add to `harness::app::base_env`).
pub fn network_env(rpc_urls: &str, fee_payer: &TestKey) -> Vec<(String, String)> {
    [
        ("X402__NETWORKS__SOL__NETWORK", DEVNET.to_string()),
        ("X402__NETWORKS__SOL__RPC_URLS", rpc_urls.to_string()),
        (
            "X402__NETWORKS__SOL__SIGNER_KEYS",
            fee_payer.secret_base58(),
        ),
        ("X402__NETWORKS__SOL__CONFIRM_POLL_MS", "50".to_string()),
        // The local chain runs as devnet, whose preset knows only devnet USDC: the test mints
        // need the asset list open.
        ("X402__NETWORKS__SOL__POLICY__ASSETS", "any".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec()
}

impl SolanaChain {
    pub async fn start() -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/solana-chain/server.mjs");
        let mut child = Command::new("node")
            .args([script, "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the local Solana chain (scripts/test installs it)");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
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
        .expect("the Solana chain reported its port");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        SolanaChain {
            _node: child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let answer: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .expect("RPC reachable")
            .json()
            .await
            .expect("RPC JSON");
        assert!(answer.get("error").is_none(), "{method} failed: {answer}");
        answer["result"].clone()
    }

    pub async fn airdrop(&self, who: &Pubkey, lamports: u64) {
        self.rpc("requestAirdrop", json!([who.to_string(), lamports]))
            .await;
    }

    pub async fn lamports(&self, who: &Pubkey) -> u64 {
        self.rpc("getBalance", json!([who.to_string()])).await["value"]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn create_mint(&self, token2022: bool) -> Pubkey {
        let program = if token2022 { "token2022" } else { "token" };
        let mint = self
            .rpc(
                "litesvm_createMint",
                json!({ "decimals": 6, "tokenProgram": program }),
            )
            .await;
        mint.as_str().expect("mint").parse().expect("pubkey")
    }

    pub async fn mint_to(&self, mint: &Pubkey, owner: &Pubkey, amount: u64) {
        self.rpc(
            "litesvm_mintTo",
            json!({ "mint": mint.to_string(), "owner": owner.to_string(), "amount": amount }),
        )
        .await;
    }

    pub async fn create_ata(&self, mint: &Pubkey, owner: &Pubkey) {
        self.rpc(
            "litesvm_createAta",
            json!({ "mint": mint.to_string(), "owner": owner.to_string() }),
        )
        .await;
    }

    /// Token balance of `owner`'s ATA for `mint` (0 when it has none).
    pub async fn token_balance(&self, mint: &Pubkey, owner: &Pubkey, token2022: bool) -> u64 {
        let program = if token2022 {
            TOKEN_2022_PROGRAM
        } else {
            TOKEN_PROGRAM
        };
        let ata = associated_token_address(owner, mint, &program);
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "getTokenAccountBalance", "params": [ata.to_string()] });
        let answer: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .expect("rpc")
            .json()
            .await
            .expect("json");
        answer["result"]["value"]["amount"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or(0)
    }

    pub async fn blockhash(&self) -> [u8; 32] {
        let v = self.rpc("getLatestBlockhash", json!([])).await;
        let text = v["value"]["blockhash"].as_str().expect("blockhash");
        let bytes = bs58::decode(text).into_vec().expect("base58");
        bytes.try_into().expect("32 bytes")
    }

    pub async fn control(&self, method: &str) -> Value {
        self.rpc(method, json!({})).await
    }

    /// Sends a transaction (fee paid by its first signer) and fails the test unless it lands.
    pub async fn execute(&self, ixs: &[Ix], signers: &[&Keypair]) {
        let fee_payer = signers[0].pubkey();
        let msg = message(fee_payer, self.blockhash().await, ixs, None);
        let tx = signed_base64(msg, signers);
        let sig = self
            .rpc("sendTransaction", json!([tx, { "encoding": "base64" }]))
            .await;
        let status = self.rpc("getSignatureStatuses", json!([[sig]])).await;
        assert!(status["value"][0]["err"].is_null(), "{status}");
    }

    /// A Token-2022 mint initialised by the real Token-2022 program with `extensions`: each is
    /// `(extension type, its initialising instruction)`, run before `InitializeMint2`.
    pub async fn create_token_2022_mint(&self, extensions: &[ExtensionInit]) -> Pubkey {
        self.create_token_2022_mint_at(&TestKey::random(), extensions)
            .await
    }

    /// [`Self::create_token_2022_mint`] at the address of `mint`.
    pub async fn create_token_2022_mint_at(
        &self,
        mint: &TestKey,
        extensions: &[ExtensionInit],
    ) -> Pubkey {
        use spl_token_2022_interface::extension::ExtensionType;
        use spl_token_2022_interface::state::Mint;
        let funder = TestKey::random();
        self.airdrop(&funder.pubkey(), 1_000_000_000).await;
        let types: Vec<ExtensionType> = extensions.iter().map(|e| e.kind()).collect();
        let space =
            ExtensionType::try_calculate_account_len::<Mint>(&types).expect("a mint length");
        let rent = self
            .rpc("getMinimumBalanceForRentExemption", json!([space]))
            .await
            .as_u64()
            .expect("lamports");
        let mut create = vec![0u8, 0, 0, 0];
        create.extend_from_slice(&rent.to_le_bytes());
        create.extend_from_slice(&(space as u64).to_le_bytes());
        create.extend_from_slice(TOKEN_2022_PROGRAM.as_ref());
        let mut ixs = vec![Ix {
            program: SYSTEM_PROGRAM,
            accounts: vec![
                meta(funder.pubkey(), true, true),
                meta(mint.pubkey(), true, true),
            ],
            data: create,
        }];
        for e in extensions {
            ixs.push(e.instruction(&mint.pubkey()));
        }
        ixs.push(from_official(
            spl_token_2022_interface::instruction::initialize_mint2(
                &TOKEN_2022_PROGRAM,
                &mint.pubkey(),
                &funder.pubkey(),
                None,
                6,
            )
            .expect("initialize_mint2"),
        ));
        self.execute(&ixs, &[&funder.keypair, &mint.keypair]).await;
        mint.pubkey()
    }
}

/// A Token-2022 mint extension as the tests create it.
pub enum ExtensionInit {
    /// A hook extension, naming a program or none, with an authority that may set one later
    /// (`updatable`) or none.
    TransferHook {
        program: Option<Pubkey>,
        updatable: bool,
    },
    TransferFee {
        basis_points: u16,
    },
    NonTransferable,
    Pausable,
}

impl ExtensionInit {
    fn kind(&self) -> spl_token_2022_interface::extension::ExtensionType {
        use spl_token_2022_interface::extension::ExtensionType;
        match self {
            ExtensionInit::TransferHook { .. } => ExtensionType::TransferHook,
            ExtensionInit::TransferFee { .. } => ExtensionType::TransferFeeConfig,
            ExtensionInit::NonTransferable => ExtensionType::NonTransferable,
            ExtensionInit::Pausable => ExtensionType::Pausable,
        }
    }

    fn instruction(&self, mint: &Pubkey) -> Ix {
        use spl_token_2022_interface::extension::{pausable, transfer_fee, transfer_hook};
        let p = &TOKEN_2022_PROGRAM;
        let authority = Some(TestKey::random().pubkey());
        from_official(
            match self {
                ExtensionInit::TransferHook { program, updatable } => {
                    let authority = authority.filter(|_| *updatable);
                    transfer_hook::instruction::initialize(p, mint, authority, *program)
                }
                ExtensionInit::TransferFee { basis_points } => {
                    transfer_fee::instruction::initialize_transfer_fee_config(
                        p,
                        mint,
                        authority.as_ref(),
                        authority.as_ref(),
                        *basis_points,
                        1_000_000,
                    )
                }
                ExtensionInit::NonTransferable => {
                    spl_token_2022_interface::instruction::initialize_non_transferable_mint(p, mint)
                }
                ExtensionInit::Pausable => {
                    pausable::instruction::initialize(p, mint, &TestKey::random().pubkey())
                }
            }
            .expect("an extension instruction"),
        )
    }
}

/// An official `Instruction` as the harness builder takes it.
fn from_official(ix: solana_instruction::Instruction) -> Ix {
    Ix {
        program: ix.program_id,
        accounts: ix
            .accounts
            .iter()
            .map(|a| meta(a.pubkey, a.is_signer, a.is_writable))
            .collect(),
        data: ix.data,
    }
}

/// One account of an instruction.
#[derive(Clone)]
pub struct Meta {
    pub key: Pubkey,
    pub signer: bool,
    pub writable: bool,
}

pub fn meta(key: Pubkey, signer: bool, writable: bool) -> Meta {
    Meta {
        key,
        signer,
        writable,
    }
}

#[derive(Clone)]
pub struct Ix {
    pub program: Pubkey,
    pub accounts: Vec<Meta>,
    pub data: Vec<u8>,
}

pub fn compute_limit(units: u32) -> Ix {
    let mut data = vec![2];
    data.extend_from_slice(&units.to_le_bytes());
    Ix {
        program: COMPUTE_BUDGET_PROGRAM,
        accounts: vec![],
        data,
    }
}

pub fn compute_price(micro_lamports: u64) -> Ix {
    let mut data = vec![3];
    data.extend_from_slice(&micro_lamports.to_le_bytes());
    Ix {
        program: COMPUTE_BUDGET_PROGRAM,
        accounts: vec![],
        data,
    }
}

pub fn memo(text: &str, signers: &[Pubkey]) -> Ix {
    Ix {
        program: MEMO_PROGRAM,
        accounts: signers.iter().map(|s| meta(*s, true, false)).collect(),
        data: text.as_bytes().to_vec(),
    }
}

/// A TransferChecked from `owner`'s ATA to `to_owner`'s ATA.
pub fn transfer(token2022: bool, mint: Pubkey, owner: Pubkey, to_owner: Pubkey, amount: u64) -> Ix {
    let program = if token2022 {
        TOKEN_2022_PROGRAM
    } else {
        TOKEN_PROGRAM
    };
    let source = associated_token_address(&owner, &mint, &program);
    let destination = associated_token_address(&to_owner, &mint, &program);
    let mut data = vec![12];
    data.extend_from_slice(&amount.to_le_bytes());
    data.push(6);
    Ix {
        program,
        accounts: vec![
            meta(source, false, true),
            meta(mint, false, false),
            meta(destination, false, true),
            meta(owner, true, false),
        ],
        data,
    }
}

/// Compiles a v0 message (fee payer first, then signers, writables, read-onlys, as Solana orders
/// them). With `lookup`, the last read-only non-signer is loaded from that (fake) table instead.
pub fn message(
    fee_payer: Pubkey,
    blockhash: [u8; 32],
    ixs: &[Ix],
    lookup: Option<Pubkey>,
) -> VersionedMessage {
    let mut metas: Vec<Meta> = vec![meta(fee_payer, true, true)];
    let mut add = |m: &Meta| match metas.iter_mut().find(|x| x.key == m.key) {
        Some(x) => {
            x.signer |= m.signer;
            x.writable |= m.writable;
        }
        None => metas.push(m.clone()),
    };
    for ix in ixs {
        for a in &ix.accounts {
            add(a);
        }
        add(&meta(ix.program, false, false));
    }
    let group = |s: bool, w: bool| {
        metas
            .iter()
            .filter(|m| m.signer == s && m.writable == w)
            .map(|m| m.key)
            .collect::<Vec<_>>()
    };
    let mut keys = group(true, true);
    keys.extend(group(true, false));
    keys.extend(group(false, true));
    let mut readonly = group(false, false);
    let loaded = match lookup {
        // Move one read-only account that is no program into the table.
        Some(_) => {
            let programs: Vec<Pubkey> = ixs.iter().map(|i| i.program).collect();
            readonly
                .iter()
                .position(|k| !programs.contains(k))
                .map(|p| readonly.remove(p))
        }
        None => None,
    };
    let header = MessageHeader {
        num_required_signatures: (group(true, true).len() + group(true, false).len()) as u8,
        num_readonly_signed_accounts: group(true, false).len() as u8,
        num_readonly_unsigned_accounts: readonly.len() as u8,
    };
    keys.extend(readonly);
    let index = |k: &Pubkey| {
        keys.iter()
            .position(|x| x == k)
            .map(|p| p as u8)
            .unwrap_or(keys.len() as u8) // the loaded account follows the static keys
    };
    let instructions = ixs
        .iter()
        .map(|ix| CompiledInstruction {
            program_id_index: index(&ix.program),
            accounts: ix.accounts.iter().map(|a| index(&a.key)).collect(),
            data: ix.data.clone(),
        })
        .collect();
    let address_table_lookups = match (lookup, loaded) {
        (Some(table), Some(_)) => vec![MessageAddressTableLookup {
            account_key: table,
            writable_indexes: vec![],
            readonly_indexes: vec![0],
        }],
        _ => vec![],
    };
    VersionedMessage::V0(v0::Message {
        header,
        account_keys: keys.clone(),
        recent_blockhash: Hash::new_from_array(blockhash),
        instructions,
        address_table_lookups,
    })
}

/// `message` with each of `signers` signing its own slot (the fee payer's stays empty).
pub fn signed(message: VersionedMessage, signers: &[&Keypair]) -> VersionedTransaction {
    let required = usize::from(message.header().num_required_signatures);
    let bytes = message.serialize();
    let mut signatures = vec![Signature::default(); required];
    for k in signers {
        let slot = message.static_account_keys()[..required]
            .iter()
            .position(|key| *key == k.pubkey())
            .expect("a signer of the message");
        signatures[slot] = k.sign_message(&bytes);
    }
    VersionedTransaction {
        signatures,
        message,
    }
}

pub fn to_base64(tx: &VersionedTransaction) -> String {
    wire::to_base64(&wire::encode(tx).expect("a transaction that encodes"))
}

/// Signs `message` with each of `signers` (the fee payer slot stays empty) and encodes it.
pub fn signed_base64(message: VersionedMessage, signers: &[&Keypair]) -> String {
    to_base64(&signed(message, signers))
}

/// The x402 request body for a Solana payment `transaction` against `requirements`.
pub fn body(x402_version: u8, transaction: &str, requirements: Value) -> Value {
    let payload = json!({ "transaction": transaction });
    if x402_version == 1 {
        json!({
            "x402Version": 1,
            "paymentPayload": { "x402Version": 1, "scheme": "exact", "network": requirements["network"], "payload": payload },
            "paymentRequirements": requirements,
        })
    } else {
        json!({
            "x402Version": 2,
            "paymentPayload": {
                "x402Version": 2,
                "resource": { "url": "http://127.0.0.1/weather" },
                "accepted": requirements,
                "payload": payload,
            },
            "paymentRequirements": requirements,
        })
    }
}

/// v2 requirements for `amount` of `mint` to `pay_to`, fee paid by `fee_payer`.
pub fn requirements(mint: &Pubkey, pay_to: &Pubkey, amount: u64, fee_payer: &Pubkey) -> Value {
    json!({
        "scheme": "exact",
        "network": DEVNET,
        "amount": amount.to_string(),
        "asset": mint.to_string(),
        "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": { "feePayer": fee_payer.to_string() },
    })
}

/// Asks the official `@x402/svm` client to pay `requirements` from `payer`.
pub async fn sdk_sign(
    chain: &SolanaChain,
    payer: &TestKey,
    x402_version: u8,
    requirements: Value,
) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/solana-chain/sign-svm.mjs"
    );
    let job = json!({
        "secretKey": payer.seed.to_vec(),
        "rpcUrl": chain.url,
        "x402Version": x402_version,
        "requirements": requirements,
        "resource": { "url": "http://127.0.0.1/weather" },
    });
    super::script::run_json("node", &[script.to_string()], Some(&job)).await
}

/// The transaction of a request body, decoded.
pub fn transaction_of(body: &Value) -> VersionedTransaction {
    let text = body["paymentPayload"]["payload"]["transaction"]
        .as_str()
        .expect("a transaction");
    wire::from_base64(text).expect("decodes")
}

/// Signature slot `index` of a body's transaction, in base58.
pub fn wire_signature(body: &Value, index: usize) -> String {
    transaction_of(body).signatures[index].to_string()
}

/// What `fee_payer`'s co-signature of a body's transaction is (Ed25519 is deterministic): the
/// id the transaction would have on chain.
pub fn cosignature(body: &Value, fee_payer: &TestKey) -> String {
    let tx = transaction_of(body);
    fee_payer
        .keypair
        .sign_message(&tx.message.serialize())
        .to_string()
}

/// The associated token account of `owner` for `mint` under `program`.
pub fn ata(owner: &Pubkey, mint: &Pubkey, program: &Pubkey) -> Pubkey {
    associated_token_address(owner, mint, program)
}
