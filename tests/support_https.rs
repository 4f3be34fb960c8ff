//! A local HTTPS receiver for the webhook tests: a CA and a certificate for 127.0.0.1 made
//! with the `openssl` command, a TLS server (tokio-rustls) that records every POST, and a
//! script of answers (a status, a `Retry-After`, a body, or no answer at all).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Post {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub body: serde_json::Value,
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16, Option<String>, String),
    /// Read the request, then never answer.
    Hang,
}

#[derive(Debug, Default)]
struct State {
    posts: Vec<Post>,
    script: Vec<Answer>,
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub url_base: String,
    state: Arc<Mutex<State>>,
}

/// The test CA's PEM file, the receiver's certificate and key; made once per test process.
/// The agent's client trusts the CA through `Https::with_ca_file`.
pub fn pki() -> &'static (PathBuf, PathBuf, PathBuf) {
    static PKI: OnceLock<(PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("cm-https-")
            .tempdir()
            .unwrap()
            .keep();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl is needed (Debian package openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=container-manager test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ]);
        (
            dir.join("ca.pem"),
            dir.join("leaf.pem"),
            dir.join("leaf.key"),
        )
    })
}

impl Receiver {
    pub async fn start() -> Receiver {
        let (_, cert, key) = pki();
        let certs = vec![CertificateDer::from_pem_file(cert).unwrap()];
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // One request per connection is enough; keep-alive requests are read in turn.
                    loop {
                        let Some((method, path, body)) = read_request(&mut tls).await else {
                            return;
                        };
                        let answer = {
                            let mut s = st.lock().unwrap();
                            s.posts.push(Post {
                                at: Instant::now(),
                                method,
                                path,
                                body: serde_json::from_slice(&body)
                                    .unwrap_or(serde_json::Value::Null),
                            });
                            if s.script.is_empty() {
                                Answer::Status(204, None, String::new())
                            } else {
                                s.script.remove(0)
                            }
                        };
                        match answer {
                            Answer::Hang => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                return;
                            }
                            Answer::Status(code, retry_after, body) => {
                                let mut head = format!(
                                    "HTTP/1.1 {code} X\r\ncontent-length: {}\r\ncontent-type: application/json\r\n",
                                    body.len()
                                );
                                if let Some(r) = retry_after {
                                    head.push_str(&format!("retry-after: {r}\r\n"));
                                }
                                head.push_str("\r\n");
                                if tls.write_all(head.as_bytes()).await.is_err()
                                    || tls.write_all(body.as_bytes()).await.is_err()
                                    || tls.flush().await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Receiver {
            url_base: format!("https://127.0.0.1:{port}"),
            state,
        }
    }

    /// Answers for the next requests, in order; then 204s.
    pub fn script(&self, answers: Vec<Answer>) {
        self.state.lock().unwrap().script = answers;
    }

    pub fn posts(&self) -> Vec<Post> {
        self.state.lock().unwrap().posts.clone()
    }
}

async fn read_request<S: AsyncReadExt + Unpin>(s: &mut S) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let len: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some((method, path, body))
}
