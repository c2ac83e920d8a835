//! The one HTTP handler: logs the request, answers discovery, and dispatches resource paths
//! by verb.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri, header};
use serde_json::Value;

use crate::collection::{self, Query};
use crate::faults::FaultAction;
use crate::objects::{self, PatchKind};
use crate::path::{self, Target};
use crate::request::{FieldValidation, Verb, WriteRequest};
use crate::status::ApiError;
use crate::{RequestRecord, Shared, discovery};

/// Answers one request.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if shared.is_down() {
        // Panicking in a handler makes hyper reset the connection with no response, which is
        // what a client of a server that just went away sees.
        std::panic::resume_unwind(Box::new("test-apiserver: down"));
    }
    let query = uri.query().unwrap_or("").to_owned();
    let response = match inject_fault(&shared, &method, uri.path(), &query).await {
        Some(response) => response,
        None => route(&shared, &method, uri.path(), &query, &headers, body).unwrap_or_else(|e| {
            log_refusal(&method, &uri, &e);
            e.into_response()
        }),
    };
    shared.record(RequestRecord {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        status: response.status().as_u16(),
        user: headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("anonymous")
            .to_owned(),
    });
    response
}

/// With `TEST_APISERVER_LOG_REFUSALS` set, prints every refused write to stderr: a client
/// that retries or only logs a refusal (an operator's reconcile loop) can pass a test while
/// the server rejects what it writes.
fn log_refusal(method: &Method, uri: &Uri, error: &ApiError) {
    if *method != Method::GET && std::env::var_os("TEST_APISERVER_LOG_REFUSALS").is_some() {
        eprintln!(
            "test-apiserver refused {method} {uri}: {} {}: {}",
            error.code.as_u16(),
            error.reason,
            error.message
        );
    }
}

fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let types = shared.types();
    if path.starts_with("/__fixture/") {
        return control(shared, method, path, query, &body);
    }
    if *method == Method::GET
        && let Some(response) = discovery::respond(path, headers, &types)
    {
        return Ok(response);
    }
    if let Some(response) = service_account_issuer(shared, method, path, &body)? {
        return Ok(response);
    }
    let target = path::resolve(path, &types)?;
    let params: HashMap<String, String> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let manager = field_manager(&params, headers);
    let request = |verb| -> Result<WriteRequest, ApiError> {
        let mut request = WriteRequest::new(&manager, verb);
        request.validation = FieldValidation::from_params(&params)?;
        Ok(request)
    };
    match (method.clone(), target.name.is_some()) {
        (Method::GET, false) => {
            let query = Query::parse(&params)?;
            if matches!(params.get("watch").map(String::as_str), Some("true" | "1")) {
                let stream = collection::watch(shared.clone(), target, query);
                return Ok((
                    [(header::CONTENT_TYPE, "application/json")],
                    Body::from_stream(stream),
                )
                    .into_response());
            }
            let list = collection::list(shared, &target, &query)?;
            if crate::table::wanted(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())) {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                let version = list["metadata"]["resourceVersion"].as_str().unwrap_or("");
                return ok(crate::table::render(&target.rtype, &items, version));
            }
            ok(list)
        }
        (Method::POST, false) => {
            let object = json_body(&body)?;
            if params.get("dryRun").is_some_and(|d| d == "All") {
                return Ok((StatusCode::CREATED, Json(object)).into_response());
            }
            let mut request = request(Verb::Create)?;
            request.duplicates = crate::duplicates::in_json(&body);
            let created = objects::create(shared, &target, object, &mut request)?;
            Ok(answer(StatusCode::CREATED, created, &request))
        }
        (Method::GET, true) => {
            let object = objects::get(shared, &target)?;
            if crate::table::wanted(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())) {
                let version = object["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                return ok(crate::table::render(&target.rtype, &[object], &version));
            }
            ok(object)
        }
        (Method::PUT, true) => {
            let mut request = request(Verb::Update)?;
            request.duplicates = crate::duplicates::in_json(&body);
            let replaced = objects::replace(shared, &target, json_body(&body)?, &mut request)?;
            Ok(answer(StatusCode::OK, replaced, &request))
        }
        (Method::PATCH, true) => {
            let mut request = request(Verb::Patch)?;
            patch(shared, &target, &params, headers, &body, &mut request)
        }
        (Method::DELETE, true) => {
            let options = if body.is_empty() {
                Value::Null
            } else {
                json_body(&body)?
            };
            let policy = params.get("propagationPolicy").map(String::as_str);
            ok(crate::deletion::delete(shared, &target, &options, policy)?)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `PATCH` in the body's format; `request` is a Patch until the body says it is an apply.
/// The issuer's discovery document and JWKS, and `TokenRequest` on a ServiceAccount.
fn service_account_issuer(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    body: &Bytes,
) -> Result<Option<Response>, ApiError> {
    let issuer_path = matches!(
        path,
        "/.well-known/openid-configuration" | "/openid/v1/jwks"
    );
    if issuer_path && !shared.issuer.serving() {
        return Err(ApiError::injected(503, "ServiceUnavailable".to_owned()));
    }
    match (method.as_str(), path) {
        ("GET", "/.well-known/openid-configuration") => {
            return ok(shared.issuer.discovery()).map(Some);
        }
        ("GET", "/openid/v1/jwks") => {
            let jwks = shared.issuer.jwks().to_string();
            let content_type = [(header::CONTENT_TYPE, "application/jwk-set+json")];
            return Ok(Some((content_type, jwks).into_response()));
        }
        _ => {}
    }
    let Some(account_path) = path
        .strip_suffix("/token")
        .filter(|p| *method == Method::POST && p.starts_with("/api/v1/namespaces/"))
        .filter(|p| p.rsplit('/').nth(1) == Some("serviceaccounts"))
    else {
        return Ok(None);
    };
    let account = objects::get(shared, &path::resolve(account_path, &shared.types())?)?;
    let request = json_body(body)?;
    let answer = crate::issuer::token_request(&shared.issuer, &account, &request)?;
    Ok(Some((StatusCode::CREATED, Json(answer)).into_response()))
}

fn patch(
    shared: &Shared,
    target: &Target,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
    request: &mut WriteRequest,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let (kind, value) = match media {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            request.duplicates = crate::duplicates::in_json(body);
            (PatchKind::Merge, json_body(body)?)
        }
        "application/json-patch+json" => (PatchKind::Json, json_body(body)?),
        "application/apply-patch+yaml" => {
            if params.get("fieldManager").is_none_or(String::is_empty) {
                return Err(ApiError::bad_request(
                    "PATCH requests with apply content type must specify a fieldManager",
                ));
            }
            let value: Value = serde_yaml::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid apply body: {e}")))?;
            let force = params.get("force").is_some_and(|f| f == "true");
            request.verb = Verb::Apply;
            request.duplicates = crate::duplicates::in_yaml(body);
            (PatchKind::Apply { force }, value)
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    let (object, created) = objects::patch(shared, target, kind, value, request)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(answer(status, object, request))
}

/// The written object, with a `Warning: 299 - "…"` header per warning the write produced.
fn answer(status: StatusCode, object: Value, request: &WriteRequest) -> Response {
    let mut response = (status, Json(object)).into_response();
    for warning in &request.warnings {
        let text = format!("299 - {}", Value::from(warning.as_str()));
        if let Ok(value) = http::HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

fn ok(value: Value) -> Result<Response, ApiError> {
    Ok(Json(value).into_response())
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The writer's field manager: `?fieldManager=`, else the client's User-Agent name (as the
/// real server derives it), else `unknown`.
fn field_manager(params: &HashMap<String, String>, headers: &HeaderMap) -> String {
    params
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .or_else(|| {
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Applies the first fault rule that fires for this request: delays it, or answers for it.
async fn inject_fault(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &str,
) -> Option<Response> {
    let target = path::resolve(path, &shared.types()).ok()?;
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let action = shared
        .faults
        .check(crate::faults::verb(method, &target, watch), &target)?;
    match action {
        FaultAction::Delay { millis } => {
            tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
            None
        }
        FaultAction::DropConnection => {
            std::panic::resume_unwind(Box::new("test-apiserver: injected connection drop"))
        }
        FaultAction::Status {
            code,
            reason,
            retry_after,
        } => {
            let mut response = ApiError::injected(code, reason).into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            Some(response)
        }
        FaultAction::Watch410Http if watch => {
            Some(ApiError::expired("too old resource version (injected)").into_response())
        }
        FaultAction::Watch410Http => None,
    }
}

/// `/__fixture/*`: inspection and fault control for out-of-process tests.
fn control(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let params: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap_or_default();
    let done = || Ok(StatusCode::NO_CONTENT.into_response());
    match (method.as_str(), path) {
        ("GET", "/__fixture/requests") => {
            let requests = shared
                .requests
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default();
            Ok(Json(requests).into_response())
        }
        ("POST", "/__fixture/faults") => {
            let rule = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid fault rule: {e}")))?;
            shared.faults.add(rule);
            done()
        }
        ("POST", "/__fixture/issuer/rotate") => {
            let keep_old = params.get("keepOld").is_some_and(|v| v == "true");
            let kid = shared.issuer.rotate(keep_old);
            Ok(Json(serde_json::json!({ "kid": kid })).into_response())
        }
        ("POST", "/__fixture/issuer/token") => {
            // Any token, even one TokenRequest refuses to mint (already expired).
            let request: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid token request: {e}")))?;
            let text = |k: &str| request[k].as_str().unwrap_or_default().to_owned();
            let claims = crate::issuer::TokenClaims {
                namespace: text("namespace"),
                name: text("name"),
                uid: text("uid"),
                audiences: serde_json::from_value(request["audiences"].clone()).unwrap_or_default(),
                expires_in: request["expiresIn"].as_i64().unwrap_or(3600),
            };
            let (token, _) = shared.issuer.mint(&claims);
            Ok(Json(serde_json::json!({ "token": token })).into_response())
        }
        ("DELETE", "/__fixture/faults") => {
            shared.faults.clear();
            done()
        }
        ("POST", "/__fixture/drop-watches") => {
            shared.drop_watches();
            done()
        }
        ("POST", "/__fixture/expire-watches") => {
            shared.expire_watches();
            done()
        }
        ("POST", "/__fixture/partition") => {
            let seconds: u64 = params
                .get("seconds")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            shared.partition(std::time::Duration::from_secs(seconds));
            done()
        }
        _ => Err(ApiError::no_resource(path)),
    }
}
