//! Plain HTTP/1.1 forwarding for the fronts and proxies: one upstream connection per request
//! (no stale keep-alive connection to retry on), hop-by-hop headers dropped both ways.

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the ones the
/// forwarder sets itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
];

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in HOP_BY_HOP {
        out.remove(*name);
    }
    out
}

/// An upstream answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The answer as a response to the downstream client.
    pub fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = end_to_end(&self.headers);
        response
    }
}

/// Sends `method path` with `headers` and `body` to `upstream` (`host:port`) and reads the whole
/// answer.
pub async fn forward(upstream: &str, method: Method, path: &str, headers: &HeaderMap, body: Bytes) -> Result<Answer> {
    let stream = tokio::net::TcpStream::connect(upstream).await.with_context(|| format!("connect to {upstream}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("HTTP handshake")?;
    tokio::spawn(connection);
    let mut request = hyper::Request::builder().method(method).uri(path).body(Full::new(body))?;
    *request.headers_mut() = end_to_end(headers);
    request.headers_mut().insert("host", HeaderValue::from_str(upstream)?);
    let response = sender.send_request(request).await.with_context(|| format!("request to {upstream}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.context("read the answer")?.to_bytes();
    Ok(Answer { status, headers, body })
}

/// A JSON GET or POST (empty body) to `url` (`http://host:port/path`); the parsed answer.
pub async fn json(method: Method, url: &str) -> Result<serde_json::Value> {
    let rest = url.strip_prefix("http://").with_context(|| format!("{url}: only http:// URLs"))?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let answer = forward(host, method, &path, &HeaderMap::new(), Bytes::new()).await?;
    if !answer.status.is_success() {
        anyhow::bail!("{url}: HTTP {}", answer.status);
    }
    serde_json::from_slice(&answer.body).with_context(|| format!("{url}: not JSON"))
}

/// The whole body of a request (the fronts read it before forwarding).
pub async fn read_body(body: Body) -> Result<Bytes> {
    Ok(axum::body::to_bytes(body, 64 * 1024 * 1024).await?)
}
