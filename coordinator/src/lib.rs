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
pub mod config;
pub mod error;
pub mod http;
pub mod memory;
pub mod planner;
pub mod ratelimit;
pub mod realtime;
pub mod sessions;
pub mod state;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;

use std::future::IntoFuture;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::CorsLayer;

pub use config::Config;

use crate::config::PlannerKind;
use crate::planner::{AnthropicPlanner, Planner};
use crate::realtime::{Engine, Relay};
use crate::sessions::SessionService;
use crate::state::AppState;
use crate::token::Token;

/// How long open connections may take to close after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    sockets: Arc<Engine>,
    state: AppState,
    background: CancellationToken,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = config.common.store().map_err(anyhow::Error::msg)?;
        let planner = planner(&config)?;
        let background = CancellationToken::new();
        let socket_limits = config.socket_limits();
        let relay = Relay::start(store.clone(), socket_limits, background.child_token());
        let tokens = http::Tokens {
            api: Token::from_setting(config.api_token.as_deref()),
            metrics: Token::from_setting(config.metrics_token.as_deref()),
        };
        let (socket_routes, sockets) =
            realtime::routes(relay.clone(), tokens.api.clone(), socket_limits);
        let state = AppState {
            sessions: SessionService::new(store.clone(), planner, config.session_limits()),
            store,
            relay,
            create_limiter: Arc::new(ratelimit::RateLimiter::new(config.create_rate_per_min)),
            trust_forwarded_for: config.trust_forwarded_for,
            metrics: swarmq_shared::metrics::install(),
        };
        let router = http::router(state.clone(), tokens)
            .merge(socket_routes)
            .layer(cors(&config.cors_origins)?);
        let listener = TcpListener::bind((config.host, config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        tracing::info!(
            addr = %listener.local_addr()?,
            redis = %config.common.redis_description(),
            prefix = %config.common.prefix,
            planner = %state.sessions.planner().describe(),
            "coordinator ready"
        );
        Ok(Self {
            listener,
            router,
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
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
        // A connection that never finishes closing must not keep a stopped coordinator alive:
        // after the shutdown signal, connections get SHUTDOWN_GRACE to end.
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        let result = tokio::select! {
            r = server => r.context("http server failed"),
            _ = deadline => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the shutdown grace period; stopping anyway");
                Ok(())
            }
        };
        background.cancel();
        result
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

/// `*` allows any origin; otherwise only the listed ones (comma-separated).
fn cors(origins: &str) -> anyhow::Result<CorsLayer> {
    let origins = origins.trim();
    if origins == "*" {
        return Ok(CorsLayer::permissive());
    }
    let list = origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            o.parse::<axum::http::HeaderValue>()
                .with_context(|| format!("SWARMQ_CORS_ORIGINS: {o:?} is not a valid origin"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        !list.is_empty(),
        "SWARMQ_CORS_ORIGINS is empty (use * to allow any origin)"
    );
    Ok(CorsLayer::new()
        .allow_origin(list)
        .allow_methods(tower_http::cors::Any)
        .allow_headers(tower_http::cors::Any))
}
