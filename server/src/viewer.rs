//! The viewer web app: static files from `viewer/`, embedded in the binary at build time
//! (no runtime download, no CDN), and served over the origin's HTTP port.
//!
//! - `/`: the channel list; `/watch/<broadcast>`: the player page for one broadcast;
//! - `/viewer/...`: the app's scripts and style sheet;
//! - `/viewer/config.json`: what the page cannot know by itself, the UDP port on which
//!   this origin speaks MoQ over WebTransport (the HTTP port is a different one), and the
//!   relays (`--viewer-relay`) it may send a viewer's token to: a `?relay=` outside that
//!   list is watched anonymously.
//!
//! Pages and scripts carry a Content-Security-Policy ([`page_policy`]): scripts and
//! styles from this origin only (no inline ones), no framing (the Tip button cannot be
//! clickjacked), and connections to this origin and to https:// relays (WebTransport).
//!
//! The files are few and small, so a table of `include_str!` does the job of an embedding
//! crate.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

/// The viewer's options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ViewerArgs {
    /// A relay the viewer page may send a viewer's token to, as `?relay=` names it
    /// (`https://edge1.example.com:4443`); repeat for several. The page watches through
    /// any other `?relay=` anonymously.
    #[arg(
        long = "viewer-relay",
        env = "STAGECAST_VIEWER_RELAY",
        value_delimiter = ',',
        value_parser = parse_relay_origin
    )]
    pub viewer_relays: Vec<String>,
}

/// Why a `--viewer-relay` is not usable.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RelayUrlError {
    #[error("{0:?} is not a URL: {1}")]
    Unparsable(String, String),
    #[error("{0:?}: a viewer relay is an https:// URL (WebTransport)")]
    Scheme(String),
    #[error("{0:?}: name the relay only (https://host:port), without user, path or query")]
    NotAnOrigin(String),
}

/// `https://host[:port][/]` as the origin a browser computes for it (`https://host:port`,
/// the port left out when it is 443, the host in lower case).
pub fn parse_relay_origin(text: &str) -> Result<String, RelayUrlError> {
    let text = text.trim();
    let uri: Uri = text.parse().map_err(|e: axum::http::uri::InvalidUri| {
        RelayUrlError::Unparsable(text.into(), e.to_string())
    })?;
    if uri.scheme_str() != Some("https") {
        return Err(RelayUrlError::Scheme(text.into()));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| RelayUrlError::NotAnOrigin(text.into()))?;
    let path_ok = matches!(uri.path(), "" | "/");
    if authority.as_str().contains('@') || !path_ok || uri.query().is_some() {
        return Err(RelayUrlError::NotAnOrigin(text.into()));
    }
    let host = authority.host().to_ascii_lowercase();
    Ok(match authority.port_u16() {
        Some(port) if port != 443 => format!("https://{host}:{port}"),
        _ => format!("https://{host}"),
    })
}

/// What the viewer's routes need to know about this origin.
#[derive(Debug, Clone)]
pub struct ViewerConfig {
    /// The UDP port of this origin's MoQ endpoint.
    pub moqt_port: u16,
    /// Relays a viewer's token may go to, as origins ([`parse_relay_origin`]).
    pub relays: Vec<String>,
    /// Whether the page may fetch certificate fingerprints from plain-HTTP loopback
    /// ports (`&cert=http://localhost:…`): a development set-up, without a real
    /// certificate.
    pub loopback_http: bool,
}

/// The Content-Security-Policy of the viewer's pages and scripts.
pub fn page_policy(loopback_http: bool) -> String {
    // https: for WebTransport to this origin's UDP port and to relays (a ?relay= outside
    // the list may still be watched anonymously).
    let mut connect = String::from("'self' https:");
    if loopback_http {
        connect.push_str(" http://localhost:* http://127.0.0.1:*");
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         media-src 'self' blob:; connect-src {connect}; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

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
    asset!("js/player/adaptive.js", JS),
    asset!("js/player/abr.js", JS),
    asset!("js/player/estimator.js", JS),
    asset!("js/player/feed.js", JS),
    asset!("js/player/ladder.js", JS),
    asset!("js/player/probe.js", JS),
    asset!("js/moqt/bytes.js", JS),
    asset!("js/moqt/messages.js", JS),
    asset!("js/moqt/data.js", JS),
    asset!("js/moqt/stream.js", JS),
    asset!("js/moqt/session.js", JS),
    asset!("js/interaction/panel.js", JS),
    asset!("js/interaction/guest.js", JS),
    asset!("js/interaction/badge.js", JS),
    asset!("js/interaction/client.js", JS),
    asset!("js/interaction/codec.js", JS),
    asset!("js/interaction/state.js", JS),
    asset!("js/interaction/mediatime.js", JS),
    asset!("js/interaction/track.js", JS),
];

const INDEX_HTML: &str = include_str!("../../viewer/index.html");
const WATCH_HTML: &str = include_str!("../../viewer/watch.html");

/// The viewer's routes.
pub fn routes(config: ViewerConfig) -> Router {
    let policy = HeaderValue::from_str(&page_policy(config.loopback_http)).unwrap_or(
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    let body = serde_json::json!({ "moqtPort": config.moqt_port, "relays": config.relays });
    let (p1, p2, p3) = (policy.clone(), policy.clone(), policy);
    Router::new()
        .route("/", get(move || async move { file(INDEX_HTML, HTML, &p1) }))
        .route(
            "/watch/{*broadcast}",
            get(move || async move { file(WATCH_HTML, HTML, &p2) }),
        )
        .route(
            "/viewer/config.json",
            get(move || async move { Json(body) }),
        )
        .route(
            "/viewer/{*path}",
            get(move |path: Path<String>| async move { asset(path, &p3) }),
        )
}

const HTML: &str = "text/html; charset=utf-8";

/// An embedded file, with the page policy; the files change with the binary, so they are
/// revalidated rather than cached for long.
fn file(body: &'static str, content_type: &'static str, policy: &HeaderValue) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, policy.clone()),
        ],
        body,
    )
        .into_response()
}

fn asset(Path(path): Path<String>, policy: &HeaderValue) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => file(a.body, a.content_type, policy),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_become_origins() {
        assert_eq!(
            parse_relay_origin("https://Edge1.Example.com:4443/"),
            Ok("https://edge1.example.com:4443".into())
        );
        assert_eq!(
            parse_relay_origin("https://edge.example.com:443"),
            Ok("https://edge.example.com".into())
        );
        assert!(matches!(
            parse_relay_origin("http://edge:4443"),
            Err(RelayUrlError::Scheme(_))
        ));
        for bad in [
            "https://u@edge:4443",
            "https://edge:4443/x",
            "https://edge:4443/?a=1",
        ] {
            assert!(
                matches!(parse_relay_origin(bad), Err(RelayUrlError::NotAnOrigin(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_relay_origin("not a url"),
            Err(RelayUrlError::Unparsable(..))
        ));
    }

    /// Whether `page` has an attribute such as ` onclick=`.
    fn has_event_attribute(page: &str) -> bool {
        page.match_indices(" on").any(|(i, _)| {
            let rest = &page[i + 3..];
            let name_len = rest.chars().take_while(|c| c.is_ascii_lowercase()).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    /// No inline script or style: the pages work under a policy that forbids them.
    #[test]
    fn pages_have_no_inline_script_or_style() {
        for page in [INDEX_HTML, WATCH_HTML] {
            assert!(!page.contains(" style="), "inline style attribute");
            assert!(!page.contains("<style"), "inline style element");
            assert!(!has_event_attribute(page), "inline event handler");
            for script in page.split("<script").skip(1) {
                let open = script.split('>').next().unwrap_or_default();
                assert!(open.contains(" src="), "inline script: <script{open}>");
            }
        }
        let policy = page_policy(false);
        assert!(policy.contains("script-src 'self';"));
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("unsafe-inline"));
        assert!(!policy.contains("http://localhost"));
        assert!(page_policy(true).contains("http://localhost:*"));
    }

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
