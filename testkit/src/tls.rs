//! A throwaway certificate authority and a TLS front for tansu (tansu 0.6's own TLS listener
//! cannot be configured from its CLI, so `stunnel4` terminates TLS in front of the plain one).

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
        let stunnel = start_stunnel(ca.dir.path(), tls_port, plain_port, &cert, &key)?;
        Ok(Self { tansu, stunnel, bootstrap })
    }
}

fn start_stunnel(dir: &Path, accept: u16, connect: u16, cert: &Path, key: &Path) -> Result<Service> {
    let config = dir.join(format!("stunnel-{accept}.conf"));
    std::fs::write(
        &config,
        format!(
            "foreground = yes\npid =\ndebug = warning\n[kafka]\naccept = 127.0.0.1:{accept}\nconnect = 127.0.0.1:{connect}\ncert = {}\nkey = {}\n",
            cert.display(),
            key.display()
        ),
    )?;
    let program = if tool("stunnel4").exists() || which("stunnel4") { tool("stunnel4") } else { tool("stunnel") };
    let service = Service::spawn(&program, &[config.display().to_string()], "stunnel").context("start stunnel")?;
    wait_port(accept, "stunnel", Duration::from_secs(15))?;
    Ok(service)
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).exists()))
}
