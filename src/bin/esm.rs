//! The `esm` command line; see `kafka_esm::cli`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kafka_esm::cli::main().await
}
