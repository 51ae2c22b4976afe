//! Reading requests and writing answers: the typed body parse, lock-id checks, the success envelope, and the
//! answers to unknown paths and methods.

#[allow(unused_imports)]
use super::*;

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: ErrorCode::InvalidRequest,
                message: format!("request body is larger than the limit of {limit} bytes"),
                node: None,
                field: None,
            }
        } else {
            ApiError::invalid(format!("could not read the request body: {}", r.body_text()))
        }
    })?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::invalid("request body is empty: send a JSON object"));
    }
    // Typed parsing in one pass; the first byte tells a non-object apart without building a JSON tree.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            Ok(_) => ApiError::invalid("request body must be a JSON object"),
            Err(e) => ApiError::invalid(format!("malformed JSON body: {e}")),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("malformed JSON body: {inner}"))
        } else if path == "." || path == "?" || path.is_empty() {
            ApiError::invalid(format!("invalid request body: {inner}"))
        } else {
            // A top-level field's name is data the client can act on; a nested path stays in the sentence.
            let message = format!("invalid field `{path}`: {inner}");
            match path.contains(['.', '[']) {
                false => ApiError::invalid_field(&path, message),
                true => ApiError::invalid(message),
            }
        }
    })?;
    de.end()
        .map_err(|e| ApiError::invalid(format!("malformed JSON body: trailing data after the object ({e})")))?;
    Ok(value)
}

/// An empty lock id is a bad request; any other id that cannot be one of ours is simply unknown (404).
pub(crate) fn check_lock_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::invalid("`lockId` must not be empty"));
    }
    validate::lock_id(id).map_err(|_| ApiError::not_found(id))
}

/// `{"success": true, "data": ...}`, serialised straight from the typed value.
#[derive(serde::Serialize)]
pub(crate) struct Success<'a, T: serde::Serialize> {
    success: bool,
    data: &'a T,
}

pub(crate) fn ok<T: serde::Serialize>(status: StatusCode, data: T) -> Response {
    (
        status,
        Json(Success {
            success: true,
            data: &data,
        }),
    )
        .into_response()
}

/// `limit` and `offset` of a list view: (offset, limit), the limit 1..=10,000 (1,000 unless given).
pub(crate) fn page_params(limit: Option<usize>, offset: Option<usize>) -> Result<(usize, usize), ApiError> {
    let limit = limit.unwrap_or(warden::wire::DEFAULT_PAGE);
    if !(1..=warden::wire::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("`limit` must be 1..={}, got {limit}", warden::wire::MAX_PAGE),
        ));
    }
    Ok((offset.unwrap_or(0), limit))
}

/// Unknown paths: the envelope, not an empty 404.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: ErrorCode::NotFound,
        message: format!("no endpoint {method} {path}: see /openapi.json for the API"),
        node: None,
        field: None,
    }
}

/// Known path, wrong method.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: ErrorCode::InvalidRequest,
        message: format!("{path} does not accept {method}: see /openapi.json for the API"),
        node: None,
        field: None,
    }
}
