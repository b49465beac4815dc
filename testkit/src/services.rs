//! Starting real services on free loopback ports, and stopping them with everything they started.
//!
//! Each service runs under a small watchdog shell in a process group of its own: when the test
//! process goes away (even by SIGKILL) the watchdog ends the whole group, and dropping a
//! [`Service`] does the same at once. A service that starts children of its own (a Node.js
//! wrapper, `cargo lambda watch`) therefore never outlives the test.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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

/// The watchdog: runs the service, and ends its whole process group (the service, anything it
/// started, and itself) when the test process is gone, when the service exits, or on SIGTERM.
/// Group members get 5 s after SIGTERM before SIGKILL.
const WATCHDOG: &str = r#"parent=$1; shift
"$@" & child=$!
stop() {
  trap '' TERM INT
  kill -TERM 0 2>/dev/null
  for _ in $(seq 50); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
  kill -KILL 0
}
trap stop TERM INT
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
stop"#;

/// A service process that dies with the test process (or when dropped).
#[derive(Debug)]
pub struct Service {
    child: Child,
    pub log: PathBuf,
}

impl Service {
    /// Runs `program args…` under the watchdog, output to a log file in the temp directory.
    pub fn spawn(program: &PathBuf, args: &[String], name: &str) -> Result<Self> {
        Self::spawn_in(program, args, name, None)
    }

    /// Like [`Service::spawn`], in the working directory `dir` when given.
    pub fn spawn_in(program: &PathBuf, args: &[String], name: &str, dir: Option<&Path>) -> Result<Self> {
        let log = std::env::temp_dir().join(format!("kafka-esm-{name}-{}.log", uuid::Uuid::new_v4()));
        let log_file = std::fs::File::create(&log)?;
        let mut command = Command::new("bash");
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let child = command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(std::process::id().to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // Its own process group, so the whole service can be signalled at once.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {} (run scripts/install-deps.sh)", program.display()))?;
        Ok(Self { child, log })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The watchdog's pid, which is also the service's process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // The whole group: the watchdog turns SIGTERM into "stop everything, firmly after 5 s".
        let _ = Command::new("kill").arg("-TERM").arg("--").arg(format!("-{}", self.child.id())).status();
        let _ = self.child.wait();
    }
}

/// Where a tansu broker keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TansuStorage {
    /// `memory://tansu/`: fastest; ListOffsets by timestamp looks at when each batch was
    /// written, not at the records' timestamps.
    Memory,
    /// tansu's libSQL engine on the database file at this path (needs tansu built with the
    /// `libsql` feature, as `scripts/install-deps.sh` does); answers ListOffsets by timestamp
    /// from the records' timestamps.
    Sqlite(PathBuf),
}

impl TansuStorage {
    /// The value of tansu's `--storage-engine`. tansu 0.6 resolves a `sqlite://` URL against its
    /// working directory even when the path is absolute, so a sqlite broker runs in the
    /// database's directory ([`TansuStorage::working_dir`]) and is given the file name.
    pub fn url(&self) -> String {
        match self {
            Self::Memory => "memory://tansu/".to_owned(),
            Self::Sqlite(path) => {
                format!("sqlite://{}", path.file_name().map_or_else(|| "tansu.db".into(), |n| n.to_string_lossy()))
            }
        }
    }

    /// The directory tansu must run in for [`TansuStorage::url`] to name the right file.
    pub fn working_dir(&self) -> Option<&Path> {
        match self {
            Self::Memory => None,
            Self::Sqlite(path) => path.parent(),
        }
    }
}

/// A tansu broker.
#[derive(Debug)]
pub struct Tansu {
    pub service: Service,
    pub port: u16,
    /// What clients should use: the advertised `host:port`.
    pub bootstrap: String,
    pub storage: TansuStorage,
    /// Holds a sqlite database for as long as the broker lives.
    _data: Option<tempfile::TempDir>,
}

impl Tansu {
    /// In-memory storage; listens on 127.0.0.1 and advertises itself there.
    pub fn start() -> Result<Self> {
        let port = free_port();
        Self::start_advertising(port, &format!("127.0.0.1:{port}"))
    }

    /// Listens on 127.0.0.1:`port` but advertises `advertised` (e.g. a TLS proxy in front).
    pub fn start_advertising(port: u16, advertised: &str) -> Result<Self> {
        Self::launch(port, advertised, TansuStorage::Memory, None)
    }

    /// The sqlite engine, in a fresh database in a temporary directory.
    pub fn start_sqlite() -> Result<Self> {
        let dir = tempfile::tempdir().context("create a directory for tansu's database")?;
        let storage = TansuStorage::Sqlite(dir.path().join("tansu.db"));
        let port = free_port();
        Self::launch(port, &format!("127.0.0.1:{port}"), storage, Some(dir))
    }

    /// The sqlite engine on a database the caller keeps (it may already hold data: a restart).
    pub fn start_sqlite_at(path: &Path) -> Result<Self> {
        let port = free_port();
        Self::launch(port, &format!("127.0.0.1:{port}"), TansuStorage::Sqlite(path.to_owned()), None)
    }

    fn launch(port: u16, advertised: &str, storage: TansuStorage, data: Option<tempfile::TempDir>) -> Result<Self> {
        let args = vec![
            "broker".to_owned(),
            "--listener-url".to_owned(),
            format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url".to_owned(),
            format!("tcp://{advertised}"),
            "--storage-engine".to_owned(),
            storage.url(),
        ];
        let service = Service::spawn_in(&tool("tansu"), &args, "tansu", storage.working_dir())?;
        if let Err(e) = wait_port(port, "tansu", Duration::from_secs(30)) {
            bail!("{e}; tansu's log:\n{}", service.log_text());
        }
        Ok(Self { service, port, bootstrap: advertised.to_owned(), storage, _data: data })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Running, and not a zombie waiting to be reaped.
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_owned()))
            .is_some_and(|rest| !rest.starts_with('Z'))
    }

    /// A service that starts a child of its own: dropping the service ends both.
    #[test]
    fn dropping_a_service_ends_its_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
        let service = Service::spawn(&PathBuf::from("bash"), &["-c".to_owned(), script], "group-test").expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(10);
        let grandchild = loop {
            if let Ok(pid) = std::fs::read_to_string(&pid_file)
                && !pid.trim().is_empty()
            {
                break pid.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "the service did not start its child");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(alive(&grandchild));
        drop(service);
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(&grandchild) {
            assert!(Instant::now() < deadline, "the service's child survived the service");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn storage_urls_are_what_tansu_expects() {
        assert_eq!(TansuStorage::Memory.url(), "memory://tansu/");
        let sqlite = TansuStorage::Sqlite("/tmp/x/tansu.db".into());
        assert_eq!(sqlite.url(), "sqlite://tansu.db");
        assert_eq!(sqlite.working_dir(), Some(Path::new("/tmp/x")));
    }
}
