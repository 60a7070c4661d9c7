//! swarmq coordinator: the session HTTP API, decomposition through Claude (or the offline
//! planner), and the Socket.IO relay of each session's events. Stateless: all state is in Redis,
//! so any number of coordinators can run behind a load balancer.
//!
//! # Layout
//! - [`config`]: the operator settings (clap).
//! - [`sessions`]: the session service — validating, creating (decomposing) and cancelling.
//! - [`http`]: the routes; [`error`]: how failures become responses; [`token`]: the optional
//!   API and metrics tokens; [`ratelimit`]: session creations per client.
//! - [`planner`]: decomposition (Anthropic or local) and validation of the model's reply.
//! - [`realtime`]: Socket.IO handlers and the pub/sub → room relay.
//! - [`background`]: the decomposition watchdog, the dead-runner reaper, gauges, index trim.
//! - [`memory`]: gives freed memory back to the OS (after thousands of viewers leave).
//! - [`state`]: what every handler shares.
//!
//! [`Application::build`] binds the listener (port 0 works), [`Application::run_until_stopped`]
//! serves until the shutdown token fires, so tests start the real thing in-process.

pub mod background;
pub mod client_addr;
pub mod client_log;
pub mod config;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod listener;
pub mod memory;
pub mod origin;
pub mod planner;
pub mod ratelimit;
pub mod realtime;
pub mod sessions;
pub mod share;
pub mod state;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::client_addr::TrustedProxies;
use crate::config::PlannerKind;
use crate::listener::Gate;
use crate::origin::OriginPolicy;
use crate::planner::{AnthropicPlanner, Planner};
use crate::realtime::{Engine, Relay};
use crate::sessions::SessionService;
use crate::state::AppState;
use crate::token::Token;

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    gate: Arc<Gate>,
    shutdown_grace: std::time::Duration,
    sockets: Arc<Engine>,
    state: AppState,
    background: CancellationToken,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = config.common.store().map_err(anyhow::Error::msg)?;
        let planner = planner(&config)?;
        let host = config.listen_host().map_err(anyhow::Error::msg)?;
        let proxies = trusted_proxies(&config)?;
        let background = CancellationToken::new();
        let socket_limits = config.socket_limits();
        let relay = Relay::start(store.clone(), socket_limits, background.child_token());
        let auth = Arc::new(share::Auth::new(
            Token::from_setting(config.api_token.as_deref()),
            config.share_key.as_deref(),
            config.share_key_previous.as_deref(),
        ));
        let tokens = http::Tokens {
            auth: auth.clone(),
            metrics: Token::from_setting(config.metrics_token.as_deref()),
        };
        let secured = auth.required();
        let (socket_routes, sockets) = realtime::routes(relay.clone(), auth.clone(), socket_limits);
        let sessions = SessionService::new(store.clone(), planner, config.session_limits());
        let state = AppState {
            idempotency: idempotency::Idempotency::new(
                sessions.clone(),
                std::time::Duration::from_secs(config.idempotency_ttl_secs),
            ),
            sessions,
            auth,
            store,
            relay,
            create_limiter: ratelimit::RateLimiter::new(config.create_rate(secured, host), secured),
            trusted_proxies: Arc::new(proxies.clone()),
            metrics: swarmq_shared::metrics::install(),
        };
        let origins = OriginPolicy::parse(
            config.cors_origins.as_deref(),
            !secured && host.is_loopback(),
        )
        .map_err(anyhow::Error::msg)?;
        let router = guarded(
            http::router(state.clone(), tokens).merge(socket_routes),
            origins,
            config.idle_timeout_secs,
        );
        let listener = TcpListener::bind((host, config.port))
            .await
            .with_context(|| format!("cannot listen on {host}:{}", config.port))?;
        let gate = Gate::new(config.conn_limits(), proxies);
        announce(&config, &listener, &state, secured)?;
        Ok(Self {
            listener,
            router,
            gate,
            shutdown_grace: std::time::Duration::from_secs(config.shutdown_grace_secs),
            sockets,
            state,
            background,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` fires, then closes every Socket.IO connection and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let background = self.background.clone();
        tokio::spawn(background::run(
            self.state.store.clone(),
            background.child_token(),
        ));
        tokio::spawn(memory::release_periodically(background.child_token()));
        let sockets = self.sockets.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            // Open websockets would otherwise hold the graceful shutdown forever.
            sockets.close_all();
        });
        listener::serve(
            self.listener,
            self.router,
            self.gate,
            shutdown,
            self.shutdown_grace,
        )
        .await;
        background.cancel();
        Ok(())
    }
}

/// The decomposition planner the settings ask for; the offline one is announced loudly.
fn planner(config: &Config) -> anyhow::Result<Planner> {
    let planner = match config.planner_kind() {
        PlannerKind::Anthropic => {
            let key = config
                .anthropic_api_key
                .clone()
                .filter(|k| !k.trim().is_empty())
                .context("SWARMQ_PLANNER=anthropic needs ANTHROPIC_API_KEY")?;
            Planner::Anthropic(AnthropicPlanner::new(
                &config.anthropic_base_url,
                key,
                config.anthropic_model.clone(),
                config.decompose_timeout(),
            )?)
        }
        PlannerKind::Local => Planner::Local,
    };
    if matches!(planner, Planner::Local) {
        tracing::warn!(
            "OFFLINE PLANNER: no ANTHROPIC_API_KEY (or SWARMQ_PLANNER=local); prompts are split locally, Claude is not called"
        );
    }
    Ok(planner)
}

/// The layers every route gets, outermost first: CORS, the origin guard, the request-body
/// idle timeout.
fn guarded(router: axum::Router, origins: OriginPolicy, idle_secs: u64) -> axum::Router {
    let cors = origins.cors();
    router
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            std::time::Duration::from_secs(idle_secs),
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(origins),
            origin::guard,
        ))
        .layer(cors)
}

fn trusted_proxies(config: &Config) -> anyhow::Result<TrustedProxies> {
    let proxies = TrustedProxies::parse(&config.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("SWARMQ_TRUSTED_PROXIES: {e}"))?;
    anyhow::ensure!(
        !config.trust_forwarded_for || !proxies.is_empty(),
        "SWARMQ_TRUST_FORWARDED_FOR is replaced by SWARMQ_TRUSTED_PROXIES: list the addresses of the proxies whose X-Forwarded-For to believe"
    );
    Ok(proxies)
}

/// The start-up lines: where it listens, and loudly when the API is open.
fn announce(
    config: &Config,
    listener: &TcpListener,
    state: &AppState,
    secured: bool,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    if !secured && addr.ip().is_loopback() {
        tracing::warn!(
            "no SWARMQ_API_TOKEN: the API is open, so it listens on loopback only ({addr}); set SWARMQ_API_TOKEN to serve other hosts"
        );
    } else if !secured {
        tracing::warn!(
            "INSECURE: no SWARMQ_API_TOKEN and SWARMQ_ALLOW_INSECURE is set: anyone who can reach {addr} can use the API"
        );
    }
    tracing::info!(
        addr = %addr,
        redis = %config.common.redis_description(),
        prefix = %config.common.prefix,
        planner = %state.sessions.planner().describe(),
        api_token = if secured { "set" } else { "unset" },
        create_rate_per_min = state.create_limiter.per_minute(),
        "coordinator ready"
    );
    Ok(())
}
