//! Start-up: the vault opened, the state built, the socket bound, the server
//! and its workers run until shutdown; connections counted per client.

use crate::config::Config;
use crate::outbound::systems::Systems;
use crate::routes::router;
use crate::secrets::{self, Secrets};
use crate::state::{AppState, CalendarState, ClockMode, HEADER_READ_TIMEOUT, Shared, SystemClock};
use crate::{http, jwt, metrics, worker};
use jiff::SignedDuration;
use lethe_connect::DataMap;
use lethe_domain::Clock;
use lethe_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error(transparent)]
    DataMap(#[from] lethe_connect::DataMapError),
    #[error(transparent)]
    Connect(#[from] lethe_connect::ConnectError),
    #[error("store: {0}")]
    Store(#[from] lethe_store::StoreError),
    #[error(transparent)]
    Vault(#[from] lethe_vault::VaultError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the vault: its key-encryption key file `vault.kek` is created on
/// first run only; if it is missing while wrapped keys exist, start-up fails
/// with the instruction to restore it.
pub async fn open_vault(
    data_dir: &std::path::Path,
    store: &Store,
    secrets: &Secrets,
) -> Result<Arc<lethe_vault::Vault>, ServeError> {
    use lethe_vault::KeyStore;
    let existing = store.count().await?;
    let kek = lethe_vault::LocalKeyFile::open(&data_dir.join("vault.kek"), existing == 0)?;
    Ok(Arc::new(lethe_vault::Vault::new(
        Arc::new(kek),
        Arc::new(store.clone()),
        secrets.vault_master(),
    )))
}

/// Installs ring as the process's TLS crypto provider (for outbound
/// webhooks over https). Idempotent.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A prepared server: state built, socket bound.
pub struct Server {
    pub state: AppState,
    pub listener: tokio::net::TcpListener,
}

impl Server {
    pub async fn prepare(cfg: &Config, mode: ClockMode) -> Result<Self, ServeError> {
        install_crypto_provider();
        let policy = cfg.validate().map_err(ServeError::Config)?;
        std::fs::create_dir_all(&cfg.data_dir)?;
        secrets::secure_data_dir(&cfg.data_dir)?;
        let secrets = Secrets::load_or_create(&cfg.data_dir)?;
        let datamap = DataMap::load(&cfg.datamap)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ServeError::Config(format!("HTTP client: {e}")))?;
        if cfg.events.nats_url.is_none()
            && let Some(s) = datamap
                .systems
                .iter()
                .find(|s| s.kind == lethe_connect::Kind::Event)
        {
            return Err(ServeError::Config(format!(
                "system {} is of kind event: its service learns of erasures from case events; set [events] nats_url",
                s.name
            )));
        }
        let systems = Systems::connect(&datamap, http.clone()).await?;
        let tz = jiff::tz::TimeZone::get(&cfg.time_zone)
            .map_err(|_| ServeError::Config(format!("unknown time_zone {}", cfg.time_zone)))?;
        let calendar = Arc::new(CalendarState {
            current: std::sync::RwLock::new(
                CalendarState::load(cfg.calendar_file.as_deref()).map_err(ServeError::Config)?,
            ),
            file: cfg.calendar_file.clone(),
            last_error: std::sync::RwLock::new(None),
            file_stamp: std::sync::Mutex::new(
                cfg.calendar_file
                    .as_ref()
                    .and_then(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok()),
            ),
        });
        let deadline_fn: lethe_store::DeadlineFn = {
            let (calendar, tz) = (calendar.clone(), tz.clone());
            Arc::new(move |case: &lethe_domain::Case| {
                let cal = calendar.current.read().unwrap_or_else(|p| p.into_inner());
                case.deadlines(&cal, &tz)
            })
        };
        let store = Store::open_url(
            &cfg.store_url().map_err(ServeError::Config)?,
            lethe_store::StoreOptions {
                deadlines: Some(deadline_fn),
                case_events: cfg.events.nats_url.is_some(),
                erasure_jobs: worker::erasure_jobs(&systems, cfg.worker.max_attempts),
                settle_attempts: cfg.worker.max_attempts,
                read_connections: cfg.store.read_connections,
                write_connections: cfg.store.write_connections,
            },
        )
        .await?;
        let vault = open_vault(&cfg.data_dir, &store, &secrets).await?;
        let signer = Arc::new(secrets::load_or_create_signer(&cfg.data_dir)?);
        let (clock, manual_clock, clock_file): (Arc<dyn Clock>, _, _) = match mode {
            ClockMode::System => (Arc::new(SystemClock), None, None),
            ClockMode::Manual { clock, offset_file } => {
                (clock.clone(), Some(clock), Some(offset_file))
            }
        };
        let demo = manual_clock.is_some();
        let state = Shared {
            sequencer: Arc::default(),
            store,
            clock,
            manual_clock,
            clock_file,
            datamap: Arc::new(datamap),
            systems: Arc::new(systems),
            secrets,
            vault,
            signer,
            http,
            // Set below, once the socket is bound (its port may be 0 here).
            public_url: String::new(),
            demo_platform: Arc::new(std::sync::OnceLock::new()),
            identity: cfg.identity.clone(),
            metrics: Arc::new(metrics::Metrics::default()),
            data_dir: cfg.data_dir.clone(),
            session_key: match (
                &cfg.identity.session_secret_env,
                &cfg.identity.session_public_key,
            ) {
                (Some(env), _) => Some(jwt::Key::Hs256(
                    std::env::var(env)
                        .map_err(|_| {
                            ServeError::Config(format!(
                                "identity.session_secret_env names {env}, which is not set"
                            ))
                        })?
                        .into_bytes(),
                )),
                (None, Some(pk)) => Some(jwt::Key::EdDsa(pk.clone())),
                (None, None) => None,
            },
            calendar,
            tz,
            tombstones: cfg.tombstones.clone(),
            notifications: cfg.notifications.clone(),
            policy,
            otp_resend: SignedDuration::from_secs(cfg.policy.otp_resend_seconds),
            otp_lockout: SignedDuration::from_mins(cfg.policy.otp_lockout_minutes),
            limits: cfg.limits.clone(),
            worker: cfg.worker.clone(),
            export: cfg.export.clone(),
            export_ttl: cfg.export.validate().map_err(ServeError::Config)?,
            export_wake: Arc::new(Notify::new()),
            events: cfg.events.clone(),
            transparency: cfg.transparency.clone(),
            support: cfg.support.clone(),
            keys: Arc::new(http::limits::KeyCache::new()),
            limiter: Arc::new(http::limits::RateLimiter::new(
                cfg.limits.rate_per_second,
                cfg.limits.rate_burst,
            )),
            seal_slots: Arc::new(tokio::sync::Semaphore::new(worker::SEALS_IN_FLIGHT)),
            receipt_tries: Arc::new(http::limits::RateLimiter::per_hour(
                cfg.support.failed_receipts_per_hour,
            )),
            demo,
            wake: Arc::new(Notify::new()),
            timer_wake: Arc::new(Notify::new()),
        };
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let mut state = state;
        state.public_url = match &cfg.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", listener.local_addr()?),
        };
        let state = AppState(Arc::new(state));
        Ok(Self { state, listener })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until SIGINT/SIGTERM, then stops taking requests, lets running
    /// jobs finish (or leaves them leased for resumption) and returns.
    pub async fn run(self) -> Result<(), ServeError> {
        let (tx, rx) = watch::channel(false);
        let workers = worker::spawn(self.state.clone(), rx.clone());
        let app = router(self.state.clone());
        let mut srx = rx.clone();
        let shutdown = async move {
            let ctrl_c = tokio::signal::ctrl_c();
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
            tokio::select! {
                _ = ctrl_c => {}
                _ = term => {}
                _ = srx.changed() => {}
            }
            tracing::info!("shutting down");
            let _ = tx.send(true);
        };
        // Our own accept loop (instead of axum::serve) for the limits axum
        // does not set: connections at once, and a deadline for the request
        // head so slow clients (slowloris) cannot hold connections.
        let max = self.state.limits.max_connections;
        let connections = Arc::new(tokio::sync::Semaphore::new(max));
        // One client address may hold only a share of the connections, and
        // past the soft cap (the last 32 kept for health checks and
        // operators) new connections are answered 503, not served.
        let per_client = (max / 8).clamp(4, 256);
        let soft_cap = max.saturating_sub(32).max(1);
        let by_client = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
            std::net::IpAddr,
            usize,
        >::new()));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::warn!("connection limit reached; closing a new connection");
                drop(stream);
                continue;
            };
            let in_use = max - connections.available_permits();
            let client = ClientSlot::take(&by_client, peer.ip());
            // Shed: this client holds its share already, or the server is
            // past its soft cap. Health checks still get through.
            let shed = client.count > per_client || in_use > soft_cap;
            if shed {
                tracing::warn!(
                    client_connections = client.count,
                    in_use,
                    "shedding a connection with 503"
                );
            }
            let app = app.clone();
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    let health = matches!(req.uri().path(), "/healthz" | "/readyz");
                    let app = app.clone();
                    async move {
                        if shed && !health {
                            return Ok(axum::response::IntoResponse::into_response(
                                http::problem::Problem::new(
                                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                    "busy",
                                    "Too many connections",
                                    "too many connections at once, from this address or in all",
                                )
                                .retry_after(1),
                            ));
                        }
                        tower::ServiceExt::oneshot(app, req).await
                    }
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
                drop(client);
                drop(permit);
            });
        }
        // Let in-flight requests finish, briefly.
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        for w in workers {
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
        Ok(())
    }
}

/// A connection counted against its client address while it is open.
struct ClientSlot {
    map: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
    /// Connections of this address, this one included.
    count: usize,
}

impl ClientSlot {
    fn take(
        map: &Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
        ip: std::net::IpAddr,
    ) -> Self {
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        *n += 1;
        Self {
            map: map.clone(),
            ip,
            count: *n,
        }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}
