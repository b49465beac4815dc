//! MSK IAM access control: the SASL/OAUTHBEARER token that proves the poller's IAM identity to
//! an Amazon MSK cluster, made exactly as AWS's `aws-msk-iam-sasl-signer` libraries make it.
//!
//! The token is a SigV4-presigned `GET https://kafka.REGION.amazonaws.com/?Action=kafka-cluster:Connect`
//! (service `kafka-cluster`, valid 900 s, only the `host` header signed, an empty payload), with an
//! unsigned `User-Agent` parameter appended, URL-safe base64 without padding. The signing key and
//! the signature come from AWS's own `aws-sigv4` crate (already in the tree through the SDK); the
//! canonical request is built here, because `aws-sigv4`'s request signer logs the canonical
//! request at TRACE, and for a presigned URL that includes the session token (it redacts only
//! headers). The URL's parameters are in the reference's order. `tests/data/msk-iam-reference-tokens.json`, produced by
//! the Python reference (`scripts/msk-iam-reference-tokens.py`), pins the bytes: the unit tests
//! sign the same inputs and compare.
//!
//! librdkafka asks for a token on its own thread through a synchronous callback
//! ([`MskIamSigner::token`]), at start and again at 80 % of the token's lifetime. Fetching
//! credentials is asynchronous (the default chain may call the instance or container metadata
//! service), so the signer keeps the current credentials in memory: they are fetched once before
//! the client starts ([`MskIamSigner::prepare`]) and refreshed in the background, on the runtime
//! that prepared them, once they are within [`REFRESH_AHEAD`] of expiring. A token never outlives
//! the credentials that signed it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use tracing::{debug, warn};

/// How long a token is valid: the value every AWS signer library uses.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// Credentials this close to expiring are refreshed in the background. The SDK refreshes its own
/// cached credentials 5 minutes ahead; the same margin here.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// The unsigned `User-Agent` parameter of our tokens (the reference writes its own name there).
pub const USER_AGENT: &str = concat!("kafka-esm/", env!("CARGO_PKG_VERSION"));

const ACTION: &str = "kafka-cluster:Connect";
const SIGNING_NAME: &str = "kafka-cluster";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// SHA-256 of the empty payload.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Why no token could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MskIamError {
    #[error("no AWS credentials for MSK IAM authentication: {detail}")]
    NoCredentials { detail: String },
    #[error("cannot sign the MSK IAM token: {detail}")]
    Signing { detail: String },
}

/// A signed token and when it stops being valid.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken {
    /// The OAUTHBEARER token value (a bearer credential for 15 minutes: never logged).
    pub token: String,
    /// Epoch milliseconds, as librdkafka wants the token's lifetime.
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthToken").field("token", &"<redacted>").field("expires_at_ms", &self.expires_at_ms).finish()
    }
}

/// Signs a token for `region` with `credentials` at `at` (truncated to whole seconds, as SigV4
/// dates are).
///
/// # Errors
/// The credentials are empty or the signer refused the request.
pub fn sign_token(
    region: &str,
    credentials: &Credentials,
    at: SystemTime,
    user_agent: &str,
) -> Result<AuthToken, MskIamError> {
    if credentials.access_key_id().is_empty() || credentials.secret_access_key().is_empty() {
        return Err(MskIamError::NoCredentials { detail: "the access key or secret key is empty".into() });
    }
    let seconds = at.duration_since(UNIX_EPOCH).map_err(|e| MskIamError::Signing { detail: e.to_string() })?.as_secs();
    let at = UNIX_EPOCH + Duration::from_secs(seconds);
    let (date, date_time) = amz_dates(seconds);
    let host = format!("kafka.{region}.amazonaws.com");
    let scope = format!("{date}/{region}/{SIGNING_NAME}/aws4_request");

    // The query in the reference's order: the operation's parameter, then the auth parameters
    // in the order botocore writes them (session token after SignedHeaders).
    let mut query: Vec<(&str, String)> = vec![
        ("Action", ACTION.to_owned()),
        ("X-Amz-Algorithm", ALGORITHM.to_owned()),
        ("X-Amz-Credential", format!("{}/{scope}", credentials.access_key_id())),
        ("X-Amz-Date", date_time.clone()),
        ("X-Amz-Expires", TOKEN_LIFETIME.as_secs().to_string()),
        ("X-Amz-SignedHeaders", "host".to_owned()),
    ];
    if let Some(token) = credentials.session_token() {
        query.push(("X-Amz-Security-Token", token.to_owned()));
    }
    // SigV4: the canonical query string is sorted by name; only `host` is signed; the payload
    // is empty.
    let mut sorted: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    sorted.sort();
    let canonical_request = format!("GET\n/\n{}\nhost:{host}\n\nhost\n{EMPTY_SHA256}", sorted.join("&"));
    let string_to_sign = format!("{ALGORITHM}\n{date_time}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()));
    let key = v4::generate_signing_key(credentials.secret_access_key(), at, region, SIGNING_NAME);
    let signature = v4::calculate_signature(key, string_to_sign.as_bytes());

    let mut url = format!("https://{host}/?");
    for (name, value) in &query {
        url.push_str(&format!("{name}={}&", encode(value)));
    }
    url.push_str(&format!("X-Amz-Signature={signature}&User-Agent={}", encode(user_agent)));
    let signed_url = url;

    let expires = at + TOKEN_LIFETIME;
    Ok(AuthToken {
        token: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed_url.as_bytes()),
        expires_at_ms: epoch_ms(expires),
    })
}

/// Percent-encoding as botocore's `percent_encode` (RFC 3986 unreserved characters stay).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `(YYYYMMDD, YYYYMMDDTHHMMSSZ)` of epoch `seconds`, in UTC.
fn amz_dates(seconds: u64) -> (String, String) {
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX);
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!("{date}T{:02}{:02}{:02}Z", rest / 3_600, rest % 3_600 / 60, rest % 60);
    (date, time)
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Makes tokens for one cluster's Region from the poller's credentials (the default chain: in
/// Lambda, the function's role).
pub struct MskIamSigner {
    region: String,
    provider: SharedCredentialsProvider,
    current: RwLock<Option<Credentials>>,
    refreshing: Arc<AtomicBool>,
    runtime: RwLock<Option<tokio::runtime::Handle>>,
}

impl std::fmt::Debug for MskIamSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskIamSigner").field("region", &self.region).finish_non_exhaustive()
    }
}

impl MskIamSigner {
    pub fn new(region: impl Into<String>, provider: SharedCredentialsProvider) -> Arc<Self> {
        Arc::new(Self {
            region: region.into(),
            provider,
            current: RwLock::new(None),
            refreshing: Arc::new(AtomicBool::new(false)),
            runtime: RwLock::new(None),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Fetches credentials now (before the client starts, so the first token needs no wait) and
    /// remembers the runtime for later background refreshes.
    ///
    /// # Errors
    /// The credential chain has nothing (no role, no environment credentials).
    pub async fn prepare(self: &Arc<Self>) -> Result<(), MskIamError> {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            *self.runtime.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle);
        }
        let fresh = fetch(&self.provider).await?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fresh);
        Ok(())
    }

    /// A token signed now; for librdkafka's token refresh callback (synchronous, never blocks).
    ///
    /// # Errors
    /// No credentials yet, or they have expired and the refresh has not brought new ones.
    pub fn token(self: &Arc<Self>) -> Result<AuthToken, MskIamError> {
        let now = SystemTime::now();
        let credentials = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(credentials) = credentials else {
            self.refresh_in_background();
            return Err(MskIamError::NoCredentials { detail: "credentials are being fetched".into() });
        };
        let expiry = credentials.expiry();
        if expiry.is_some_and(|e| e <= now + REFRESH_AHEAD) {
            self.refresh_in_background();
        }
        if expiry.is_some_and(|e| e <= now) {
            return Err(MskIamError::NoCredentials { detail: "the poller's credentials have expired".into() });
        }
        let mut token = sign_token(&self.region, &credentials, now, USER_AGENT)?;
        // librdkafka refreshes at 80 % of the lifetime: credentials that expire sooner than the
        // token shorten it, so the next token is asked for while they are still valid.
        if let Some(expiry) = expiry {
            token.expires_at_ms = token.expires_at_ms.min(epoch_ms(expiry));
        }
        Ok(token)
    }

    fn refresh_in_background(self: &Arc<Self>) {
        let Some(runtime) = self.runtime.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone() else {
            return;
        };
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        runtime.spawn(async move {
            match fetch(&this.provider).await {
                Ok(fresh) => {
                    debug!(region = %this.region, "Refreshed the credentials for MSK IAM tokens.");
                    *this.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fresh);
                }
                Err(e) => {
                    warn!(region = %this.region, error = %e, "Cannot refresh the credentials for MSK IAM tokens.")
                }
            }
            this.refreshing.store(false, Ordering::Release);
        });
    }
}

async fn fetch(provider: &SharedCredentialsProvider) -> Result<Credentials, MskIamError> {
    provider.provide_credentials().await.map_err(|e| MskIamError::NoCredentials {
        detail: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Reference {
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        region: String,
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
        signing_time: String,
        user_agent: String,
        token: String,
        expiry_ms: i64,
    }

    fn parse_time(text: &str) -> SystemTime {
        // YYYY-MM-DDTHH:MM:SSZ → seconds since the epoch (days from civil date, Howard Hinnant's method).
        let num = |range: std::ops::Range<usize>| text[range].parse::<i64>().expect("digits");
        let (y, m, d) = (num(0..4), num(5..7), num(8..10));
        let (h, min, s) = (num(11..13), num(14..16), num(17..19));
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = u64::try_from(days * 86_400 + h * 3_600 + min * 60 + s).expect("after 1970");
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Every case of the reference file, signed here, is byte for byte the reference's token.
    #[test]
    fn tokens_equal_the_reference_signer_byte_for_byte() {
        let reference: Reference = serde_json::from_str(include_str!("../../tests/data/msk-iam-reference-tokens.json"))
            .expect("reference file");
        assert!(reference.cases.len() >= 5, "the table covers several inputs");
        assert!(reference.cases.iter().any(|c| c.session_token.is_some()));
        assert!(reference.cases.iter().any(|c| c.session_token.is_none()));
        for case in &reference.cases {
            let credentials = Credentials::new(
                &case.access_key_id,
                &case.secret_access_key,
                case.session_token.clone(),
                None,
                "reference",
            );
            let ours =
                sign_token(&case.region, &credentials, parse_time(&case.signing_time), &case.user_agent).expect("sign");
            assert_eq!(ours.token, case.token, "token for {} at {}", case.region, case.signing_time);
            assert_eq!(ours.expires_at_ms, case.expiry_ms, "expiry for {}", case.region);
        }
    }

    #[test]
    fn the_token_is_a_presigned_connect_url_for_the_region() {
        let credentials = Credentials::new("AKIDEXAMPLE", "SECRET", Some("TOKEN/+=".into()), None, "test");
        let at = UNIX_EPOCH + Duration::from_secs(1_767_225_600) + Duration::from_millis(999);
        let token = sign_token("eu-west-1", &credentials, at, USER_AGENT).expect("sign");
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token.token).expect("base64url, no padding"),
        )
        .expect("utf-8");
        assert!(url.starts_with("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"), "{url}");
        assert!(url.contains("X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Feu-west-1%2Fkafka-cluster%2Faws4_request"));
        assert!(url.contains("X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"));
        assert!(url.contains("X-Amz-Security-Token=TOKEN%2F%2B%3D&X-Amz-Signature="));
        assert!(url.ends_with(&format!("&User-Agent={}", encode(USER_AGENT))));
        assert!(!url.contains("SECRET"), "the secret key only keys the signature");
        // Whole seconds: the expiry is the signing second + 900 s.
        assert_eq!(token.expires_at_ms, 1_767_225_600_000 + 900_000);
        assert!(!format!("{token:?}").contains(&token.token));
    }

    #[test]
    fn empty_credentials_are_refused() {
        let empty = Credentials::new("", "", None, None, "test");
        assert!(matches!(
            sign_token("us-east-1", &empty, SystemTime::now(), USER_AGENT),
            Err(MskIamError::NoCredentials { .. })
        ));
    }

    #[tokio::test]
    async fn tokens_never_outlive_the_credentials_and_near_expiry_refreshes_them() {
        let soon = SystemTime::now() + Duration::from_secs(120);
        let provider = SharedCredentialsProvider::new(Credentials::new("AKID", "SECRET", None, Some(soon), "test"));
        let signer = MskIamSigner::new("us-east-1", provider);
        assert!(signer.token().is_err(), "no token before credentials are fetched");
        signer.prepare().await.expect("prepare");
        let token = signer.token().expect("token");
        assert_eq!(token.expires_at_ms, epoch_ms(soon), "the token ends with its credentials");

        let later = SystemTime::now() + Duration::from_secs(3_600);
        let provider = SharedCredentialsProvider::new(Credentials::new("AKID", "SECRET", None, Some(later), "test"));
        let signer = MskIamSigner::new("us-east-1", provider);
        signer.prepare().await.expect("prepare");
        let token = signer.token().expect("token");
        let lifetime = token.expires_at_ms - epoch_ms(SystemTime::now());
        assert!((890_000..=900_000).contains(&lifetime), "a full 900 s token: {lifetime}");
    }
}
