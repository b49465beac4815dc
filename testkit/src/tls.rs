//! A throwaway certificate authority and a TLS front for tansu (tansu 0.6's own TLS listener
//! cannot be configured from its CLI, so `stunnel4` terminates TLS in front of the plain one).
//!
//! For mutual TLS the CA also issues client certificates (valid, expired, with the private key
//! encrypted as `openssl pkcs8` does it), and stunnel requires and verifies them (`verify = 2`)
//! against a CA file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::services::{Service, Tansu, free_port, tool, wait_port};

/// A CA generated for one test, with files in a temporary directory.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("dir", &self.dir.path()).finish()
    }
}

impl TestCa {
    pub fn new() -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "kafka-esm test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let dir = tempfile::tempdir()?;
        let ca_pem = issuer.pem();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem)?;
        Ok(Self { dir, ca_pem, issuer })
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a server certificate for `host`; returns `(cert path, key path)`.
    pub fn server_cert(&self, host: &str) -> Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![host.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, host);
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_path = self.dir.path().join(format!("{host}.crt"));
        let key_path = self.dir.path().join(format!("{host}.key"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok((cert_path, key_path))
    }

    /// Issues a client certificate with common name `cn`, valid now.
    pub fn client_cert(&self, cn: &str) -> Result<ClientPem> {
        self.client_cert_valid(cn, false)
    }

    /// Issues a client certificate with common name `cn` that expired in 2020.
    pub fn expired_client_cert(&self, cn: &str) -> Result<ClientPem> {
        self.client_cert_valid(cn, true)
    }

    fn client_cert_valid(&self, cn: &str, expired: bool) -> Result<ClientPem> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ClientPem { certificate: cert.pem(), private_key: key.serialize_pem() })
    }
}

/// A client certificate and its private key (PKCS #8 PEM), as an mTLS secret holds them.
#[derive(Clone)]
pub struct ClientPem {
    pub certificate: String,
    pub private_key: String,
}

impl std::fmt::Debug for ClientPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientPem")
    }
}

/// How [`encrypt_private_key`] encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncryption {
    /// PKCS #5 v1.5 / PKCS #12 password-based encryption (`-v1 PBE-SHA1-3DES`): the PBES1
    /// family AWS documents for Lambda's mTLS secrets.
    Pbes1,
    /// PBES2 with AES-256 (`openssl pkcs8 -topk8`'s default).
    Pbes2,
}

/// Encrypts a PKCS #8 PEM private key with `password` (`-----BEGIN ENCRYPTED PRIVATE KEY-----`),
/// using the `openssl` command.
pub fn encrypt_private_key(private_key_pem: &str, password: &str, scheme: KeyEncryption) -> Result<String> {
    use std::io::Write as _;
    let mut command = std::process::Command::new("openssl");
    command.args(["pkcs8", "-topk8", "-passout", &format!("pass:{password}")]);
    if scheme == KeyEncryption::Pbes1 {
        command.args(["-v1", "PBE-SHA1-3DES"]);
    }
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run openssl pkcs8")?;
    child.stdin.take().context("openssl stdin")?.write_all(private_key_pem.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!("openssl pkcs8: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// tansu reachable only through TLS: stunnel on `localhost:port` in front of a plain listener,
/// with tansu advertising the TLS address.
#[derive(Debug)]
pub struct TlsTansu {
    pub tansu: Tansu,
    pub stunnel: Service,
    /// `localhost:PORT`: the name the certificate is issued for.
    pub bootstrap: String,
}

impl TlsTansu {
    /// `cert_host` is the name in the server certificate (use another than `localhost` to get a
    /// name mismatch).
    pub fn start(ca: &TestCa, cert_host: &str) -> Result<Self> {
        let tls_port = free_port();
        let plain_port = free_port();
        let bootstrap = format!("localhost:{tls_port}");
        let tansu = Tansu::start_advertising(plain_port, &bootstrap)?;
        let (cert, key) = ca.server_cert(cert_host)?;
        let stunnel = start_stunnel(ca.dir.path(), tls_port, plain_port, &cert, &key, None)?;
        Ok(Self { tansu, stunnel, bootstrap })
    }

    /// Like [`TlsTansu::start`], and stunnel requires a client certificate signed by
    /// `client_ca` (`verify = 2`).
    pub fn start_mutual(ca: &TestCa, client_ca: &TestCa) -> Result<Self> {
        let tls_port = free_port();
        let plain_port = free_port();
        let bootstrap = format!("localhost:{tls_port}");
        let tansu = Tansu::start_advertising(plain_port, &bootstrap)?;
        let (cert, key) = ca.server_cert("localhost")?;
        let stunnel = start_stunnel(ca.dir.path(), tls_port, plain_port, &cert, &key, Some(&client_ca.ca_path()))?;
        Ok(Self { tansu, stunnel, bootstrap })
    }
}

/// stunnel on `localhost:tls_port` in front of `127.0.0.1:connect` (whatever listens there: a
/// broker or a SASL front), with a server certificate for `localhost` from `ca`.
#[derive(Debug)]
pub struct TlsFront {
    pub stunnel: Service,
    /// `localhost:PORT`.
    pub bootstrap: String,
}

impl TlsFront {
    pub fn start(ca: &TestCa, tls_port: u16, connect: u16) -> Result<Self> {
        let (cert, key) = ca.server_cert("localhost")?;
        let stunnel = start_stunnel(ca.dir.path(), tls_port, connect, &cert, &key, None)?;
        Ok(Self { stunnel, bootstrap: format!("localhost:{tls_port}") })
    }
}

fn start_stunnel(
    dir: &Path,
    accept: u16,
    connect: u16,
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Service> {
    let config = dir.join(format!("stunnel-{accept}.conf"));
    let mut text = format!(
        "foreground = yes\npid =\ndebug = warning\n[kafka]\naccept = 127.0.0.1:{accept}\nconnect = 127.0.0.1:{connect}\ncert = {}\nkey = {}\n",
        cert.display(),
        key.display()
    );
    if let Some(ca) = client_ca {
        // Require a client certificate and verify it against `ca`.
        text.push_str(&format!("verify = 2\nCAfile = {}\n", ca.display()));
    }
    std::fs::write(&config, text)?;
    let program = if tool("stunnel4").exists() || which("stunnel4") { tool("stunnel4") } else { tool("stunnel") };
    let service = Service::spawn(&program, &[config.display().to_string()], "stunnel").context("start stunnel")?;
    wait_port(accept, "stunnel", Duration::from_secs(15))?;
    Ok(service)
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).exists()))
}
