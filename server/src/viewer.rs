//! The viewer web app: static files from `viewer/`, embedded in the binary at build time
//! (no runtime download, no CDN), and served over the origin's HTTP port.
//!
//! - `/`: the channel list; `/watch/<broadcast>`: the player page for one broadcast;
//! - `/viewer/...`: the app's scripts and style sheet;
//! - `/viewer/config.json`: what the page cannot know by itself, the UDP port on which
//!   this origin speaks MoQ over WebTransport (the HTTP port is a different one).
//!
//! The files are few and small, so a table of `include_str!` does the job of an embedding
//! crate.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

/// One embedded file: its path under `/viewer/`, its media type, its content.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_str!(concat!("../../viewer/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("js/list.js", JS),
    asset!("js/watch.js", JS),
    asset!("js/location.js", JS),
    asset!("js/controls.js", JS),
    asset!("js/player/player.js", JS),
    asset!("js/player/access.js", JS),
    asset!("js/player/mse.js", JS),
    asset!("js/player/catalog.js", JS),
    asset!("js/player/fmp4.js", JS),
    asset!("js/moqt/bytes.js", JS),
    asset!("js/moqt/messages.js", JS),
    asset!("js/moqt/data.js", JS),
    asset!("js/moqt/stream.js", JS),
    asset!("js/moqt/session.js", JS),
    asset!("js/interaction/panel.js", JS),
    asset!("js/interaction/client.js", JS),
    asset!("js/interaction/codec.js", JS),
    asset!("js/interaction/state.js", JS),
    asset!("js/interaction/mediatime.js", JS),
    asset!("js/interaction/track.js", JS),
];

const INDEX_HTML: &str = include_str!("../../viewer/index.html");
const WATCH_HTML: &str = include_str!("../../viewer/watch.html");

/// The viewer's routes; `moqt_port` is the UDP port of this origin's MoQ endpoint.
pub fn routes(moqt_port: u16) -> Router {
    Router::new()
        .route("/", get(|| async { html(INDEX_HTML) }))
        .route("/watch/{*broadcast}", get(|| async { html(WATCH_HTML) }))
        .route(
            "/viewer/config.json",
            get(move || async move { Json(serde_json::json!({ "moqtPort": moqt_port })) }),
        )
        .route("/viewer/{*path}", get(asset))
}

fn html(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                // The files change with the binary: revalidate rather than cache for long.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module a page imports is served: a missing entry would be a blank player.
    #[test]
    fn every_imported_module_is_embedded() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let dir = a.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            for line in a.body.lines().filter(|l| l.contains(" from '")) {
                let spec = line.split(" from '").nth(1).unwrap().trim_end_matches("';");
                let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    served.contains(&resolved.as_str()),
                    "{} imports {spec} ({resolved}), which is not embedded",
                    a.path
                );
            }
        }
        for page in [INDEX_HTML, WATCH_HTML] {
            for part in page.split("/viewer/").skip(1) {
                let path = part.split('"').next().unwrap();
                assert!(served.contains(&path), "page refers to /viewer/{path}");
            }
        }
    }
}
