//! Starting real services on free loopback ports.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// The cache `scripts/install-deps.sh` installs into.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KAFKA_ESM_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kafka-esm"),
        PathBuf::from,
    )
}

/// Finds a tool in the install cache or on PATH.
pub fn tool(name: &str) -> PathBuf {
    let cache = cache_dir();
    for dir in ["tansu/bin", "node/node_modules/.bin", "py/bin"] {
        let candidate = cache.join(dir).join(name);
        if candidate.exists() {
            return candidate;
        }
    }
    PathBuf::from(name)
}

/// Waits until something listens on `port`.
pub fn wait_port(port: u16, what: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A service process that dies with the test process (or when dropped).
#[derive(Debug)]
pub struct Service {
    child: Child,
    pub log: PathBuf,
}

impl Service {
    /// Runs `program args…` under a watchdog shell that kills it once this process is gone.
    pub fn spawn(program: &PathBuf, args: &[String], name: &str) -> Result<Self> {
        let log = std::env::temp_dir().join(format!("kafka-esm-{name}-{}.log", uuid::Uuid::new_v4()));
        let log_file = std::fs::File::create(&log)?;
        let script = r#"parent=$1; shift; "$@" & child=$!
trap 'kill $child 2>/dev/null; exit 0' TERM INT
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
kill $child 2>/dev/null; wait $child 2>/dev/null"#;
        let child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("watchdog")
            .arg(std::process::id().to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {} (run scripts/install-deps.sh)", program.display()))?;
        Ok(Self { child, log })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// A tansu broker with in-memory storage.
#[derive(Debug)]
pub struct Tansu {
    pub service: Service,
    pub port: u16,
    /// What clients should use: the advertised `host:port`.
    pub bootstrap: String,
}

impl Tansu {
    /// Listens on 127.0.0.1 and advertises itself there.
    pub fn start() -> Result<Self> {
        let port = free_port();
        Self::start_advertising(port, &format!("127.0.0.1:{port}"))
    }

    /// Listens on 127.0.0.1:`port` but advertises `advertised` (e.g. a TLS proxy in front).
    pub fn start_advertising(port: u16, advertised: &str) -> Result<Self> {
        let args = vec![
            "broker".to_owned(),
            "--listener-url".to_owned(),
            format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url".to_owned(),
            format!("tcp://{advertised}"),
            "--storage-engine".to_owned(),
            "memory://tansu/".to_owned(),
        ];
        let service = Service::spawn(&tool("tansu"), &args, "tansu")?;
        wait_port(port, "tansu", Duration::from_secs(30))?;
        Ok(Self { service, port, bootstrap: advertised.to_owned() })
    }
}

/// dynalite: DynamoDB in memory.
#[derive(Debug)]
pub struct Dynalite {
    pub service: Service,
    pub endpoint: String,
}

impl Dynalite {
    pub fn start() -> Result<Self> {
        let port = free_port();
        let args = vec!["--host".to_owned(), "127.0.0.1".to_owned(), "--port".to_owned(), port.to_string()];
        let service = Service::spawn(&tool("dynalite"), &args, "dynalite")?;
        wait_port(port, "dynalite", Duration::from_secs(30))?;
        Ok(Self { service, endpoint: format!("http://127.0.0.1:{port}") })
    }
}
