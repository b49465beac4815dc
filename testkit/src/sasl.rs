//! Brokers that authenticate: tansu with SASL/SCRAM users, and a SASL front for the mechanisms
//! tansu does not check (PLAIN, and OAUTHBEARER as MSK IAM uses it).
//!
//! [`ScramTansu`]: tansu keeps SCRAM users in its storage, so it runs on the sqlite engine (in a
//! temporary directory). Users are created with `tansu user create` on the broker started without
//! `--authentication`, then the broker is restarted with it; changing a password restarts it the
//! same way (topics, records and committed offsets survive in the sqlite file).
//!
//! [`SaslFront`]: a TCP front that speaks just enough Kafka to authenticate a client — it relays
//! `ApiVersions` to the broker behind it, answers `SaslHandshake` and `SaslAuthenticate` itself,
//! and once the client is authenticated relays bytes both ways. It refuses every other request
//! before authentication, as a broker does. PLAIN checks user and password; OAUTHBEARER checks an
//! MSK IAM token's shape the way MSK would without AWS: a base64url SigV4-presigned
//! `kafka-cluster:Connect` URL for the expected Region, access key, session token, with a signing
//! time within the token's 15 minutes. The signature itself is not verified (that needs the
//! secret key on the broker side, i.e. AWS); the byte-compatibility test in `src/msk_iam.rs`
//! covers it. Every attempt is recorded for the tests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::services::{Service, free_port, tool, wait_port};

/// A SCRAM mechanism as `tansu user create --mechanism` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scram {
    Sha256,
    Sha512,
}

impl Scram {
    const fn cli(self) -> &'static str {
        match self {
            Self::Sha256 => "scram256",
            Self::Sha512 => "scram512",
        }
    }
}

/// tansu on the sqlite engine, restartable with or without `--authentication`.
#[derive(Debug)]
pub struct ScramTansu {
    service: Option<Service>,
    dir: tempfile::TempDir,
    /// The plain listener on 127.0.0.1.
    pub port: u16,
    /// What tansu advertises (e.g. a TLS front's `localhost:PORT`).
    pub advertised: String,
    authenticated: bool,
}

impl ScramTansu {
    /// Starts without authentication (create topics and users now), advertising `advertised`.
    ///
    /// # Errors
    /// tansu did not start.
    pub fn start(advertised: &str) -> Result<Self> {
        let port = free_port();
        let mut this = Self {
            service: None,
            dir: tempfile::tempdir()?,
            port,
            advertised: advertised.to_owned(),
            authenticated: false,
        };
        this.run(false)?;
        Ok(this)
    }

    /// `tcp://127.0.0.1:PORT`, the broker's own listener (bypasses any front).
    pub fn direct(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn run(&mut self, authentication: bool) -> Result<()> {
        if self.service.take().is_some() {
            // The old broker gets SIGTERM; its port must be free before the new one binds it
            // (and before `wait_port` could mistake the old listener for the new one).
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                if std::time::Instant::now() > deadline {
                    bail!("the previous tansu still listens on {}", self.port);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // The sqlite URL is relative to tansu's working directory: run it in the temp dir.
        let tansu = tool("tansu");
        let mut script = format!(
            "cd '{}' && exec '{}' broker --listener-url tcp://127.0.0.1:{} --advertised-listener-url tcp://{} --storage-engine sqlite://tansu.db",
            self.dir.path().display(),
            tansu.display(),
            self.port,
            self.advertised
        );
        if authentication {
            script.push_str(" --authentication");
        }
        let service =
            Service::spawn(&PathBuf::from("bash"), &["-c".to_owned(), script], "tansu-scram").context("start tansu")?;
        wait_port(self.port, "tansu", Duration::from_secs(30))?;
        self.service = Some(service);
        self.authenticated = authentication;
        Ok(())
    }

    /// Creates or replaces users (restarting without authentication for it), then restarts
    /// with `--authentication`.
    ///
    /// # Errors
    /// tansu or `tansu user create` failed.
    pub fn set_users(&mut self, users: &[(&str, &str, Scram)]) -> Result<()> {
        if self.authenticated {
            self.run(false)?;
        }
        for (name, password, mechanism) in users {
            let out = Command::new(tool("tansu"))
                .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
                .args(["--mechanism", mechanism.cli(), name, password])
                .output()
                .context("run tansu user create")?;
            if !out.status.success() {
                bail!("tansu user create {name}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        self.run(true)
    }

    /// The broker's log so far.
    pub fn log_text(&self) -> String {
        self.service.as_ref().map(Service::log_text).unwrap_or_default()
    }
}

/// Which mechanism a [`SaslFront`] accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontMechanism {
    /// SASL/PLAIN with these users (user → password); change them with [`SaslFront::set_user`].
    Plain(HashMap<String, String>),
    /// OAUTHBEARER with MSK IAM tokens.
    MskIam(IamPolicy),
}

/// What the OAUTHBEARER front accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamPolicy {
    pub region: String,
    pub access_key_id: String,
    pub session_token: Option<String>,
    /// `false`: the principal lacks `kafka-cluster:Connect` (MSK answers "Access denied").
    pub allow_connect: bool,
}

/// One authentication attempt as the front saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub mechanism: String,
    /// PLAIN: the user name; OAUTHBEARER: the access key id from the token.
    pub identity: String,
    pub accepted: bool,
    /// Why it was refused (empty when accepted).
    pub reason: String,
}

#[derive(Debug)]
struct FrontState {
    mechanism: Mutex<FrontMechanism>,
    attempts: Mutex<Vec<Attempt>>,
    upstream: String,
    /// Bumped by [`SaslFront::drop_connections`]: every relayed connection closes.
    generation: tokio::sync::watch::Sender<u64>,
}

/// A SASL-checking front for a plain broker.
#[derive(Debug, Clone)]
pub struct SaslFront {
    state: Arc<FrontState>,
    pub port: u16,
}

impl SaslFront {
    /// Listens on a free 127.0.0.1 port and relays authenticated clients to `upstream`.
    pub async fn start(upstream: &str, mechanism: FrontMechanism) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(FrontState {
            mechanism: Mutex::new(mechanism),
            attempts: Mutex::new(Vec::new()),
            upstream: upstream.to_owned(),
            generation: tokio::sync::watch::channel(0).0,
        });
        let accept_state = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let _ = serve(state, client).await;
                });
            }
        });
        Ok(Self { state, port })
    }

    /// Adds a PLAIN user or changes its password.
    pub fn set_user(&self, user: &str, password: &str) {
        if let FrontMechanism::Plain(users) = &mut *self.state.mechanism.lock().unwrap() {
            users.insert(user.to_owned(), password.to_owned());
        }
    }

    /// Grants or revokes `kafka-cluster:Connect` for the OAUTHBEARER front.
    pub fn allow_connect(&self, allow: bool) {
        if let FrontMechanism::MskIam(policy) = &mut *self.state.mechanism.lock().unwrap() {
            policy.allow_connect = allow;
        }
    }

    /// Closes every connection, so clients reconnect and authenticate again (as after a broker
    /// restart).
    pub fn drop_connections(&self) {
        self.state.generation.send_modify(|g| *g += 1);
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.state.attempts.lock().unwrap().clone()
    }
}

/// One Kafka request frame's header fields the front needs.
struct Request {
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    /// The body after the request header.
    body: Vec<u8>,
}

const API_VERSIONS: i16 = 18;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

async fn read_frame(stream: &mut TcpStream) -> Result<Vec<u8>> {
    let len = stream.read_i32().await?;
    let len = usize::try_from(len).context("negative frame length")?;
    if len > 100 * 1024 * 1024 {
        bail!("frame too large");
    }
    let mut frame = vec![0; len];
    stream.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> Result<()> {
    stream.write_i32(i32::try_from(frame.len())?).await?;
    stream.write_all(frame).await?;
    stream.flush().await?;
    Ok(())
}

fn parse_request(frame: &[u8]) -> Result<Request> {
    let mut r = Reader(frame);
    let api_key = r.i16()?;
    let api_version = r.i16()?;
    let correlation_id = r.i32()?;
    // client_id: NULLABLE_STRING in every header version.
    let client_len = r.i16()?;
    if client_len > 0 {
        r.take(usize::try_from(client_len)?)?;
    }
    // Request header v2 (flexible versions) adds tagged fields.
    if api_key == SASL_AUTHENTICATE && api_version >= 2 {
        r.skip_tags()?;
    }
    Ok(Request { api_key, api_version, correlation_id, body: r.0.to_vec() })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.0.len() < n {
            bail!("short frame");
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into()?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }
    fn uvarint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("varint too long")
    }
    fn skip_tags(&mut self) -> Result<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let len = usize::try_from(self.uvarint()?)?;
            self.take(len)?;
        }
        Ok(())
    }
    fn string(&mut self) -> Result<String> {
        let len = usize::try_from(self.i16()?.max(0))?;
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }
    fn bytes(&mut self, compact: bool) -> Result<Vec<u8>> {
        let len = if compact {
            usize::try_from(self.uvarint()?.saturating_sub(1))?
        } else {
            usize::try_from(self.i32()?.max(0))?
        };
        Ok(self.take(len)?.to_vec())
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(u8::try_from(value & 0x7f).unwrap_or(0) | 0x80);
        value >>= 7;
    }
    out.push(u8::try_from(value).unwrap_or(0));
}

fn handshake_response(correlation_id: i32, error: i16, mechanism: &str) -> Vec<u8> {
    let mut out = correlation_id.to_be_bytes().to_vec();
    out.extend(error.to_be_bytes());
    out.extend(1i32.to_be_bytes());
    out.extend(i16::try_from(mechanism.len()).unwrap_or(0).to_be_bytes());
    out.extend(mechanism.as_bytes());
    out
}

fn authenticate_response(request: &Request, error: i16, message: Option<&str>) -> Vec<u8> {
    let mut out = request.correlation_id.to_be_bytes().to_vec();
    let flexible = request.api_version >= 2;
    if flexible {
        out.push(0); // response header v1: no tagged fields
    }
    out.extend(error.to_be_bytes());
    match (message, flexible) {
        (None, false) => out.extend((-1i16).to_be_bytes()),
        (None, true) => out.push(0),
        (Some(m), false) => {
            out.extend(i16::try_from(m.len()).unwrap_or(0).to_be_bytes());
            out.extend(m.as_bytes());
        }
        (Some(m), true) => {
            put_uvarint(&mut out, m.len() as u64 + 1);
            out.extend(m.as_bytes());
        }
    }
    // auth_bytes: empty.
    if flexible {
        put_uvarint(&mut out, 1);
    } else {
        out.extend(0i32.to_be_bytes());
    }
    if request.api_version >= 1 {
        out.extend(0i64.to_be_bytes()); // session_lifetime_ms: no re-authentication asked
    }
    if flexible {
        out.push(0);
    }
    out
}

async fn serve(state: Arc<FrontState>, mut client: TcpStream) -> Result<()> {
    let mut generation = state.generation.subscribe();
    let mut upstream = TcpStream::connect(&state.upstream).await?;
    let mut mechanism_chosen: Option<String> = None;
    loop {
        let frame = read_frame(&mut client).await?;
        let request = parse_request(&frame)?;
        match request.api_key {
            API_VERSIONS => {
                write_frame(&mut upstream, &frame).await?;
                let response = read_frame(&mut upstream).await?;
                write_frame(&mut client, &response).await?;
            }
            SASL_HANDSHAKE => {
                let requested = Reader(&request.body).string()?;
                let offered = match &*state.mechanism.lock().unwrap() {
                    FrontMechanism::Plain(_) => "PLAIN",
                    FrontMechanism::MskIam(_) => "OAUTHBEARER",
                };
                let error = if requested == offered { 0 } else { UNSUPPORTED_SASL_MECHANISM };
                write_frame(&mut client, &handshake_response(request.correlation_id, error, offered)).await?;
                if error != 0 {
                    return Ok(());
                }
                mechanism_chosen = Some(requested);
            }
            SASL_AUTHENTICATE => {
                if mechanism_chosen.is_none() {
                    let response = authenticate_response(&request, ILLEGAL_SASL_STATE, Some("no SaslHandshake yet"));
                    write_frame(&mut client, &response).await?;
                    return Ok(());
                }
                let auth_bytes = Reader(&request.body).bytes(request.api_version >= 2)?;
                let attempt = check(&state, &auth_bytes);
                state.attempts.lock().unwrap().push(attempt.clone());
                if attempt.accepted {
                    write_frame(&mut client, &authenticate_response(&request, 0, None)).await?;
                    break;
                }
                let response = authenticate_response(&request, SASL_AUTHENTICATION_FAILED, Some(&attempt.reason));
                write_frame(&mut client, &response).await?;
                return Ok(());
            }
            // Anything else before authentication: a broker closes the connection.
            _ => return Ok(()),
        }
    }
    tokio::select! {
        relayed = tokio::io::copy_bidirectional(&mut client, &mut upstream) => { relayed?; }
        _ = generation.changed() => {}
    }
    Ok(())
}

fn check(state: &FrontState, auth_bytes: &[u8]) -> Attempt {
    match &*state.mechanism.lock().unwrap() {
        FrontMechanism::Plain(users) => {
            // authzid \0 authcid \0 password
            let parts: Vec<&[u8]> = auth_bytes.split(|b| *b == 0).collect();
            let (user, password) = match parts.as_slice() {
                [_, user, password] => (String::from_utf8_lossy(user), String::from_utf8_lossy(password)),
                _ => return refused("PLAIN", "", "Authentication failed: malformed PLAIN message"),
            };
            if users.get(user.as_ref()).is_some_and(|p| *p == password) {
                Attempt {
                    mechanism: "PLAIN".into(),
                    identity: user.into_owned(),
                    accepted: true,
                    reason: String::new(),
                }
            } else {
                // Kafka's own wording for a bad PLAIN login.
                refused("PLAIN", &user, "Authentication failed: Invalid username or password")
            }
        }
        FrontMechanism::MskIam(policy) => check_iam_token(policy, auth_bytes),
    }
}

fn refused(mechanism: &str, identity: &str, reason: &str) -> Attempt {
    Attempt { mechanism: mechanism.into(), identity: identity.into(), accepted: false, reason: reason.into() }
}

/// Checks an OAUTHBEARER initial response carrying an MSK IAM token, as far as it can be checked
/// without AWS.
fn check_iam_token(policy: &IamPolicy, auth_bytes: &[u8]) -> Attempt {
    let denied = |identity: &str, why: &str| refused("OAUTHBEARER", identity, &format!("[kafka-esm-testkit]: {why}"));
    let text = String::from_utf8_lossy(auth_bytes);
    let Some(token) = text.split('\u{1}').find_map(|kv| kv.strip_prefix("auth=Bearer ")) else {
        return denied("", "Invalid OAUTHBEARER message");
    };
    let Ok(url) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim()) else {
        return denied("", "Token is not base64url without padding");
    };
    let url = String::from_utf8_lossy(&url).into_owned();
    let Some(query) = url.strip_prefix(&format!("https://kafka.{}.amazonaws.com/?", policy.region)) else {
        return denied("", "Token is not for this cluster's Region");
    };
    let params: HashMap<String, String> =
        query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), percent_decode(v))).collect();
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let credential = get("X-Amz-Credential");
    let identity = credential.split('/').next().unwrap_or_default().to_owned();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let signed_at = parse_amz_date(get("X-Amz-Date"));
    let fresh = signed_at.is_some_and(|t| t <= now + 300 && now < t + 900);
    let checks = [
        (get("Action") == "kafka-cluster:Connect", "Action is not kafka-cluster:Connect"),
        (get("X-Amz-Algorithm") == "AWS4-HMAC-SHA256", "Not a SigV4 token"),
        (identity == policy.access_key_id, "Unknown access key"),
        (credential.ends_with(&format!("/{}/kafka-cluster/aws4_request", policy.region)), "Wrong credential scope"),
        (get("X-Amz-Expires") == "900", "X-Amz-Expires is not 900"),
        (get("X-Amz-SignedHeaders") == "host", "Only host may be signed"),
        (policy.session_token.as_deref().unwrap_or_default() == get("X-Amz-Security-Token"), "Wrong session token"),
        (get("X-Amz-Signature").len() == 64, "Malformed signature"),
        (fresh, "Token expired or from the future"),
    ];
    if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
        return denied(&identity, why);
    }
    if !policy.allow_connect {
        return denied(&identity, "Access denied");
    }
    Attempt { mechanism: "OAUTHBEARER".into(), identity, accepted: true, reason: String::new() }
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `YYYYMMDDTHHMMSSZ` → epoch seconds.
fn parse_amz_date(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d, h, mi, se) = (n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    u64::try_from(days * 86_400 + h * 3_600 + mi * 60 + se).ok()
}
