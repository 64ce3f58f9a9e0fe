//! The node's local HTTP server (hyper's HTTP/1.1 server): `/metrics`, and
//! the dashboard at `/` with its live event stream (`/events`), its login
//! (`/login?token=…`) and the vessels' logs (`/logs?vessel=…`), both for a
//! session only.
//!
//! It listens on 127.0.0.1 unless told otherwise with an explicit setting
//! (`start --http ADDR --http-expose`): anyone who reaches it sees the
//! mesh's topology and `/metrics` (docs/guide.md says so). On loopback it
//! also answers only requests whose `Host` is a loopback name, so that a
//! web page elsewhere cannot read it through DNS rebinding.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use protocol::membership::PublicKey;
use tracing::{debug, info};

use super::OpsBook;
use crate::sync::lock;
use crate::vessel::Host;

/// The port of the HTTP server by default, on 127.0.0.1: next to the
/// mesh's 7646, unassigned by IANA. When it is taken (another node on this
/// machine) and no address was given, the OS picks a free port, which
/// `meshnode status` shows.
pub const DEFAULT_HTTP_PORT: u16 = 7680;

/// Connections served at once: a Prometheus server and a few browsers.
pub const MAX_HTTP_CONNECTIONS: usize = 64;

/// Log streams followed at once (each looks at its log a few times a
/// second).
pub const MAX_LOG_STREAMS: usize = 8;

/// How often a log stream looks for new records.
pub(super) const LOG_POLL: Duration = Duration::from_millis(300);

/// A client has this long to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head read.
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Where the HTTP server listens (`start --http`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpSetting {
    /// 127.0.0.1:[`DEFAULT_HTTP_PORT`], or a free port when taken.
    Default,
    Off,
    At(SocketAddr),
}

/// Parses `start --http`: `off`, `HOST:PORT` or `:PORT` (on 127.0.0.1).
pub fn parse_http(s: &str) -> Result<HttpSetting, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("none") {
        return Ok(HttpSetting::Off);
    }
    let full = match s.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => s.to_string(),
    };
    full.parse::<SocketAddr>()
        .map(HttpSetting::At)
        .map_err(|_| {
            format!("`{s}` is not an address: give HOST:PORT (e.g. 127.0.0.1:7680), :PORT, or off")
        })
}

/// Why the HTTP server did not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot serve HTTP on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error(
        "--http {addr} is not a loopback address: anyone who reaches it sees the mesh's \
         topology and metrics; add --http-expose to accept that (docs/guide.md, \"Watching a fleet\")"
    )]
    NotLoopback { addr: SocketAddr },
}

/// What the server reads.
pub struct HttpContext {
    pub host: Arc<Mutex<Host>>,
    pub ops: Arc<OpsBook>,
    /// This node's key: a login must be signed for it.
    pub node_key: PublicKey,
    pub log_streams: Arc<tokio::sync::Semaphore>,
}

/// Binds the server and serves it in a task; returns where it listens
/// (`None` when off). Call inside the runtime.
pub async fn start(
    setting: &HttpSetting,
    expose: bool,
    host: Arc<Mutex<Host>>,
    node_key: PublicKey,
) -> Result<Option<SocketAddr>, HttpError> {
    let listener = match setting {
        HttpSetting::Off => return Ok(None),
        HttpSetting::At(addr) => {
            if !addr.ip().is_loopback() && !expose {
                return Err(HttpError::NotLoopback { addr: *addr });
            }
            bind(*addr).await?
        }
        HttpSetting::Default => {
            let addr = SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT));
            match bind(addr).await {
                Ok(l) => l,
                Err(_) => bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?,
            }
        }
    };
    let local = listener.local_addr().map_err(|e| HttpError::Bind {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        reason: e.to_string(),
    })?;
    let ops = lock(&host).ops.clone();
    *lock(&ops.http_addr) = Some(local);
    info!("metrics at http://{local}/metrics, dashboard at http://{local}/ (`meshnode dashboard` logs in)");
    let ctx = Arc::new(HttpContext {
        host,
        ops,
        node_key,
        log_streams: Arc::new(tokio::sync::Semaphore::new(MAX_LOG_STREAMS)),
    });
    tokio::spawn(serve(listener, ctx, local));
    Ok(Some(local))
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, HttpError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| HttpError::Bind {
            addr,
            reason: e.to_string(),
        })
}

async fn serve(listener: tokio::net::TcpListener, ctx: Arc<HttpContext>, local: SocketAddr) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                debug!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // over the bound: dropped, the client retries
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(route(&ctx, local, req)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD_BYTES);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!("http connection: {e}");
            }
            drop(slot);
        });
    }
}

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .body(Full::new(body.into()).boxed_unsync())
        .expect("static headers")
}

pub fn text_response(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", body.into())
}

fn route(ctx: &HttpContext, local: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    if local.ip().is_loopback() && !loopback_host(req.headers().get("host")) {
        return text_response(
            StatusCode::MISDIRECTED_REQUEST,
            "this node's HTTP server answers only to a loopback Host (127.0.0.1, localhost)\n",
        );
    }
    if req.method() != hyper::Method::GET {
        return text_response(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET only\n");
    }
    let session = session_of(&req, local);
    let authed = session.is_some_and(|s| lock(&ctx.ops.logins).valid(&s));
    let query = req.uri().query().unwrap_or("").to_string();
    match req.uri().path() {
        "/metrics" => metrics(ctx),
        "/" | "/index.html" => full(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => full(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        "/style.css" => full(StatusCode::OK, "text/css; charset=utf-8", STYLE_CSS),
        "/events" => super::dashboard_stream::events(ctx, authed),
        "/login" => login(ctx, local, &query),
        "/logs" if !authed => text_response(
            StatusCode::FORBIDDEN,
            "logs only for a session: run `meshnode dashboard` and open the URL it prints\n",
        ),
        "/logs" => match param(&query, "vessel") {
            Some(v) => super::dashboard_stream::logs(ctx, &v),
            None => text_response(
                StatusCode::BAD_REQUEST,
                "/logs?vessel=ID: no vessel given\n",
            ),
        },
        _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn metrics(ctx: &HttpContext) -> Response<Body> {
    let snap = ctx.ops.snapshot.borrow().clone();
    let body = super::metrics::render(&ctx.ops.metrics, &snap, &ctx.host);
    full(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body,
    )
}

fn login(ctx: &HttpContext, local: SocketAddr, query: &str) -> Response<Body> {
    let Some(token) = param(query, "token") else {
        return text_response(StatusCode::BAD_REQUEST, "/login?token=…: no token given\n");
    };
    let trusted = lock(&ctx.ops.trusted).clone();
    let result = super::login::decode_token(&token)
        .and_then(|l| lock(&ctx.ops.logins).redeem(&l, &ctx.node_key, &trusted, super::unix_ms()));
    match result {
        Ok(session) => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header("location", "/")
            .header(
                "set-cookie",
                format!(
                    "{}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                    cookie_name(local),
                    super::login::SESSION_TTL.as_secs()
                ),
            )
            .body(Full::new(Bytes::new()).boxed_unsync())
            .expect("static headers"),
        Err(e) => text_response(StatusCode::FORBIDDEN, format!("login refused: {e}\n")),
    }
}

/// Cookies are per host, not per port: each node's session cookie is
/// named by its port, so that two nodes on one machine keep theirs apart.
fn cookie_name(local: SocketAddr) -> String {
    format!("meshnode_session_{}", local.port())
}

fn session_of(req: &Request<Incoming>, local: SocketAddr) -> Option<String> {
    let name = cookie_name(local);
    req.headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn loopback_host(host: Option<&hyper::header::HeaderValue>) -> bool {
    let Some(h) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        h.rsplit_once(':').map_or(h, |(n, _)| n)
    };
    matches!(name, "localhost" | "::1")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One query parameter, percent-decoded enough for hex and ids.
pub fn param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= super::login::MAX_LOGIN_TOKEN_CHARS)
}

/// A server-sent-events response over `stream`'s frames.
pub fn sse(stream: impl futures::Stream<Item = String> + Send + 'static) -> Response<Body> {
    let body = StreamBody::new(stream.map(|s| Ok::<_, Infallible>(Frame::data(Bytes::from(s)))));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-store")
        .body(BodyExt::boxed_unsync(body))
        .expect("static headers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_setting_parses_and_says_what_is_wrong() {
        assert_eq!(parse_http("off"), Ok(HttpSetting::Off));
        assert_eq!(
            parse_http(":9100"),
            Ok(HttpSetting::At("127.0.0.1:9100".parse().unwrap()))
        );
        assert_eq!(
            parse_http("0.0.0.0:80"),
            Ok(HttpSetting::At("0.0.0.0:80".parse().unwrap()))
        );
        let e = parse_http("localhost").unwrap_err();
        assert!(e.contains("`localhost` is not an address"), "{e}");
    }

    #[test]
    fn only_loopback_host_names_pass() {
        let ok = |h: &str| loopback_host(Some(&hyper::header::HeaderValue::from_str(h).unwrap()));
        assert!(ok("127.0.0.1:7680"));
        assert!(ok("localhost:7680"));
        assert!(ok("[::1]:7680"));
        assert!(!ok("evil.example:7680"));
        assert!(!ok("192.0.2.1"));
        assert!(!loopback_host(None));
    }
}
