//! The client that forwards requests to real Plaid over TLS (rustls with the ring provider).
//!
//! Trusts the webpki roots plus, with `--upstream-ca`, a private CA. Speaks HTTP/1.1 and
//! HTTP/2 (chosen by ALPN). Forwards the client's end-to-end headers and body bytes unchanged:
//! it never adds a body field (Plaid rejects unknown fields) and never logs what it sends.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Largest upstream response body accepted; Plaid's largest answers are far below this.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The prefix of plaid-vcr's own request headers (`Plaid-VCR-Session`), never forwarded.
const OWN_HEADER_PREFIX: &str = "plaid-vcr-";

/// Hop-by-hop headers (RFC 9110 §7.6.1) and ones this client sets itself.
const NOT_FORWARDED: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// A problem building the upstream client or talking to upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {url:?} is not a valid URL: {reason}; pass e.g. --upstream https://sandbox.plaid.com")]
    Url { url: String, reason: String },
    #[error("cannot read upstream CA {path}: {reason}; pass a PEM file with --upstream-ca")]
    Ca { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("upstream is unreachable: {0}")]
    Unreachable(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream answer was unreadable: {0}")]
    Body(String),
}

/// What upstream answered.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// A connection-pooling HTTP(S) client for absolute URLs: the one [`Upstream`] forwards with,
/// and the one that forwards webhooks to the app and delivers replayed ones. TLS trusts the
/// webpki roots plus the PEM certificates in a CA file, if given.
#[derive(Clone)]
pub struct Poster {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster").finish_non_exhaustive()
    }
}

impl Poster {
    /// A client with the given timeouts, trusting `ca` in addition to the webpki roots.
    pub fn new(
        ca: Option<&Path>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Poster, UpstreamError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca {
            add_ca(&mut roots, path)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| UpstreamError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Poster {
            client,
            connect_timeout,
            response_timeout,
        })
    }

    /// POSTs `body` with `headers` to `url`.
    ///
    /// The response timeout covers the whole exchange, body included; connect failures are
    /// [`UpstreamError::Unreachable`] unless they were a connect timeout.
    pub async fn post(&self, url: &str, headers: HeaderMap, body: Bytes) -> Result<UpstreamResponse, UpstreamError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .body(Full::new(body))
            .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        *request.headers_mut() = headers;

        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| classify(e, self.connect_timeout))?;
            let status = response.status();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| UpstreamError::Body(e.to_string()))?
                .to_bytes();
            Ok(UpstreamResponse {
                status,
                content_type,
                body,
            })
        };
        match tokio::time::timeout(self.response_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
        }
    }
}

/// The client for one upstream base URL (Plaid, or a fake).
#[derive(Clone)]
pub struct Upstream {
    poster: Poster,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// A client for `url` (`https://host[:port][/prefix]`; `http://` is accepted for local
    /// fakes), trusting webpki roots and the PEM certificates in `ca`, if given.
    pub fn new(
        url: &str,
        ca: Option<&Path>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Upstream, UpstreamError> {
        let url_err = |reason: &str| UpstreamError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| url_err(&e.to_string()))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| url_err("it has no scheme"))?;
        if scheme != http::uri::Scheme::HTTPS && scheme != http::uri::Scheme::HTTP {
            return Err(url_err("the scheme must be https"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| url_err("it has no host"))?;
        if uri.query().is_some() {
            return Err(url_err("it must not have a query string"));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(Upstream {
            poster: Poster::new(ca, connect_timeout, response_timeout)?,
            scheme,
            authority,
            base_path,
        })
    }

    /// The URL `endpoint` is forwarded to.
    pub fn url_for(&self, endpoint: &str) -> String {
        format!("{}://{}{}/{}", self.scheme, self.authority, self.base_path, endpoint)
    }

    /// POSTs `body` to `<upstream>/<endpoint>` with the client's end-to-end headers.
    pub async fn forward(
        &self,
        endpoint: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, UpstreamError> {
        self.poster
            .post(&self.url_for(endpoint), forwarded_headers(headers), body)
            .await
    }
}

/// The headers sent upstream: the client's end-to-end headers, minus hop-by-hop ones, with
/// `Accept-Encoding: identity` so the answer arrives as plain JSON that can be recorded.
pub fn forwarded_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(incoming.len());
    // Headers named in `Connection` are hop-by-hop too.
    let listed: Vec<String> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in incoming {
        let n = name.as_str();
        // `Plaid-VCR-*` headers (the session) are plaid-vcr's own: Plaid never sees them.
        let ours = n.starts_with(OWN_HEADER_PREFIX);
        if ours || NOT_FORWARDED.contains(&n) || listed.iter().any(|l| l == n) || name == header::ACCEPT_ENCODING {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    out
}

fn classify(err: hyper_util::client::legacy::Error, connect_timeout: Duration) -> UpstreamError {
    let timed_out = {
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&err);
        let mut found = false;
        while let Some(e) = source {
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                found = true;
                break;
            }
            source = e.source();
        }
        found
    };
    if timed_out {
        // hyper-util reports its connect timeout as an io `TimedOut` inside the error chain.
        return UpstreamError::Timeout(connect_timeout);
    }
    UpstreamError::Unreachable(describe(&err))
}

/// The innermost cause of an error chain, which is what a user can act on ("connection
/// refused", "invalid peer certificate: UnknownIssuer").
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        last = e.to_string();
        source = e.source();
    }
    last
}

fn add_ca(roots: &mut RootCertStore, path: &Path) -> Result<(), UpstreamError> {
    let ca_err = |reason: String| UpstreamError::Ca {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| ca_err(format!("not PEM: {e}")))?;
        roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(ca_err("it holds no CERTIFICATE block".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_to_end_headers_pass_and_hop_by_hop_ones_do_not() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("plaid-client-id", HeaderValue::from_static("id"));
        h.insert("plaid-secret", HeaderValue::from_static("s"));
        h.insert("plaid-version", HeaderValue::from_static("2020-09-14"));
        h.insert("user-agent", HeaderValue::from_static("Plaid Node v47.0.0"));
        h.insert("connection", HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        h.insert("accept-encoding", HeaderValue::from_static("gzip, br"));
        h.insert("plaid-vcr-session", HeaderValue::from_static("tests/a"));
        let out = forwarded_headers(&h);
        for name in [
            "content-type",
            "plaid-client-id",
            "plaid-secret",
            "plaid-version",
            "user-agent",
        ] {
            assert_eq!(out.get(name), h.get(name), "{name}");
        }
        for name in ["connection", "x-private", "host", "plaid-vcr-session"] {
            assert!(out.get(name).is_none(), "{name} forwarded");
        }
        assert_eq!(out.get("accept-encoding").unwrap(), "identity");
    }

    #[test]
    fn upstream_urls_keep_their_path_prefix() {
        let d = Duration::from_secs(1);
        let u = Upstream::new("https://example.test/prefix/", None, d, d).unwrap();
        assert_eq!(u.url_for("identity/get"), "https://example.test/prefix/identity/get");
        let u = Upstream::new("https://sandbox.plaid.com", None, d, d).unwrap();
        assert_eq!(u.url_for("identity/get"), "https://sandbox.plaid.com/identity/get");
        assert!(Upstream::new("ftp://x", None, d, d).is_err());
        assert!(Upstream::new("sandbox.plaid.com", None, d, d).is_err());
    }
}
