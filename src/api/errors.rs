//! Every error answer of the control API is JSON `{"error": CODE, "message": TEXT}`: this layer
//! rewrites the ones axum makes by itself (an empty `405`, `400 Invalid URL: …` from a path
//! that does not decode, a `413`/`415`/`422` rejection) from their status; answers that are
//! JSON already pass untouched. hyper's own `400`/`414`/`431` are rewritten in `conn_io`.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

/// Longest rejection text kept as the message.
const MESSAGE_MAX: usize = 200;

/// The wire code for an error status.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 | 414 | 431 => "too_large",
        400..=499 => "malformed",
        503 => "busy",
        _ => "internal",
    }
}

fn is_json(r: &Response) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// `axum::middleware::map_response` body: non-JSON error answers become JSON.
pub async fn json_errors(r: Response) -> Response {
    let status = r.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&r) {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let text = text.trim();
    let message = if text.is_empty() {
        default_message(status)
    } else {
        crate::logging::truncate(text, MESSAGE_MAX)
    };
    let body = serde_json::json!({ "error": code_for(status), "message": message }).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".into(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(status: StatusCode, ct: Option<&'static str>, body: &str) -> (u16, String) {
        let mut r = Response::new(Body::from(body.to_owned()));
        *r.status_mut() = status;
        if let Some(ct) = ct {
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        let r = json_errors(r).await;
        let s = r.status().as_u16();
        let b = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (s, String::from_utf8(b.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn axum_rejections_become_json() {
        let (s, b) = run(StatusCode::METHOD_NOT_ALLOWED, None, "").await;
        assert_eq!(s, 405);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["error"], "method_not_allowed");
        let (s, b) = run(
            StatusCode::BAD_REQUEST,
            Some("text/plain; charset=utf-8"),
            "Invalid URL: Cannot parse `\n` to a `u32`",
        )
        .await;
        assert_eq!(s, 400);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["error"], "malformed");
        assert!(
            v["message"].as_str().unwrap().starts_with("Invalid URL"),
            "{v}"
        );
        assert!(!v["message"].as_str().unwrap().contains('\n'), "{v}");
    }

    #[tokio::test]
    async fn json_and_success_pass_untouched() {
        let (s, b) = run(
            StatusCode::UNAUTHORIZED,
            Some("application/json"),
            "{\"error\":\"unauthorized\",\"message\":\"x\"}",
        )
        .await;
        assert_eq!(
            (s, b.as_str()),
            (401, "{\"error\":\"unauthorized\",\"message\":\"x\"}")
        );
        let (s, b) = run(StatusCode::OK, Some("text/plain"), "OK").await;
        assert_eq!((s, b.as_str()), (200, "OK"));
    }
}
