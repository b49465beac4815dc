//! kafka-esm's test kit: real local services started on free ports (tansu, dynalite, stunnel),
//! an in-repo Lambda Invoke endpoint that follows the real API's documented error behaviour, and
//! helpers to produce and inspect Kafka data with an independent librdkafka client.
//!
//! Services are started through a watchdog shell that ends them when the test process exits, so
//! a failed or killed test run leaves nothing behind. Every wait has a timeout.

pub mod invoke_stub;
pub mod kafka;
pub mod services;
pub mod tls;

pub use invoke_stub::{InvokeStub, StubBehaviour};
pub use services::{free_port, Dynalite, Tansu};
