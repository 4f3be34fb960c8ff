//! HTTPS POST of a JSON body, for webhooks: hyper with rustls and the system's trust store
//! (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured, as by the AWS SDK's own client).
//!
//! The URL is a secret: it never appears in a returned error, which names only the failure.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::aws::Secret;

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The start of the body (at most [`MAX_REPLY`] bytes), for error messages and `retry_after`.
    pub body: String,
}

/// How much of a reply's body is read.
pub const MAX_REPLY: usize = 16 * 1024;

/// POSTs a JSON body to a URL.
#[async_trait]
pub trait HttpPost: Send + Sync + fmt::Debug {
    async fn post_json(&self, url: &Secret, body: Vec<u8>) -> Result<Reply, String>;
}

/// The real client.
pub struct Https {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for Https {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Https")
    }
}

impl Https {
    /// A client that speaks HTTPS only, trusting the system's roots.
    pub fn new() -> Result<Self, String> {
        Self::build(None)
    }

    /// The system's roots plus the CA certificates in a PEM file (a private CA).
    pub fn with_ca_file(path: &Path) -> Result<Self, String> {
        Self::build(Some(path))
    }

    fn build(extra: Option<&Path>) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if let Some(path) = extra {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
            }
        } else if added == 0 {
            return Err(format!(
                "no trusted certificates found in the system's store ({})",
                native
                    .errors
                    .first()
                    .map_or_else(|| "it is empty".to_string(), ToString::to_string)
            ));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(https);
        Ok(Self { client })
    }
}

#[async_trait]
impl HttpPost for Https {
    async fn post_json(&self, url: &Secret, body: Vec<u8>) -> Result<Reply, String> {
        let request = hyper::Request::post(url.expose())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("container-manager-agent/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "the URL is not a valid HTTPS URL".to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match Limited::new(response.into_body(), MAX_REPLY)
            .collect()
            .await
        {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(_) => String::new(),
        };
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
}

/// The error's chain of causes, without the request (hyper's errors never carry the URL;
/// the webhook sink scrubs the text again anyway).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
