//! Reading a JSON request body with an answer for every way it can be wrong: missing or wrong
//! content type (415), too large (413), not JSON or not an object (400).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value};

use crate::error::ApiError;

pub fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(if mime.is_empty() {
            "missing Content-Type: send the body as application/json".into()
        } else {
            format!("unsupported Content-Type {mime:?}: send the body as application/json")
        }));
    }
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "request body is larger than {} bytes",
                super::MAX_BODY_BYTES
            ))
        } else {
            ApiError::BadRequest(format!("could not read the request body: {rejection}"))
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest(
            "request body is empty: expected a JSON object".into(),
        ));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest(
            "request body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}
