//! `GET /`: the page, its script and its style, compiled into the binary (no CDN, no build
//! step). The script draws everything from the WebSocket (`/api/live`).

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
const INDEX: &str = include_str!("../assets/index.html");
/// Its script.
const SCRIPT: &str = include_str!("../assets/app.js");
/// Its style.
const STYLE: &str = include_str!("../assets/app.css");

/// Only this origin's script, style and WebSocket; nothing inline, nothing from elsewhere.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' \
                      data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

/// `text`, of `content_type`, with the page's security headers.
fn asset(content_type: &'static str, text: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        text,
    )
}

/// `GET /`.
pub(crate) async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /app.js`.
pub(crate) async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /app.css`.
pub(crate) async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}
