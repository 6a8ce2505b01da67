//! Building and running the service: ledger, signer leases, plugins, registry, reconciler,
//! discovery's cataloguing worker, router, listener, and a graceful shutdown that lets in-flight
//! settles record what they sent.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::access::{Access, Guard};
use crate::config::Settings;
use crate::discovery;
use crate::facilitator::leases::SignerLeases;
use crate::facilitator::{Facilitator, SettleTiming, reconcile};
use crate::http::{AppState, router};
use crate::ledger::{self, LedgerError};
use crate::scheme::{Built, SchemeRegistry, SignerGate};
use crate::schemes;

/// The longest start-up waits for the reconcile pass before serving.
const STARTUP_RECONCILE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("network configuration: {0}")]
    Network(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    port: u16,
    settles: TaskTracker,
    grace: Duration,
    header_read_timeout: Duration,
    background: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    pub async fn build(settings: &Settings) -> Result<Self, AppError> {
        let ledger = ledger::connect(
            settings.database.url.expose(),
            settings.database.max_connections,
            Duration::from_millis(settings.database.acquire_timeout_ms),
        )
        .await?;
        // A drained key keeps its lease for the longest a settle that picked it can still take.
        let drain = Duration::from_millis(
            settings.settlement.confirm_timeout_ms + settings.settlement.lease_margin_ms,
        );
        let leases = SignerLeases::new(
            ledger.clone(),
            Duration::from_millis(settings.settlement.signer_lease_ttl_ms),
            drain,
        );
        let registry = build_registry(settings, leases.clone()).await?;
        if registry.is_empty() {
            warn!("no network is served: /supported is empty (see config/examples/)");
        }
        leases.renew().await;
        let timing = SettleTiming {
            deadline: Duration::from_millis(settings.settlement.confirm_timeout_ms),
            lease_margin: Duration::from_millis(settings.settlement.lease_margin_ms),
        };
        let background = CancellationToken::new();
        let discovery = settings.discovery.enabled.then(|| {
            discovery::start(
                ledger.clone(),
                &settings.discovery,
                settings.database.max_connections,
                background.clone(),
            )
        });
        // Operator policy and budgets on the money path; keys and rate limits on the surface.
        let guard = Guard::from_settings(settings, ledger.clone(), &known_assets(settings))
            .map_err(AppError::Network)?;
        let access =
            Arc::new(Access::from_settings(settings, ledger.clone()).map_err(AppError::Network)?);
        let mut facilitator =
            Facilitator::new(registry, ledger, leases.clone(), timing).with_guard(Arc::new(guard));
        if let Some(d) = &discovery {
            facilitator = facilitator.with_catalog(d.sink.clone());
        }
        if settings.sessions.enabled {
            facilitator = facilitator.with_extension(crate::sessions::EXTENSION);
        }
        let facilitator = Arc::new(facilitator);
        // Finish what an earlier run left unfinished before taking new work, but never let a
        // struggling RPC hold start-up: what this pass does not finish, the background one will.
        match tokio::time::timeout(STARTUP_RECONCILE, reconcile::pass(&facilitator)).await {
            Ok(0) => {}
            Ok(rows) => info!(
                rows,
                "start-up reconcile finished rows left by an earlier run"
            ),
            Err(_) => {
                warn!("start-up reconcile ran out of time; the background reconciler continues")
            }
        }
        let mut tasks = vec![
            leases.spawn_keeper(background.clone()),
            reconcile::spawn(
                facilitator.clone(),
                Duration::from_millis(settings.settlement.reconcile_interval_ms),
                background.clone(),
            ),
        ];
        tasks.extend(facilitator.spawn_handoffs(background.clone()));
        let catalog = discovery.map(|d| {
            tasks.push(d.worker);
            d.catalog
        });
        let sessions = settings.sessions.enabled.then(|| {
            let sessions = Arc::new(crate::sessions::Sessions::new(
                facilitator.clone(),
                settings.sessions.clone(),
            ));
            tasks.push(sessions.spawn_pruner(background.clone()));
            sessions
        });
        let supported_json = serde_json::to_vec(facilitator.supported())
            .map(Bytes::from)
            .map_err(|e| AppError::Network(format!("cannot serialise /supported: {e}")))?;
        let settles = TaskTracker::new();
        let request_timeout = Duration::from_millis(settings.server.request_timeout_ms);
        let state = AppState {
            facilitator,
            supported_json,
            settles: settles.clone(),
            receipts_token: settings.server.receipts_token.clone(),
            settle_slots: Arc::new(tokio::sync::Semaphore::new(
                settings.server.max_concurrent_settles,
            )),
            verify_slots: Arc::new(tokio::sync::Semaphore::new(
                settings.server.max_concurrent_verifies,
            )),
            request_timeout,
            discovery: catalog,
            console_enabled: settings.console.enabled,
            console_token: settings.console.token.clone(),
            sessions,
            access: access.clone(),
        };
        tasks.push(spawn_limit_shrinker(access, background.clone()));
        let mut min_balance = std::collections::BTreeMap::new();
        for (slug, n) in settings.enabled_networks() {
            if let Some(text) = &n.min_signer_balance {
                let decimals = if n.network.starts_with("solana:") {
                    9
                } else {
                    18
                };
                let units =
                    crate::access::settings::decimal_units(text, decimals).map_err(|e| {
                        AppError::Network(format!("networks.{slug}.min_signer_balance: {e}"))
                    })?;
                min_balance.insert(n.network.clone(), units);
            }
        }
        tasks.push(crate::facilitator::health::spawn(
            state.facilitator.clone(),
            crate::facilitator::health::HealthSettings {
                interval: Duration::from_millis(settings.health.interval_ms.max(200)),
                min_balance,
            },
            background.clone(),
        ));
        let router = router(state, settings.server.body_limit_bytes, request_timeout);
        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| AppError::Listen {
                addr: addr.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(settings.server.port);
        Ok(Application {
            listener,
            router,
            port,
            settles,
            grace: Duration::from_millis(settings.server.shutdown_grace_ms),
            header_read_timeout: Duration::from_millis(settings.server.header_read_timeout_ms),
            background,
            tasks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `stop` completes, waits (bounded) for in-flight settles, then stops the
    /// background tasks and gives up this process's signer leases.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        info!(port = self.port, "x402 facilitator listening");
        let served = serve(
            self.listener,
            self.router,
            self.header_read_timeout,
            self.grace,
            stop,
        )
        .await;
        self.settles.close();
        if tokio::time::timeout(self.grace, self.settles.wait())
            .await
            .is_err()
        {
            warn!(
                "shutdown grace ran out with settles in flight; their ledger rows will be reconciled"
            );
        }
        self.background.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        served
    }
}

/// The accept loop: HTTP/1.1 with keep-alive, a bound on reading a request's headers, the
/// client's address on every request (`ConnectInfo`), and a graceful stop that lets open
/// connections finish their request (bounded by `grace`).
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    header_read_timeout: Duration,
    grace: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or sends garbage ends its connection; nothing to report.
            let _ = watched.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("shutdown grace ran out with connections still open");
    }
    Ok(())
}

/// Matches every enabled network to the plugins for its namespace and schemes.
async fn build_registry(
    settings: &Settings,
    leases: Arc<SignerLeases>,
) -> Result<SchemeRegistry, AppError> {
    let factories = schemes::builtin();
    let mut registry = SchemeRegistry::default();
    for (slug, network) in settings.enabled_networks() {
        let id = network
            .network_id()
            .map_err(|e| AppError::Network(e.to_string()))?;
        for scheme in &network.schemes {
            let factory = factories
                .iter()
                .find(|f| f.namespace() == id.namespace() && f.scheme() == scheme)
                .ok_or_else(|| {
                    AppError::Network(format!("networks.{slug}: no `{scheme}` plugin for {id}"))
                })?;
            let gate: Arc<dyn SignerGate> = leases.clone();
            match factory
                .build(slug, network, gate)
                .await
                .map_err(AppError::Network)?
            {
                Built::Serving(handler) => {
                    leases.register(handler.describe().lease_keys);
                    registry.register(handler).map_err(AppError::Network)?;
                }
                Built::NotServed(why) => warn!(network = %id, %scheme, "not advertised: {why}"),
            }
        }
    }
    Ok(registry)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    info!("shutting down");
}

/// Validates plugin options of every enabled network without touching the network.
pub fn validate_networks(settings: &Settings) -> Result<(), String> {
    let factories = schemes::builtin();
    for (slug, network) in settings.enabled_networks() {
        let id = network.network_id().map_err(|e| e.to_string())?;
        for scheme in &network.schemes {
            let factory = factories
                .iter()
                .find(|f| f.namespace() == id.namespace() && f.scheme() == scheme)
                .ok_or_else(|| format!("networks.{slug}: no `{scheme}` plugin for {id}"))?;
            factory.validate(slug, network)?;
        }
    }
    Ok(())
}

/// Per-IP rate-limit state for clients that went quiet is dropped every minute, so a stranger
/// cycling source addresses cannot grow it without bound.
fn spawn_limit_shrinker(
    access: Arc<Access>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => access.limits.shrink(),
            }
        }
    })
}

/// Each served network's known stablecoins (the default asset allow-list, `policy.assets =
/// "known"`), from the network presets.
fn known_assets(settings: &Settings) -> HashMap<String, Vec<String>> {
    let presets = match crate::config::presets() {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "network presets unreadable: no known-asset lists");
            return HashMap::new();
        }
    };
    let mut known = HashMap::new();
    for (_, n) in settings.enabled_networks() {
        if let Some(p) = presets.values().find(|p| p.network == n.network) {
            known.insert(
                n.network.clone(),
                p.assets.iter().map(|a| a.address.clone()).collect(),
            );
        }
    }
    known
}
