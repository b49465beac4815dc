//! A function in memory: records every invoke (which partition, which offsets), can be slow or
//! fail, and measures how many invokes of one partition were ever in flight at once — the
//! number that must never exceed one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::delivery::invoke::{InvokeError, InvokeOutcome, Invoker};

/// The function and what it saw. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryInvoker {
    inner: Arc<Mutex<Calls>>,
}

#[derive(Debug, Default)]
struct Calls {
    /// `topic-partition` → every offset delivered, in invoke order (retries repeat them).
    delivered: BTreeMap<String, Vec<i64>>,
    in_flight: BTreeMap<String, usize>,
    max_in_flight: BTreeMap<String, usize>,
    /// Invokes in flight at once, whatever their partitions, now and at most.
    all_in_flight: usize,
    max_all_in_flight: usize,
    invokes: usize,
    delay: Duration,
    /// Invokes still to fail with a function error.
    failures_left: usize,
    /// The timeout the function reports (`None`: it cannot be read).
    timeout: Option<Duration>,
}

/// One poller's handle on the function: its invokes hang forever once `dead` fires.
#[derive(Debug, Clone)]
pub struct PollerInvoker {
    function: MemoryInvoker,
    dead: CancellationToken,
}

impl MemoryInvoker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every invoke takes this long.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// The function reports `timeout` as its configured timeout.
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        self.lock().timeout = timeout;
    }

    /// The next `n` invokes fail with a function error.
    pub fn fail_next(&self, n: usize) {
        self.lock().failures_left = n;
    }

    /// Offsets delivered per `topic-partition`, in invoke order.
    pub fn delivered(&self) -> BTreeMap<String, Vec<i64>> {
        self.lock().delivered.clone()
    }

    /// The most invokes of one partition that were in flight at once, over all partitions.
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight.values().copied().max().unwrap_or(0)
    }

    /// The most invokes in flight at once, over every partition.
    pub fn max_concurrent_invokes(&self) -> usize {
        self.lock().max_all_in_flight
    }

    pub fn invokes(&self) -> usize {
        self.lock().invokes
    }

    /// This function as one poller sees it.
    pub fn for_poller(&self, dead: CancellationToken) -> PollerInvoker {
        PollerInvoker { function: self.clone(), dead }
    }

    async fn call(&self, payload: &Bytes) -> Result<InvokeOutcome, InvokeError> {
        let event: serde_json::Value = serde_json::from_slice(payload).map_err(|e| InvokeError::InvalidRequest {
            status: 400,
            code: "InvalidRequestContentException".into(),
            message: e.to_string(),
        })?;
        let records = event.get("records").and_then(serde_json::Value::as_object).cloned().unwrap_or_default();
        let delay = {
            let mut calls = self.lock();
            calls.invokes += 1;
            calls.all_in_flight += 1;
            calls.max_all_in_flight = calls.max_all_in_flight.max(calls.all_in_flight);
            for (key, list) in &records {
                let offsets = list.as_array().into_iter().flatten().filter_map(|r| r.get("offset")?.as_i64());
                calls.delivered.entry(key.clone()).or_default().extend(offsets);
                let now = {
                    let n = calls.in_flight.entry(key.clone()).or_default();
                    *n += 1;
                    *n
                };
                let max = calls.max_in_flight.entry(key.clone()).or_default();
                *max = (*max).max(now);
            }
            calls.delay
        };
        tokio::time::sleep(delay).await;
        let mut calls = self.lock();
        calls.all_in_flight -= 1;
        for key in records.keys() {
            if let Some(n) = calls.in_flight.get_mut(key) {
                *n = n.saturating_sub(1);
            }
        }
        if calls.failures_left > 0 {
            calls.failures_left -= 1;
            return Ok(InvokeOutcome::FunctionError {
                kind: "Unhandled".into(),
                body: Bytes::from_static(b"{\"errorMessage\":\"injected\"}"),
            });
        }
        Ok(InvokeOutcome::Success { body: Bytes::from_static(b"null") })
    }
}

impl Invoker for MemoryInvoker {
    async fn invoke(&self, _function: &str, payload: Bytes) -> Result<InvokeOutcome, InvokeError> {
        self.call(&payload).await
    }

    async fn timeout(&self, _function: &str) -> Option<Duration> {
        self.lock().timeout
    }
}

impl Invoker for PollerInvoker {
    async fn invoke(&self, _function: &str, payload: Bytes) -> Result<InvokeOutcome, InvokeError> {
        if self.dead.is_cancelled() {
            std::future::pending::<()>().await;
        }
        // The function runs to its end whatever happens to the poller; a dead poller never sees
        // the answer.
        let function = self.function.clone();
        let call = tokio::spawn(async move { function.call(&payload).await });
        tokio::select! {
            out = call => match out {
                Ok(out) if !self.dead.is_cancelled() => out,
                Ok(_) => std::future::pending().await,
                Err(e) => Err(InvokeError::Transport { message: e.to_string() }),
            },
            () = self.dead.cancelled() => std::future::pending().await,
        }
    }

    async fn timeout(&self, function: &str) -> Option<Duration> {
        self.function.timeout(function).await
    }
}
