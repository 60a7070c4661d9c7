//! `GET /api/openapi.json`: the OpenAPI 3.1 description of the HTTP API, generated from the
//! handlers' annotations and the response types they return, so it cannot drift from them.
//! The Socket.IO contract is its `x-socketio` section (`socketio_doc`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{self, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{cluster, sessions, socketio_doc};
use crate::error::ErrorBody;
use crate::sessions::SessionLimits;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "swarmq",
        description = "Sessions of AI agents: create one from a prompt, watch it over Socket.IO \
                       (the x-socketio section), cancel it. Errors are always {\"error\": \"...\"}.",
    ),
    paths(
        sessions::create,
        sessions::list,
        sessions::read,
        sessions::cancel,
        sessions::share,
        sessions::events,
        cluster::runners,
        cluster::stats,
        cluster::series,
        openapi_json,
        healthz,
        readyz,
        metrics,
    ),
    components(schemas(
        ErrorBody,
        socketio_doc::JoinRequest,
        socketio_doc::JoinAck,
        socketio_doc::ConnectionEvicted,
        swarmq_shared::event::TaskAssigned,
        swarmq_shared::event::TaskCompleted,
        swarmq_shared::event::TaskFailed,
        swarmq_shared::event::AgentThinking,
        swarmq_shared::event::AgentReasoning,
        swarmq_shared::event::AgentStreamReady,
        swarmq_shared::event::AgentTerminated,
        swarmq_shared::event::SessionComplete,
        swarmq_shared::model::Todo,
    )),
    modifiers(&Secured),
    tags(
        (name = "sessions", description = "Create, read, list and cancel sessions"),
        (name = "cluster", description = "Runners and totals, for operators"),
        (name = "probes", description = "Health, readiness and Prometheus metrics"),
    ),
)]
pub struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(openapi_json))
}

/// This document (served without a token: it describes, it reveals nothing).
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "cluster",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")),
)]
pub(super) async fn openapi_json(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(describe(state.sessions.limits()))
}

/// The document for a coordinator with these limits: the request schema carries the
/// configured maximum agent count and prompt length, so a request the schema allows is one
/// this coordinator accepts. A creation's `201` links to reading and cancelling the session,
/// so clients (and schemathesis' stateful phase) can follow it.
pub fn describe(limits: &SessionLimits) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let fields = &mut doc["components"]["schemas"]["CreateSessionRequest"]["properties"];
    fields["agentCount"]["maximum"] = limits.max_agents.into();
    fields["prompt"]["maxLength"] = limits.max_prompt_chars.into();
    // utoipa's Link serializes `operation_id` in snake case, so the links are written here.
    let link = |op: &str| json!({ "operationId": op, "parameters": { "id": "$response.body#/sessionId" } });
    doc["x-socketio"] = socketio_doc::section();
    doc["paths"]["/api/sessions"]["post"]["responses"]["201"]["links"] = json!({
        "readSession": link("readSession"),
        "cancelSession": link("cancelSession"),
        "shareSession": link("shareSession"),
        "listSessionEvents": link("listSessionEvents"),
    });
    doc
}

/// The process answers (no Redis check).
#[utoipa::path(
    get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "{\"status\": \"ok\"}", content_type = "application/json")),
)]
#[allow(dead_code)]
fn healthz() {}

/// Redis answers a PING within 2 s.
#[utoipa::path(
    get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "{\"status\": \"ready\"}", content_type = "application/json"),
        (status = 503, description = "Redis unreachable or slow", body = ErrorBody),
    ),
)]
#[allow(dead_code)]
fn readyz() {}

/// Prometheus text (behind `SWARMQ_METRICS_TOKEN` when set).
#[utoipa::path(
    get, path = "/metrics", tag = "probes",
    responses(
        (status = 200, description = "Prometheus exposition format", content_type = "text/plain"),
        (status = 401, description = "Metrics token required", body = ErrorBody),
    ),
)]
#[allow(dead_code)]
fn metrics() {}

/// The bearer scheme (the admin token, or a share token on `readSession`), a `401` on every
/// `/api` route (answered when `SWARMQ_API_TOKEN` is set and the request lacks it) and a `403`
/// (a share token outside its one route).
struct Secured;

impl Modify for Secured {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("apiToken", SecurityScheme::Http(bearer));
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    openapi::ContentBuilder::new()
                        .schema(Some(RefOr::Ref(openapi::Ref::from_schema_name(
                            "ErrorBody",
                        ))))
                        .build(),
                )
                .build()
        };
        let unauthorized =
            error("SWARMQ_API_TOKEN is set and the bearer token is missing, wrong or expired");
        let forbidden = error(
            "A share token, which allows only GET /api/sessions/{its id} (and joining that room)",
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/api/") || path == "/api/openapi.json" {
                continue;
            }
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                op.responses
                    .responses
                    .insert("401".into(), RefOr::T(unauthorized.clone()));
                op.responses
                    .responses
                    .insert("403".into(), RefOr::T(forbidden.clone()));
                op.security = Some(vec![
                    openapi::security::SecurityRequirement::new("apiToken", Vec::<String>::new()),
                    openapi::security::SecurityRequirement::default(),
                ]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_socket_event_has_a_payload_schema() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let section = socketio_doc::section();
        let events = section["serverEvents"].as_object().unwrap();
        for name in swarmq_shared::event::Event::NAMES {
            let payload = events[*name]["allOf"][0]["$ref"].as_str().unwrap();
            let schema = payload.rsplit('/').next().unwrap();
            assert!(
                doc["components"]["schemas"].get(schema).is_some(),
                "{name}: no schema {schema}"
            );
        }
    }

    #[test]
    fn every_route_is_described_with_its_error_statuses() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let create = &doc["paths"]["/api/sessions"]["post"]["responses"];
        for status in [
            "201", "400", "401", "409", "413", "415", "422", "429", "502", "503",
        ] {
            assert!(
                create.get(status).is_some(),
                "POST /api/sessions lacks {status}"
            );
        }
        let cancel = &doc["paths"]["/api/sessions/{id}/cancel"]["post"]["responses"];
        for status in ["200", "404", "409"] {
            assert!(cancel.get(status).is_some(), "cancel lacks {status}");
        }
        for schema in [
            "Session",
            "SessionSummary",
            "Todo",
            "Agent",
            "ErrorBody",
            "Stats",
        ] {
            assert!(
                doc["components"]["schemas"].get(schema).is_some(),
                "no schema {schema}"
            );
        }
    }
}
