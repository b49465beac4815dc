//! `lambda-front`: what `cargo lambda watch` 1.9.2 does not emulate, in front of it, for one
//! function (the poller):
//!
//! - Runtime API (`/.rt/<function>/…`): forwarded to watch; the `lambda-runtime-deadline-ms`
//!   header of each delivered invocation is set to now + `--timeout-ms` (watch always sends
//!   600000, i.e. 1970-01-01T00:10:00Z, so the poller's budget would be 0). Deliveries and
//!   results are logged with their times.
//! - Invoke API (`/2015-03-31/functions/<name>/invocations`): `X-Amz-Invocation-Type: Event`
//!   gets 202 at once and the invoke is forwarded to watch in the background (watch answers every
//!   invoke only when the function returns, so an asynchronous self-invoke would otherwise block
//!   until the successor ended). Synchronous invokes are forwarded unchanged.
//! - Anything else (GetFunction…): 404. With `--only-lambda-apis` watch would queue an unknown
//!   path as an invoke of its default function, which never returns here.
//!
//! The log (`--log`, JSON lines with `t` in epoch seconds) is what `handoff-report` reads:
//! `delivered {rid, deadline, payload}`, `returned|failed {rid, result}`, `async-invoke
//! {function, payload}`, `async-invoke-done|async-invoke-error`, `front-error`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use clap::Args;
use kafka_esm_testkit::kafka::epoch_s;
use serde_json::{Value, json};

use crate::http::{forward, read_body};

#[derive(Debug, Args)]
pub struct FrontArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long)]
    listen: u16,
    /// `cargo lambda watch`'s URL, e.g. http://127.0.0.1:49001.
    #[arg(long)]
    watch: String,
    /// The function whose Runtime API deliveries get a real deadline.
    #[arg(long, default_value = "poller")]
    function: String,
    /// The function timeout: deadline = delivery time + this.
    #[arg(long)]
    timeout_ms: u64,
    /// Where to append the JSON-lines log.
    #[arg(long)]
    log: PathBuf,
}

struct Front {
    watch: String,
    rt_prefix: String,
    timeout_ms: u64,
    log: Mutex<std::fs::File>,
}

impl Front {
    fn log(&self, mut event: Value) {
        if event.get("t").is_none() {
            event["t"] = json!(epoch_s());
        }
        let mut file = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        // The log is the report's input: a write error would show up as missing events there.
        append_line(&mut file, &event);
    }
}

/// One event, one `write` on the append-mode log: the async-invoke tasks write through their own
/// handle, and a line written in pieces interleaved with theirs (the handoff report then failed
/// to parse `{{"event"…`).
fn append_line(file: &mut std::fs::File, event: &Value) {
    let _ = file.write_all(format!("{event}\n").as_bytes());
}

pub async fn run(args: FrontArgs) -> Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .with_context(|| format!("open {}", args.log.display()))?;
    let watch = args.watch.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let front = Arc::new(Front {
        watch,
        rt_prefix: format!("/.rt/{}/", args.function),
        timeout_ms: args.timeout_ms,
        log: Mutex::new(log),
    });
    let app = Router::new().fallback(handle).with_state(front);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.listen))
        .await
        .with_context(|| format!("listen on 127.0.0.1:{}", args.listen))?;
    println!("lambda front on 127.0.0.1:{} -> {}", args.listen, args.watch);
    axum::serve(listener, app).with_graceful_shutdown(crate::terminated()).await?;
    Ok(())
}

async fn handle(State(front): State<Arc<Front>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let result = match read_body(body).await {
        Ok(body) => {
            if path.starts_with(&front.rt_prefix) {
                runtime(&front, parts.method, &path, &parts.headers, body).await
            } else if path.starts_with("/2015-03-31/functions/") && parts.uri.path().ends_with("/invocations") {
                invoke(&front, parts.method, &path, &parts.headers, body).await
            } else {
                let detail = format!("{} {path} is not emulated", parts.method);
                Ok((
                    StatusCode::NOT_FOUND,
                    [("content-type", "application/json")],
                    json!({"detail": detail}).to_string(),
                )
                    .into_response())
            }
        }
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| {
        // An emulator: report and keep serving.
        front.log(json!({"event": "front-error", "path": path, "error": format!("{e:#}")}));
        (StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response()
    })
}

fn json_or_null(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

async fn runtime(front: &Front, method: Method, path: &str, headers: &HeaderMap, body: Bytes) -> Result<Response> {
    let mut answer = forward(&front.watch, method, path, headers, body.clone()).await?;
    if path.ends_with("/runtime/invocation/next") && answer.status == StatusCode::OK {
        let now = epoch_s();
        let deadline_ms = (now * 1000.0) as u64 + front.timeout_ms;
        answer.headers.insert("lambda-runtime-deadline-ms", HeaderValue::from(deadline_ms));
        let rid = answer.headers.get("lambda-runtime-aws-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        front.log(json!({
            "event": "delivered", "t": now, "rid": rid, "deadline": deadline_ms as f64 / 1000.0,
            "payload": json_or_null(&answer.body),
        }));
    } else if path.contains("/runtime/invocation/") && (path.ends_with("/response") || path.ends_with("/error")) {
        let rid = path.rsplit('/').nth(1).unwrap_or_default();
        let result = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        let event = if path.ends_with("/response") { "returned" } else { "failed" };
        front.log(json!({"event": event, "rid": rid, "result": result}));
    }
    Ok(answer.into_response())
}

async fn invoke(front: &Front, method: Method, path: &str, headers: &HeaderMap, body: Bytes) -> Result<Response> {
    let name = path.split('/').nth(3).unwrap_or_default().to_owned();
    let kind = headers.get("x-amz-invocation-type").and_then(|v| v.to_str().ok()).unwrap_or("RequestResponse");
    if kind != "Event" {
        return Ok(forward(&front.watch, method, path, headers, body).await?.into_response());
    }
    front.log(json!({"event": "async-invoke", "function": name, "payload": json_or_null(&body)}));
    let mut headers = headers.clone();
    headers.remove("x-amz-invocation-type");
    let (watch, path) = (front.watch.clone(), path.to_owned());
    // The log outlives this request: hand the task its own reference.
    let log = front.log.lock().unwrap_or_else(PoisonError::into_inner).try_clone()?;
    tokio::spawn(async move {
        let event = match forward(&watch, method, &path, &headers, body).await {
            Ok(answer) => {
                let text = String::from_utf8_lossy(&answer.body);
                let text: String = text.chars().take(500).collect();
                json!({"event": "async-invoke-done", "function": name, "status": answer.status.as_u16(), "body": text})
            }
            Err(e) => json!({"event": "async-invoke-error", "function": name, "error": format!("{e:#}")}),
        };
        let mut event = event;
        event["t"] = json!(epoch_s());
        let mut log = log;
        append_line(&mut log, &event);
    });
    Ok((StatusCode::ACCEPTED, [("content-type", "application/json")], "").into_response())
}
