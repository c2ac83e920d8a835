//! Kubernetes `Status` error bodies: what every client parses on failure.

use std::borrow::Cow;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

/// A failure in the API's own shape.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub code: StatusCode,
    /// `reason`, e.g. `NotFound`.
    pub reason: Cow<'static, str>,
    /// Human-readable message.
    pub message: String,
    /// `details`, when there are any.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason: Cow::Borrowed(reason),
            message,
            details: None,
        }
    }

    /// 404 for a missing object.
    pub fn not_found(kind: &str, name: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{kind} \"{name}\" not found"),
        );
        e.details = Some(json!({"name": name, "kind": kind}));
        e
    }

    /// 404 for a path that names no resource.
    pub fn no_resource(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409 on create of an existing object.
    pub fn already_exists(kind: &str, name: &str) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{kind} \"{name}\" already exists"),
        );
        e.details = Some(json!({"name": name, "kind": kind}));
        e
    }

    /// 409 on a stale resourceVersion or failed precondition.
    pub fn conflict(kind: &str, name: &str, why: &str) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on {kind} \"{name}\": {why}"),
        );
        e.details = Some(json!({"name": name, "kind": kind}));
        e
    }

    /// 409 with a complete message (server-side apply conflicts).
    pub fn conflict_with_message(message: String) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message.into())
    }

    /// 422 with one cause.
    pub fn invalid(kind: &str, name: &str, field: &str, message: &str) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {field}: {message}"),
        );
        e.details = Some(json!({"name": name, "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]}));
        e
    }

    /// 422 with every violation of a custom resource's schema or CEL rules.
    pub fn invalid_causes(kind: &str, name: &str, causes: &[crate::schema::Cause]) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: [{}]", list.join(", ")),
        );
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        e.details = Some(json!({"name": name, "kind": kind, "causes": causes}));
        e
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".to_owned(),
        )
    }

    /// 415.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    /// 410 for a resourceVersion older than the history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message.into())
    }

    /// An injected failure with any status and reason.
    pub fn injected(code: u16, reason: String) -> Self {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = format!(
            "injected fault: {}",
            code.canonical_reason().unwrap_or("error")
        );
        Self {
            code,
            reason: Cow::Owned(reason),
            message,
            details: None,
        }
    }

    /// 500 with no reason: what the API server answers for a failure that is not a `Status`
    /// (some server-side apply errors are).
    pub fn internal(message: String) -> Self {
        Self {
            code: StatusCode::INTERNAL_SERVER_ERROR,
            reason: Cow::Borrowed(""),
            message,
            details: None,
        }
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message.into())
    }

    /// The `Status` object.
    pub fn body(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, Json(self.body())).into_response()
    }
}
