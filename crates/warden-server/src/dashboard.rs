//! The live dashboard at `/`: one page, its script, its style sheet and its icon, embedded in the binary (nothing is
//! fetched from elsewhere at run time). The page holds no data: it reads the API with the key its user gives,
//! so serving it needs no key.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// Nothing but this server's own assets and API; no inline script or style, no framing.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                      img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's paths, served without a key.
pub const PATHS: &[&str] = &["/", "/dashboard.js", "/dashboard.css", "/dashboard.svg"];

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page.
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", include_str!("dashboard/index.html"))
}

/// `GET /dashboard.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("dashboard/dashboard.js"))
}

/// `GET /dashboard.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("dashboard/dashboard.css"))
}

/// `GET /dashboard.svg`: the page's icon.
pub async fn icon() -> Response {
    asset("image/svg+xml", include_str!("dashboard/dashboard.svg"))
}
