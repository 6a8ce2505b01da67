//! The catalog's ledger contract, run against real SQLite and real Postgres: both must merge,
//! rank, filter, count, age out and bound the same way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x402_facilitator::discovery::query::search_terms;
use x402_facilitator::ledger::catalog::amount_key;
use x402_facilitator::ledger::{
    self, ListingAccept, ListingFilter, ListingOrder, ListingPayment, ListingQuery, ListingRow,
    NewListing, SharedLedger, UpsertOutcome,
};

use crate::harness::db::both;

const DAY: i64 = 24 * 3600 * 1000;
const BOUND: i64 = 1000;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

async fn open(db: &crate::harness::Db) -> SharedLedger {
    ledger::connect(&db.url(), 4, Duration::from_secs(5))
        .await
        .expect("ledger opens and migrates")
}

fn accept(network: &str, pay_to: &str, asset: &str, amount: &str) -> ListingAccept {
    ListingAccept {
        scheme: "exact".into(),
        network: network.into(),
        pay_to: pay_to.into(),
        asset: asset.into(),
        amount_key: amount_key(amount).expect("amount"),
        requirement: format!(
            r#"{{"scheme":"exact","network":"{network}","amount":"{amount}","asset":"{asset}","payTo":"{pay_to}","maxTimeoutSeconds":60}}"#
        ),
    }
}

/// A verify-only sighting of `resource` (GET), priced 1000 in 0xasset on eip155:1.
fn seen(resource: &str) -> NewListing {
    NewListing {
        resource: resource.into(),
        kind: "http".into(),
        method: "GET".into(),
        tool_name: String::new(),
        x402_version: 2,
        description: None,
        mime_type: None,
        service_name: None,
        tags: Vec::new(),
        icon_url: None,
        bazaar: r#"{"info":{"input":{"type":"http","method":"GET"}},"schema":{}}"#.into(),
        accept: accept("eip155:1", "0xpay", "0xasset", "1000"),
        payment: None,
        seen_at: now(),
    }
}

/// The same sighting from a successful settle in transaction `tx` by `payer`.
fn paid(mut l: NewListing, tx: &str, payer: &str) -> NewListing {
    l.payment = Some(ListingPayment {
        network: l.accept.network.clone(),
        tx_id: tx.into(),
        payer: payer.into(),
    });
    l
}

fn query() -> ListingQuery {
    let now = now();
    ListingQuery {
        filter: ListingFilter {
            paid_since: now - 30 * DAY,
            usage_since: now - 30 * DAY,
            ..ListingFilter::default()
        },
        terms: None,
        order: ListingOrder::Relevance,
        limit: 20,
        offset: 0,
    }
}

fn search(text: &str) -> ListingQuery {
    ListingQuery {
        terms: Some(search_terms(text)),
        ..query()
    }
}

async fn upsert(l: &SharedLedger, listing: &NewListing) -> UpsertOutcome {
    l.upsert_listing(listing, BOUND).await.expect("upsert")
}

async fn resources(l: &SharedLedger, q: &ListingQuery) -> Vec<String> {
    rows(l, q).await.into_iter().map(|r| r.resource).collect()
}

async fn rows(l: &SharedLedger, q: &ListingQuery) -> Vec<ListingRow> {
    l.list_listings(q).await.expect("list")
}

#[tokio::test]
async fn search_ranks_a_service_name_match_above_a_description_and_a_tags_match() {
    for db in both().await {
        let l = open(&db).await;
        let mut by_tag = paid(seen("https://tags.example/a"), "0x01", "0xp");
        by_tag.tags = vec!["weather".into(), "maps".into()];
        by_tag.service_name = Some("Geo Tiles".into());
        let mut by_description = paid(seen("https://desc.example/a"), "0x02", "0xp");
        by_description.description = Some("Hourly weather for any city".into());
        let mut by_name = paid(seen("https://name.example/a"), "0x03", "0xp");
        by_name.service_name = Some("Acme Weather".into());
        let mut unrelated = paid(seen("https://other.example/a"), "0x04", "0xp");
        unrelated.description = Some("Pizza search".into());
        // Inserted worst first, so that insertion order cannot explain the result.
        for listing in [&by_tag, &unrelated, &by_description, &by_name] {
            assert_eq!(upsert(&l, listing).await, UpsertOutcome::Inserted);
        }
        let found = rows(&l, &search("weather")).await;
        let order: Vec<&str> = found.iter().map(|r| r.resource.as_str()).collect();
        assert_eq!(
            order,
            [
                "https://name.example/a",
                "https://desc.example/a",
                "https://tags.example/a"
            ],
            "{:?}",
            db.url()
        );
        assert!(found[0].score > found[1].score && found[1].score > found[2].score);
        // Stemming on both backends: "weathers" finds "weather".
        assert_eq!(resources(&l, &search("Weathers")).await.len(), 3);
        // All words are required.
        assert_eq!(
            resources(&l, &search("weather pizza")).await,
            Vec::<String>::new()
        );
        assert_eq!(
            resources(&l, &search("pizza")).await,
            ["https://other.example/a"]
        );
    }
}

#[tokio::test]
async fn search_text_carries_no_query_syntax_on_either_backend() {
    for db in both().await {
        let l = open(&db).await;
        let mut a = paid(seen("https://a.example/x"), "0x01", "0xp");
        a.service_name = Some("Acme".into());
        upsert(&l, &a).await;
        for hostile in [
            "\"",
            "acme\"",
            "*",
            "acme*",
            "NEAR(acme weather)",
            "service_name:acme",
            "description : acme",
            "acme OR 1=1",
            "acme' OR '1'='1",
            "'); DROP TABLE catalog_resources; --",
            "-acme",
            "^acme",
            "acme AND NOT x",
            "{service_name description}: acme",
            "\u{0}acme",
            "((((acme",
            "!acme & | <->",
        ] {
            let found = l.list_listings(&search(hostile)).await;
            assert!(found.is_ok(), "{hostile:?} on {}: {found:?}", db.url());
        }
        // Terms that reach the ledger unfiltered are still quoted, never operators.
        let raw = ListingQuery {
            terms: Some(vec!["\"".into(), "*".into(), "NEAR".into(), "acme:".into()]),
            ..query()
        };
        assert!(l.list_listings(&raw).await.is_ok());
        assert_eq!(resources(&l, &search("acme")).await.len(), 1);
        assert_eq!(l.count_listings(&query()).await.expect("count"), 1);
    }
}

#[tokio::test]
async fn accepts_merge_by_scheme_and_network_and_the_price_range_widens() {
    for db in both().await {
        let l = open(&db).await;
        let r = "https://api.example/w";
        upsert(&l, &paid(seen(r), "0x01", "0xp")).await;
        let mut dearer = paid(seen(r), "0x02", "0xp");
        dearer.accept = accept("eip155:1", "0xpay", "0xasset", "2500");
        dearer.description = Some("now with a description".into());
        assert_eq!(upsert(&l, &dearer).await, UpsertOutcome::Updated);
        let mut other_chain = paid(seen(r), "0x03", "0xp");
        other_chain.accept = accept("eip155:8453", "0xpay", "0xbase", "900");
        upsert(&l, &other_chain).await;
        let mut cheaper = seen(r);
        cheaper.accept = accept("eip155:1", "0xpay", "0xasset", "700");
        // A verify-only sighting of a paid resource changes nothing...
        assert_eq!(upsert(&l, &cheaper).await, UpsertOutcome::KeptSettled);
        // ...a paid one does.
        upsert(&l, &paid(cheaper, "0x04", "0xq")).await;
        let row = rows(&l, &query()).await.remove(0);
        assert_eq!(row.accepts.len(), 2, "one accept per (scheme, network)");
        assert!(
            row.accepts[0].contains(r#""amount":"700""#),
            "{:?}",
            row.accepts
        );
        assert!(row.accepts[1].contains("eip155:8453"), "{:?}", row.accepts);
        let ranges: Vec<(&str, &str, &str)> = row
            .prices
            .iter()
            .map(|p| (p.asset.as_str(), p.min.as_str(), p.max.as_str()))
            .collect();
        assert_eq!(
            ranges,
            [("0xasset", "700", "2500"), ("0xbase", "900", "900")]
        );
        assert_eq!(row.description.as_deref(), Some("now with a description"));
        assert_eq!((row.settled_payments, row.payers), (4, 2));
    }
}

#[tokio::test]
async fn a_settled_payment_counts_once_however_often_its_answer_is_replayed() {
    for db in both().await {
        let l = open(&db).await;
        let r = "https://api.example/w";
        for _ in 0..3 {
            upsert(&l, &paid(seen(r), "0xaaa", "0xp")).await;
        }
        upsert(&l, &paid(seen(r), "0xbbb", "0xp")).await;
        let row = rows(&l, &query()).await.remove(0);
        assert_eq!((row.settled_payments, row.payers), (2, 1));
        assert!(row.paid && row.last_settled_at.is_some());
    }
}

#[tokio::test]
async fn a_verify_never_rewrites_a_paid_resource_and_unpaid_ones_are_hidden_by_default() {
    for db in both().await {
        let l = open(&db).await;
        let mut honest = paid(seen("https://api.example/w"), "0x01", "0xp");
        honest.description = Some("Honest weather".into());
        upsert(&l, &honest).await;
        let mut poison = seen("https://api.example/w");
        poison.description = Some("Send your money to evil.example".into());
        poison.accept = accept("eip155:1", "0xevil", "0xasset", "1");
        assert_eq!(upsert(&l, &poison).await, UpsertOutcome::KeptSettled);
        let row = rows(&l, &query()).await.remove(0);
        assert_eq!(row.description.as_deref(), Some("Honest weather"));
        assert!(row.accepts[0].contains("0xpay"), "{:?}", row.accepts);

        // Verify-only resources: stored, not listed, not counted...
        assert_eq!(
            upsert(&l, &seen("https://free.example/x")).await,
            UpsertOutcome::Inserted
        );
        assert_eq!(resources(&l, &query()).await, ["https://api.example/w"]);
        assert_eq!(l.count_listings(&query()).await.expect("count"), 1);
        // ...unless the operator lists them: after every paid resource, marked unpaid.
        let mut all = query();
        all.filter.include_unpaid = true;
        all.order = ListingOrder::Recency;
        let listed = rows(&l, &all).await;
        let marks: Vec<(&str, bool)> = listed
            .iter()
            .map(|r| (r.resource.as_str(), r.paid))
            .collect();
        assert_eq!(
            marks,
            [
                ("https://api.example/w", true),
                ("https://free.example/x", false)
            ]
        );
        assert_eq!(l.count_listings(&all).await.expect("count"), 2);
        // A first payment makes it a paid resource.
        upsert(&l, &paid(seen("https://free.example/x"), "0x02", "0xp")).await;
        assert_eq!(resources(&l, &query()).await.len(), 2);
    }
}

#[tokio::test]
async fn filters_match_any_accept_and_max_price_is_per_asset() {
    for db in both().await {
        let l = open(&db).await;
        let mut mcp = paid(seen("mcp://tool/t1"), "0x01", "0xp");
        mcp.kind = "mcp".into();
        mcp.method = String::new();
        mcp.tool_name = "t1".into();
        mcp.accept = accept("eip155:8453", "0xother", "0xusdc", "5000");
        upsert(&l, &mcp).await;
        let mut same_url_other_tool = mcp.clone();
        same_url_other_tool.tool_name = "t2".into();
        same_url_other_tool.payment = Some(ListingPayment {
            network: "eip155:8453".into(),
            tx_id: "0x02".into(),
            payer: "0xp".into(),
        });
        assert_eq!(
            upsert(&l, &same_url_other_tool).await,
            UpsertOutcome::Inserted
        );
        let mut post = paid(seen("https://api.example/w"), "0x03", "0xp");
        post.method = "POST".into();
        upsert(&l, &post).await;
        let mut get = paid(seen("https://api.example/w"), "0x04", "0xp");
        get.accept = accept("eip155:1", "0xpay", "0xusdc", "20000");
        upsert(&l, &get).await;

        let with = |f: &dyn Fn(&mut ListingFilter)| {
            let mut q = query();
            f(&mut q.filter);
            q
        };
        let count = |q: ListingQuery| {
            let l = l.clone();
            async move { l.count_listings(&q).await.expect("count") }
        };
        assert_eq!(count(query()).await, 4);
        assert_eq!(count(with(&|f| f.kind = Some("mcp".into()))).await, 2);
        assert_eq!(count(with(&|f| f.kind = Some("a2a".into()))).await, 0);
        assert_eq!(count(with(&|f| f.pay_to = Some("0xother".into()))).await, 2);
        assert_eq!(
            count(with(&|f| f.network = Some("eip155:1".into()))).await,
            2
        );
        assert_eq!(count(with(&|f| f.scheme = Some("upto".into()))).await, 0);
        let max = |asset: &str, amount: &str| {
            let (asset, amount) = (asset.to_string(), amount.to_string());
            with(&move |f: &mut ListingFilter| {
                f.asset = Some(asset.clone());
                f.max_amount_key = amount_key(&amount);
            })
        };
        // 5000 and 20000 in 0xusdc; 1000 in 0xasset. Atomic units never compare across assets.
        assert_eq!(count(max("0xusdc", "4999")).await, 0);
        assert_eq!(count(max("0xusdc", "5000")).await, 2);
        assert_eq!(count(max("0xusdc", "99999999999999999999")).await, 3);
        assert_eq!(count(max("0xasset", "1000")).await, 1);
        // The page and the count agree, and offsets page through.
        let mut page = query();
        page.limit = 3;
        page.offset = 2;
        assert_eq!(rows(&l, &page).await.len(), 2);
        page.offset = 1_000_000;
        assert!(rows(&l, &page).await.is_empty());
    }
}

#[tokio::test]
async fn sorts_by_popularity_and_recency() {
    for db in both().await {
        let l = open(&db).await;
        let t = now();
        let at = |r: &str, tx: &str, ms: i64| {
            let mut s = paid(seen(r), tx, tx);
            s.seen_at = ms;
            s
        };
        upsert(&l, &at("https://a.example/", "0x1", t - 5000)).await;
        upsert(&l, &at("https://b.example/", "0x2", t - 4000)).await;
        upsert(&l, &at("https://b.example/", "0x3", t - 3000)).await;
        upsert(&l, &at("https://c.example/", "0x4", t - 2000)).await;
        upsert(&l, &at("https://a.example/", "0x5", t - 1000)).await;
        upsert(&l, &at("https://a.example/", "0x6", t - 500)).await;
        let order = |o: ListingOrder| {
            let mut q = query();
            q.order = o;
            q
        };
        assert_eq!(
            resources(&l, &order(ListingOrder::Relevance)).await,
            [
                "https://a.example/",
                "https://b.example/",
                "https://c.example/"
            ],
            "first seen first"
        );
        assert_eq!(
            resources(&l, &order(ListingOrder::Popularity)).await,
            [
                "https://a.example/",
                "https://b.example/",
                "https://c.example/"
            ]
        );
        assert_eq!(
            resources(&l, &order(ListingOrder::Recency)).await,
            [
                "https://a.example/",
                "https://c.example/",
                "https://b.example/"
            ]
        );
        let popular = rows(&l, &order(ListingOrder::Popularity)).await;
        assert_eq!(
            popular
                .iter()
                .map(|r| r.settled_payments)
                .collect::<Vec<_>>(),
            [3, 2, 1]
        );
    }
}

#[tokio::test]
async fn resources_not_paid_for_in_time_leave_the_listing_and_the_database() {
    for db in both().await {
        let l = open(&db).await;
        let t = now();
        let mut old = paid(seen("https://old.example/"), "0x01", "0xp");
        old.seen_at = t - 40 * DAY;
        upsert(&l, &old).await;
        let mut stale_unpaid = seen("https://stale.example/");
        stale_unpaid.seen_at = t - 40 * DAY;
        upsert(&l, &stale_unpaid).await;
        upsert(&l, &paid(seen("https://fresh.example/"), "0x02", "0xp")).await;
        upsert(&l, &seen("https://recent.example/")).await;
        // A free verify does not keep a resource nobody pays for listed.
        assert_eq!(
            upsert(&l, &seen("https://old.example/")).await,
            UpsertOutcome::KeptSettled
        );
        assert_eq!(resources(&l, &query()).await, ["https://fresh.example/"]);
        let mut all = query();
        all.filter.include_unpaid = true;
        assert_eq!(
            resources(&l, &all).await,
            ["https://fresh.example/", "https://recent.example/"]
        );

        let report = l
            .prune_catalog(t - 30 * DAY, t - 30 * DAY, BOUND)
            .await
            .expect("prune");
        assert_eq!(report.aged_out, 2, "old and stale");
        let mut everything = all.clone();
        everything.filter.paid_since = t - 50 * DAY;
        assert_eq!(
            resources(&l, &everything).await,
            ["https://fresh.example/", "https://recent.example/"]
        );
        for table in ["catalog_accepts", "catalog_prices"] {
            assert_eq!(
                db.count(&format!("SELECT count(*) FROM {table}")).await,
                2,
                "{table}: the children of deleted resources go with them"
            );
        }
        assert_eq!(db.count("SELECT count(*) FROM catalog_payments").await, 1);

        let report = l
            .prune_catalog(t + DAY, t - 30 * DAY, BOUND)
            .await
            .expect("prune");
        assert_eq!(report.aged_out, 2);
        for table in [
            "catalog_resources",
            "catalog_accepts",
            "catalog_prices",
            "catalog_payments",
        ] {
            assert_eq!(
                db.count(&format!("SELECT count(*) FROM {table}")).await,
                0,
                "{table}"
            );
        }
    }
}

#[tokio::test]
async fn the_catalog_is_bounded_and_paid_resources_push_unpaid_ones_out() {
    for db in both().await {
        let l = open(&db).await;
        let t = now();
        let bound = 3;
        for (i, r) in [
            "https://u1.example/",
            "https://u2.example/",
            "https://u3.example/",
        ]
        .iter()
        .enumerate()
        {
            let mut s = seen(r);
            s.seen_at = t - 1000 + i as i64;
            assert_eq!(
                l.upsert_listing(&s, bound).await.expect("upsert"),
                UpsertOutcome::Inserted
            );
        }
        // Full: another free sighting is refused, an existing one still refreshes.
        let refused = l.upsert_listing(&seen("https://u4.example/"), bound).await;
        assert_eq!(refused.expect("upsert"), UpsertOutcome::Full);
        let again = l.upsert_listing(&seen("https://u2.example/"), bound).await;
        assert_eq!(again.expect("upsert"), UpsertOutcome::Updated);
        // A paid newcomer evicts the least recently seen unpaid resource (u1).
        for (i, r) in [
            "https://p1.example/",
            "https://p2.example/",
            "https://p3.example/",
        ]
        .iter()
        .enumerate()
        {
            let s = paid(seen(r), &format!("0x{i}"), "0xp");
            assert_eq!(
                l.upsert_listing(&s, bound).await.expect("upsert"),
                UpsertOutcome::Inserted
            );
        }
        assert_eq!(db.count("SELECT count(*) FROM catalog_resources").await, 3);
        assert_eq!(
            db.count("SELECT count(*) FROM catalog_resources WHERE last_settled_at IS NULL")
                .await,
            0
        );
        // Only paid resources left: nothing more gets in until one ages out.
        let s = paid(seen("https://p4.example/"), "0x9", "0xp");
        assert_eq!(
            l.upsert_listing(&s, bound).await.expect("upsert"),
            UpsertOutcome::Full
        );
        assert_eq!(db.count("SELECT count(*) FROM catalog_accepts").await, 3);
        // The bound can shrink; pruning brings the catalog down to it (unpaid first).
        let report = l.prune_catalog(t - DAY, t - DAY, 1).await.expect("prune");
        assert_eq!(report.over_bound, 0, "no unpaid resource left to evict");
    }
}

#[tokio::test]
async fn a_resource_keeps_a_bounded_number_of_accepts_and_price_ranges() {
    for db in both().await {
        let l = open(&db).await;
        let r = "https://api.example/w";
        for i in 0..30 {
            let mut s = paid(seen(r), &format!("0x{i:02}"), "0xp");
            s.accept = accept(
                &format!("eip155:{i}"),
                "0xpay",
                &format!("0xasset{i}"),
                "10",
            );
            upsert(&l, &s).await;
        }
        let row = rows(&l, &query()).await.remove(0);
        assert_eq!(row.accepts.len(), 8);
        assert_eq!(row.prices.len(), 16);
        assert_eq!(row.settled_payments, 30);
    }
}

#[tokio::test]
async fn popularity_is_recounted_as_payments_leave_the_usage_window() {
    for db in both().await {
        let l = open(&db).await;
        let t = now();
        let r = "https://api.example/w";
        for (tx, age) in [("0x01", 35 * DAY), ("0x02", 31 * DAY), ("0x03", DAY)] {
            let mut s = paid(seen(r), tx, "0xp");
            s.seen_at = t - age;
            upsert(&l, &s).await;
        }
        assert_eq!(rows(&l, &query()).await[0].settled_payments, 3);
        l.prune_catalog(t - 30 * DAY, t - 30 * DAY, BOUND)
            .await
            .expect("prune");
        let row = rows(&l, &query()).await.remove(0);
        assert_eq!((row.settled_payments, row.payers), (1, 1));
        assert_eq!(db.count("SELECT count(*) FROM catalog_payments").await, 1);
    }
}

/// A page is read in several statements (its ids, then its rows, then their accepts); a settle
/// committing between them must not produce a page whose order contradicts its own rows (a paid
/// resource shown after an unpaid one, or one popularity count sorted as another). Races a
/// settle against listings of the same two resources many times over.
#[tokio::test]
async fn a_page_read_while_a_payment_lands_agrees_with_itself() {
    for db in both().await {
        let l = open(&db).await;
        for round in 0..60 {
            let pay_to = format!("0xpay{round}");
            let priced = |r: &str| {
                let mut s = seen(r);
                s.accept = accept("eip155:1", &pay_to, "0xasset", "1000");
                s
            };
            let free = priced(&format!("https://free{round}.example/"));
            let later = priced(&format!("https://paid{round}.example/"));
            upsert(&l, &free).await;
            upsert(&l, &later).await;
            let mut q = query();
            q.filter.include_unpaid = true;
            q.filter.pay_to = Some(pay_to.clone());
            let mut by_popularity = q.clone();
            by_popularity.order = ListingOrder::Popularity;
            let settle = {
                let l = l.clone();
                let paid = paid(later.clone(), &format!("0xt{round}"), "0xbuyer");
                tokio::spawn(async move { l.upsert_listing(&paid, BOUND).await })
            };
            // Without unpaid resources, the page and its total change together (0 → 1).
            let mut paid_only = q.clone();
            paid_only.filter.include_unpaid = false;
            let mut seen_paid = false;
            loop {
                // Once the payment has landed, the very next page must show it: no endless wait
                // if the settle failed or never became visible.
                let landed = settle.is_finished();
                for q in [&q, &by_popularity] {
                    let page = rows(&l, q).await;
                    assert_eq!(page.len(), 2, "round {round}: {page:?}");
                    let paid: Vec<bool> = page.iter().map(|r| r.paid).collect();
                    assert!(
                        paid == [false, false] || paid == [true, false],
                        "round {round}: a paid resource listed after an unpaid one: {page:?}"
                    );
                    let counts: Vec<i64> = page.iter().map(|r| r.settled_payments).collect();
                    assert!(
                        counts.windows(2).all(|w| w[0] >= w[1]),
                        "round {round}: popularity out of order: {page:?}"
                    );
                    seen_paid |= paid[0];
                }
                let (page, total) = l
                    .list_listings_with_total(&paid_only)
                    .await
                    .expect("list with total");
                assert_eq!(
                    i64::try_from(page.len()).expect("small"),
                    total,
                    "round {round}: a page and its total read different moments: {page:?}"
                );
                if seen_paid || landed {
                    break;
                }
            }
            // A failed settle says so here, before the assertion about what pages showed.
            settle.await.expect("task").expect("settle upsert");
            assert!(
                seen_paid,
                "round {round}: the payment landed but no page shows it"
            );
        }
    }
}

/// On Postgres a page's snapshot is bounded (`read_snapshot` in src/ledger/catalog.rs): a page
/// held up behind a lock (an ACCESS EXCLUSIVE lock on the catalog taken by another session, for
/// real) is cancelled by its statement timeout and comes back as an error, instead of waiting
/// with its snapshot open; once the lock is gone the next page reads normally from the same pool.
#[tokio::test]
async fn a_page_held_up_on_postgres_is_cut_off_not_left_waiting() {
    let db = crate::harness::Db::postgres().await;
    let l = open(&db).await;
    upsert(&l, &paid(seen("https://held.example/"), "0x01", "0xp")).await;
    let lock = db
        .hold_lock("LOCK TABLE catalog_resources IN ACCESS EXCLUSIVE MODE")
        .await;
    let page = tokio::time::timeout(
        Duration::from_secs(30),
        l.list_listings_with_total(&query()),
    )
    .await
    .expect("the page gave up by itself, long before 30 s");
    let err = page.expect_err("a page behind the lock is cut off");
    assert!(err.to_string().contains("statement timeout"), "{err}");
    drop(lock);
    let (rows, total) = l
        .list_listings_with_total(&query())
        .await
        .expect("the next page");
    assert_eq!((rows.len(), total), (1, 1));
}
