//! The status page main serves at `GET /` and `GET /status`: one HTML file, its script and its
//! style sheet, embedded in the binary (`include_str!`; no CDN, so it works on a classroom LAN
//! without internet). The script polls main's read-only JSON (`/api/cluster/status`,
//! `/api/cluster/events`, `/api/livekit/rooms`) every 2 s. The page changes nothing: every
//! state-changing endpoint still needs the application token. A strict Content-Security-Policy
//! allows only these same-origin files.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

const HTML: &str = include_str!("page/index.html");
const JS: &str = include_str!("page/app.js");
const CSS: &str = include_str!("page/app.css");

/// Only our own files, no inline code, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes (a clustered main only; merged into `api::router`'s table).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/status", get(page))
        .route("/status/app.js", get(script))
        .route("/status/app.css", get(style))
        .route("/api/cluster/events", get(events))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

async fn page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", HTML)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", JS)
}

async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CSS)
}

/// `GET /api/cluster/events`: main's recent membership changes, oldest first.
async fn events() -> Json<Vec<super::events::Event>> {
    Json(super::events::recent())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained() {
        for text in [HTML, JS, CSS] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "no external URL"
            );
        }
        assert!(HTML.contains(r#"src="/status/app.js""#));
        assert!(HTML.contains(r#"href="/status/app.css""#));
        assert!(!HTML.contains("<script>"), "no inline script (CSP)");
        assert!(
            !JS.contains("innerHTML"),
            "text only, never HTML from the API"
        );
    }
}
