//! The console's pages: each handler admits the request, reads the ledger (and, for networks, a
//! live probe of every served network), shapes what it read into a view and renders it.

use std::collections::BTreeMap;
use std::time::Duration;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::chart::{self, Series};
use super::{admit, render};
use crate::access::Caller;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::Query;
use crate::http::receipts::rfc3339;
use crate::ledger::{ReceiptQuery, SettlementRecord, SettlementState, now_ms};
use crate::scheme::{Deadline, NetworkProbe};

const DAY_MS: i64 = 86_400_000;
const PAGE_ROWS: i64 = 50;
/// A probe answers within this or reports the URL as failing: the page must not hang on an RPC.
const PROBE_DEADLINE: Duration = Duration::from_secs(3);
const STATES: [&str; 4] = ["claimed", "submitted", "settled", "failed"];

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::Unreadable(StatusCode::BAD_REQUEST, message.into())
}

/// `YYYY-MM-DD` of a day number (days since the unix epoch, UTC).
pub(super) fn date_of_day(day: i64) -> String {
    rfc3339(day.saturating_mul(DAY_MS))[..10].to_string()
}

/// The day number of `YYYY-MM-DD`, or `None` if it is no date (a day past its month's end
/// fails the round trip).
fn day_of_date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    if text.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = crate::sessions::time::days_from_civil(y, m, d);
    (date_of_day(day) == text).then_some(day)
}

/// A block explorer's page for a transaction on the networks that have a well-known one.
fn explorer(network: &str, tx: &str) -> Option<String> {
    let base = match network {
        "eip155:8453" => "https://basescan.org/tx/",
        "eip155:84532" => "https://sepolia.basescan.org/tx/",
        "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp" => "https://explorer.solana.com/tx/",
        "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1" => {
            return Some(format!(
                "https://explorer.solana.com/tx/{tx}?cluster=devnet"
            ));
        }
        _ => return None,
    };
    Some(format!("{base}{tx}"))
}

// ---- settlements ----

/// The filter form. Every value is text because an empty form field arrives as `""`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SettlementFilter {
    #[serde(default)]
    network: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    payer: String,
    #[serde(default)]
    pay_to: String,
    /// `YYYY-MM-DD`, UTC, inclusive.
    #[serde(default)]
    from: String,
    /// `YYYY-MM-DD`, UTC, inclusive.
    #[serde(default)]
    to: String,
    /// `createdAt.replayKey` of the last row of the previous page.
    #[serde(default)]
    before: String,
}

fn some(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

impl SettlementFilter {
    fn query(&self) -> Result<ReceiptQuery, ApiError> {
        let date = |text: &str, name: &str| -> Result<Option<i64>, ApiError> {
            some(text)
                .map(|t| day_of_date(&t).ok_or_else(|| bad(format!("{name} must be YYYY-MM-DD"))))
                .transpose()
        };
        let state = some(&self.state)
            .map(|s| SettlementState::parse(&s).map_err(|_| bad(format!("unknown state `{s}`"))))
            .transpose()?;
        let before = some(&self.before)
            .map(|c| {
                let (at, key) = c.split_once('.').ok_or_else(|| bad("malformed cursor"))?;
                let at = at.parse::<i64>().map_err(|_| bad("malformed cursor"))?;
                Ok::<_, ApiError>((at, key.to_string()))
            })
            .transpose()?;
        Ok(ReceiptQuery {
            payer: some(&self.payer),
            pay_to: some(&self.pay_to),
            network: some(&self.network),
            from_ms: date(&self.from, "from")?.map(|d| d * DAY_MS),
            // Inclusive day: everything before the next midnight.
            to_ms: date(&self.to, "to")?.map(|d| (d + 1) * DAY_MS),
            state,
            before,
            limit: PAGE_ROWS,
        })
    }

    /// The query string of the next page: these filters, then the cursor.
    fn next_page(&self, cursor: &str) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("network", &self.network),
            ("state", &self.state),
            ("payer", &self.payer),
            ("payTo", &self.pay_to),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("before", cursor);
        q.finish()
    }
}

struct SettlementRow {
    created: String,
    network: String,
    state: &'static str,
    payer: String,
    pay_to: String,
    asset: String,
    amount: String,
    tx: Option<String>,
    explorer: Option<String>,
    resource: String,
    /// For rows without a final answer: what they wait for. For failed rows: why.
    note: String,
}

/// What an unfinished row is waiting for, in the ledger's own terms (docs/ledger.md).
fn waiting_for(r: &SettlementRecord, now: i64) -> String {
    let tx = r.tx_id.as_deref().unwrap_or("");
    match r.state {
        SettlementState::Claimed if r.handoff_at.is_some() => format!(
            "handed to a replica holding a signer key for {}; it must answer by {}",
            r.network,
            r.handoff_deadline.map(rfc3339).unwrap_or_default()
        ),
        SettlementState::Claimed if r.lease_active(now) => {
            "being settled: claimed, nothing signed yet".into()
        }
        SettlementState::Claimed => {
            "left by an interrupted settle, nothing broadcast: the reconciler releases it".into()
        }
        SettlementState::Submitted if r.lease_active(now) => {
            format!("transaction {tx} recorded and sent; waiting for its receipt")
        }
        SettlementState::Submitted => format!(
            "transaction {tx} sent, no final answer yet: the reconciler checks it \
             ({} checks so far, attempt {})",
            r.reconciles, r.attempts
        ),
        SettlementState::Settled if r.finalized_at.is_none() => {
            "settled; watched for reorgs until its block is final".into()
        }
        SettlementState::Settled => String::new(),
        SettlementState::Failed => r.error_reason.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "console/settlements.html")]
struct SettlementsPage {
    nav: &'static str,
    networks: Vec<String>,
    states: [&'static str; 4],
    filter: SettlementFilter,
    rows: Vec<SettlementRow>,
    next: Option<String>,
}

pub(super) async fn settlements(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    Query(filter): Query<SettlementFilter>,
) -> Result<Response, ApiError> {
    admit(&state, &headers, caller.as_ref())?;
    let query = filter.query()?;
    let records = state
        .facilitator
        .ledger()
        .list(&query)
        .await
        .map_err(internal)?;
    let now = now_ms();
    let next = (records.len() as i64 == query.limit)
        .then(|| records.last())
        .flatten()
        .map(|r| filter.next_page(&format!("{}.{}", r.created_at, r.replay_key)));
    let rows = records
        .iter()
        .map(|r| SettlementRow {
            created: rfc3339(r.created_at),
            network: r.network.clone(),
            state: r.state.as_str(),
            payer: r.payer.clone(),
            pay_to: r.pay_to.clone(),
            asset: r.asset.clone(),
            amount: r.amount.clone(),
            explorer: r.tx_id.as_deref().and_then(|tx| explorer(&r.network, tx)),
            tx: r.tx_id.clone(),
            resource: r.resource_url.clone().unwrap_or_default(),
            note: waiting_for(r, now),
        })
        .collect();
    render(&SettlementsPage {
        nav: "settlements",
        networks: state.facilitator.served_networks(),
        states: STATES,
        filter,
        rows,
        next,
    })
}

// ---- networks ----

struct SignerView {
    address: String,
    balance: String,
    in_flight: String,
    lease: String,
    error: String,
}

struct NetworkView {
    network: String,
    reachable: bool,
    rpc: Vec<crate::scheme::RpcProbe>,
    signers: Vec<SignerView>,
    pending: i64,
    failed: i64,
    settled: i64,
}

#[derive(Template)]
#[template(path = "console/networks.html")]
struct NetworksPage {
    nav: &'static str,
    holder: String,
    replicas: i64,
    networks: Vec<NetworkView>,
}

/// `balance` (smallest units) as the native coin with `decimals`, e.g. `1.5 ETH`-style text.
fn coin(balance: &str, decimals: u8) -> String {
    let digits = balance.trim_start_matches('0');
    let d = usize::from(decimals);
    let padded = format!("{digits:0>width$}", width = d + 1);
    let (int, frac) = padded.split_at(padded.len() - d);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

fn signer_view(
    network: &str,
    s: &crate::scheme::SignerProbe,
    leases: &[crate::ledger::LeaseRow],
    holder: &str,
    now: i64,
) -> SignerView {
    let key = format!("{network}/{}", s.address).to_ascii_lowercase();
    let lease = match leases.iter().find(|l| l.signer.to_ascii_lowercase() == key) {
        Some(l) if l.expires_at > now => format!(
            "{}{} · fence {} · {} s left",
            l.holder,
            if l.holder == holder {
                " (this replica)"
            } else {
                ""
            },
            l.fence,
            (l.expires_at - now) / 1000
        ),
        Some(l) => format!("free (last fence {})", l.fence),
        // Fee payers (Solana) are not leased: every replica signs with them.
        None if s.in_flight.is_none() => "not leased (no nonce lane)".into(),
        None => "never leased".into(),
    };
    SignerView {
        address: s.address.clone(),
        balance: s
            .balance
            .as_deref()
            .map(|b| format!("{} ({b} {})", coin(b, s.decimals), s.unit))
            .unwrap_or_else(|| "unread".into()),
        in_flight: s
            .in_flight
            .map(|n| n.to_string())
            .unwrap_or_else(|| "—".into()),
        lease,
        error: s.error.clone().unwrap_or_default(),
    }
}

pub(super) async fn networks(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
) -> Result<Response, ApiError> {
    admit(&state, &headers, caller.as_ref())?;
    let ledger = state.facilitator.ledger();
    let (probes, counts, leases) = tokio::join!(
        state
            .facilitator
            .probe_networks(Deadline::after(PROBE_DEADLINE)),
        ledger.state_counts(),
        ledger.signer_leases(),
    );
    let (counts, leases) = (counts.map_err(internal)?, leases.map_err(internal)?);
    let holder = state.facilitator.leases().holder().to_string();
    let now = now_ms();
    let count = |network: &str, states: &[&str]| {
        counts
            .iter()
            .filter(|c| c.network == network && states.contains(&c.state.as_str()))
            .map(|c| c.count)
            .sum::<i64>()
    };
    let mut probes: BTreeMap<String, NetworkProbe> = probes;
    let networks = state
        .facilitator
        .served_networks()
        .into_iter()
        .map(|network| {
            let probe = probes.remove(&network).unwrap_or_default();
            NetworkView {
                reachable: probe.reachable(),
                signers: probe
                    .signers
                    .iter()
                    .map(|s| signer_view(&network, s, &leases, &holder, now))
                    .collect(),
                rpc: probe.rpc,
                pending: count(&network, &["claimed", "submitted"]),
                failed: count(&network, &["failed"]),
                settled: count(&network, &["settled"]),
                network,
            }
        })
        .collect();
    render(&NetworksPage {
        nav: "networks",
        holder,
        replicas: state.facilitator.leases().replicas(),
        networks,
    })
}

// ---- volume ----

#[derive(Template)]
#[template(path = "console/volume.html")]
struct VolumePage {
    nav: &'static str,
    first: String,
    last: String,
    width: i64,
    height: i64,
    series: Vec<Series>,
}

pub(super) async fn volume(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
) -> Result<Response, ApiError> {
    admit(&state, &headers, caller.as_ref())?;
    let today = now_ms().div_euclid(DAY_MS);
    let first_day = today - (chart::DAYS - 1);
    let groups = state
        .facilitator
        .ledger()
        .settled_volume(first_day * DAY_MS)
        .await
        .map_err(internal)?;
    let series = chart::series(&groups, first_day).map_err(ApiError::Internal)?;
    render(&VolumePage {
        nav: "volume",
        first: date_of_day(first_day),
        last: date_of_day(today),
        width: chart::WIDTH,
        height: chart::HEIGHT,
        series,
    })
}

// ---- discovery ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiscoveryForm {
    #[serde(default)]
    q: String,
}

struct ResourceView {
    resource: String,
    kind: String,
    method: String,
    service_name: String,
    description: String,
    payments: i64,
    payers: i64,
    prices: Vec<String>,
    last_settled: String,
}

#[derive(Template)]
#[template(path = "console/discovery.html")]
struct DiscoveryPage {
    nav: &'static str,
    enabled: bool,
    q: String,
    total: String,
    resources: Vec<ResourceView>,
}

pub(super) async fn discovery(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Option<Extension<Caller>>,
    Query(form): Query<DiscoveryForm>,
) -> Result<Response, ApiError> {
    admit(&state, &headers, caller.as_ref())?;
    let Some(catalog) = state.discovery.as_deref() else {
        return render(&DiscoveryPage {
            nav: "discovery",
            enabled: false,
            q: String::new(),
            total: String::new(),
            resources: Vec::new(),
        });
    };
    let params = crate::discovery::DiscoveryParams {
        query: some(&form.q),
        limit: Some("100".into()),
        ..Default::default()
    };
    let page = if params.query.is_some() {
        let q = catalog.check_search(&params).map_err(bad)?;
        catalog.search(&q).await
    } else {
        let q = catalog.check_list(&params).map_err(bad)?;
        catalog.list(&q).await
    }
    .map_err(crate::http::discovery::fault)?;
    let resources = page
        .rows
        .iter()
        .map(|r| ResourceView {
            resource: r.resource.clone(),
            kind: r.kind.clone(),
            method: if r.kind == "mcp" {
                r.tool_name.clone()
            } else {
                r.method.clone()
            },
            service_name: r.service_name.clone().unwrap_or_default(),
            description: r.description.clone().unwrap_or_default(),
            payments: r.settled_payments,
            payers: r.payers,
            prices: r
                .prices
                .iter()
                .map(|p| format!("{}–{} of {} on {}", p.min, p.max, p.asset, p.network))
                .collect(),
            last_settled: r.last_settled_at.map(rfc3339).unwrap_or_default(),
        })
        .collect();
    render(&DiscoveryPage {
        nav: "discovery",
        enabled: true,
        total: page
            .total
            .map(|t| t.to_string())
            .unwrap_or_else(|| page.rows.len().to_string()),
        q: form.q,
        resources,
    })
}

// ---- sign-in ----

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    nav: &'static str,
}

pub(super) async fn login_form() -> Result<Response, ApiError> {
    render(&LoginPage { nav: "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_days_round_trip() {
        assert_eq!(day_of_date("1970-01-01"), Some(0));
        assert_eq!(day_of_date("2000-03-01"), Some(11_017));
        assert_eq!(date_of_day(11_017), "2000-03-01");
        assert_eq!(day_of_date("2000-13-01"), None);
        assert_eq!(day_of_date("2026-02-31"), None);
        assert_eq!(day_of_date("20-01-01"), None);
        assert_eq!(day_of_date("x"), None);
    }

    #[test]
    fn balances_read_as_coins() {
        assert_eq!(coin("1500000000000000000", 18), "1.5");
        assert_eq!(coin("0", 18), "0");
        assert_eq!(coin("5", 9), "0.000000005");
        assert_eq!(coin("100000000000000000000", 18), "100");
    }
}
