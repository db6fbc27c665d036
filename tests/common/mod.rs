//! Shared helpers for the integration tests: real upstreams on `127.0.0.1:0` that record what
//! reached them, the proxy started from TOML text, a throwaway test PKI, and real clients
//! (HTTP/1.1, HTTP/2 prior knowledge, and TLS with ALPN).

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use provproxy::body::{full, ProxyBody};
use provproxy::demo::client::Reply;
use provproxy::server::Running;
use provproxy::upstream::tls::provider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Long enough for a debug build on a busy machine, short enough that a hang fails the test.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// What the server knows about the connection a request came on.
#[derive(Debug, Clone, Default)]
pub struct ConnMeta {
    /// The server name the client sent in its TLS ClientHello.
    pub sni: Option<String>,
}

/// A real HTTP/1.1 server (optionally TLS) on `127.0.0.1:0`. Dropping it stops accepting.
///
/// A panic in its handler fails the test: the client sees the connection close (as it would
/// without this), and the panic is raised again when the server is dropped or
/// [`finish`](Server::finish)ed, so that a broken handler cannot pass for a proxy fault or go
/// unnoticed.
pub struct Server {
    addr: SocketAddr,
    tls: bool,
    accept: JoinHandle<()>,
    panicked: HandlerPanic,
}

/// The first panic of any handler of a server, kept to be raised on the test's thread.
type HandlerPanic = Arc<Mutex<Option<Box<dyn Any + Send>>>>;

impl Server {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` so that the client sends SNI.
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Stops the server and raises its handler's panic, if one happened.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
        let panic = self
            .panicked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // Raising a second panic while the test already fails would abort the whole binary.
        if let (Some(payload), false) = (panic, std::thread::panicking()) {
            std::panic::resume_unwind(payload);
        }
    }
}

/// Why a connection was closed instead of answered.
#[derive(Debug)]
struct HandlerPanicked;

impl std::fmt::Display for HandlerPanicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the test server's handler panicked")
    }
}

impl std::error::Error for HandlerPanicked {}

/// Serves `handler` with the request body still streaming, for tests that must not buffer it.
pub async fn serve<H, F>(tls: Option<Arc<ServerConfig>>, handler: H) -> Server
where
    H: Fn(Request<Incoming>, ConnMeta) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    let acceptor = tls.clone().map(TlsAcceptor::from);
    let panicked = HandlerPanic::default();
    let panics = panicked.clone();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let acceptor = acceptor.clone();
            let panics = panics.clone();
            tokio::spawn(async move {
                let service = |meta: ConnMeta| {
                    service_fn(move |request| {
                        let handler = handler.clone();
                        let meta = meta.clone();
                        let panics = panics.clone();
                        async move {
                            // Its own task, so that a panic is caught here and kept before the
                            // client can see anything, rather than lost with the connection.
                            match tokio::spawn(handler(request, meta)).await {
                                Ok(response) => Ok(response),
                                Err(err) => {
                                    if let Ok(payload) = err.try_into_panic() {
                                        panics
                                            .lock()
                                            .unwrap_or_else(PoisonError::into_inner)
                                            .get_or_insert(payload);
                                    }
                                    Err(HandlerPanicked)
                                }
                            }
                        }
                    })
                };
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let meta = ConnMeta {
                            sni: stream.get_ref().1.server_name().map(str::to_owned),
                        };
                        let _ = http
                            .serve_connection(TokioIo::new(stream), service(meta))
                            .await;
                    }
                    None => {
                        let _ = http
                            .serve_connection(TokioIo::new(stream), service(ConnMeta::default()))
                            .await;
                    }
                }
            });
        }
    });
    Server {
        addr,
        tls: tls.is_some(),
        accept,
        panicked,
    }
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub sni: Option<String>,
}

impl Recorded {
    /// The single value of a header, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        assert!(values.next().is_none(), "{name} appears more than once");
        Some(first.to_str().expect("header is text"))
    }
}

/// An upstream that records every complete request it receives (body included) and answers with
/// `respond`. A request is recorded before its response is sent, so once a client has the
/// response the record is there to read.
pub struct Upstream {
    server: Server,
    received: mpsc::UnboundedReceiver<Recorded>,
}

impl Upstream {
    pub async fn start<R>(respond: R) -> Upstream
    where
        R: Fn(&Recorded) -> Response<ProxyBody> + Send + Sync + 'static,
    {
        Self::start_with(None, respond).await
    }

    pub async fn start_tls<R>(pki: &Pki, respond: R) -> Upstream
    where
        R: Fn(&Recorded) -> Response<ProxyBody> + Send + Sync + 'static,
    {
        Self::start_with(Some(pki.server_config(&[b"http/1.1"])), respond).await
    }

    async fn start_with<R>(tls: Option<Arc<ServerConfig>>, respond: R) -> Upstream
    where
        R: Fn(&Recorded) -> Response<ProxyBody> + Send + Sync + 'static,
    {
        let (sender, received) = mpsc::unbounded_channel();
        let respond = Arc::new(respond);
        let server = serve(tls, move |request: Request<Incoming>, meta: ConnMeta| {
            let sender = sender.clone();
            let respond = respond.clone();
            async move {
                let (parts, body) = request.into_parts();
                // A request whose body was cut off never reached the target as a request.
                let Ok(body) = body.collect().await.map(|c| c.to_bytes()) else {
                    return json(StatusCode::BAD_REQUEST, r#"{"error":"incomplete body"}"#);
                };
                let recorded = Recorded {
                    method: parts.method,
                    uri: parts.uri,
                    headers: parts.headers,
                    body,
                    sni: meta.sni,
                };
                let response = respond(&recorded);
                let _ = sender.send(recorded);
                response
            }
        })
        .await;
        Upstream { server, received }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Everything received since the last call.
    pub fn received(&mut self) -> Vec<Recorded> {
        let mut all = Vec::new();
        while let Ok(recorded) = self.received.try_recv() {
            all.push(recorded);
        }
        all
    }

    /// Stops the upstream and raises its handler's panic, if one happened.
    pub fn finish(self) {
        self.server.finish();
    }

    /// The one request received since the last call; fails the test on none or several.
    pub fn only(&mut self) -> Recorded {
        let mut all = self.received();
        assert_eq!(
            all.len(),
            1,
            "expected exactly one request upstream: {all:#?}"
        );
        all.remove(0)
    }
}

/// `200 {"ok":true}`, for upstreams whose answer does not matter.
pub fn ok(_: &Recorded) -> Response<ProxyBody> {
    json(StatusCode::OK, r#"{"ok":true}"#)
}

pub fn json(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("valid response")
}

/// Starts the proxy from complete config text in which `{upstream}` stands for `upstream`,
/// resolving `{ env = "..." }` from `secrets`. Fails the test with the config error.
pub async fn proxy(toml: &str, upstream: &str, secrets: &[(&str, &str)]) -> Running {
    let toml = toml.replace("{upstream}", upstream);
    let env = |name: &str| {
        secrets
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    };
    let plan = provproxy::config::load_str(&toml, "test.toml", std::path::Path::new("."), &env)
        .unwrap_or_else(|err| panic!("config rejected: {err}\n{toml}"));
    match provproxy::start(plan).await {
        Ok(running) => running,
        Err(err) => panic!("proxy did not start: {err}\n{toml}"),
    }
}

/// A port nothing listens on: bound, then released.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address")
}

/// Collects a response into a [`Reply`].
pub async fn reply<B>(response: Response<B>) -> Reply
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Sends one HTTP/1.1 request on a fresh connection, with exactly the headers given (no
/// client library adding or dropping any), and returns the response head with a streaming body.
pub async fn send_h1(addr: SocketAddr, request: Request<ProxyBody>) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .expect("response in time")
        .expect("response")
}

/// Like [`send_h1`], with the whole body collected.
pub async fn request_h1(addr: SocketAddr, request: Request<ProxyBody>) -> Reply {
    reply(send_h1(addr, request).await).await
}

/// Like [`request_h1`], for tests where the proxy may close the connection instead of
/// answering: the error is returned, not a failed test.
pub async fn try_request_h1(
    addr: SocketAddr,
    request: Request<ProxyBody>,
) -> Result<Reply, hyper::Error> {
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let (parts, body) = sender.send_request(request).await?.into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

/// Reads from a raw target's connection until a request head is complete; `None` when the
/// connection ends first.
pub async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

/// `GET path` to the proxy with these headers; `Host` is the proxy's address unless given.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut builder = Request::get(path);
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        builder = builder.header(http::header::HOST, addr.to_string());
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    request_h1(addr, builder.body(full("")).expect("request")).await
}

/// Sends a request over HTTP/2 with prior knowledge (h2c), the way gRPC-style and some SCIM
/// clients talk to a plain-text endpoint. Returns the version the response came on.
pub async fn request_h2c(request: Request<ProxyBody>) -> (Version, Reply) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<ProxyBody>();
    let response = tokio::time::timeout(PATIENCE, client.request(request))
        .await
        .expect("response in time")
        .expect("HTTP/2 response");
    (response.version(), reply(response).await)
}

/// A throwaway PKI in a temporary directory: a CA, and a server certificate it signed for
/// `localhost` and `127.0.0.1`, as PEM files.
pub struct Pki {
    /// Deleted on drop, so held as long as the paths below are in use.
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    ca_der: CertificateDer<'static>,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "provproxy test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let server_key = rcgen::KeyPair::generate().expect("server key");
        let mut server_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        server_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let server_cert = server_params
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("sign server certificate");
        let write = |name: &str, contents: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).expect("write PEM");
            path
        };
        Pki {
            ca: write("ca.pem", ca_cert.pem()),
            cert: write("server.pem", server_cert.pem()),
            key: write("server-key.pem", server_key.serialize_pem()),
            ca_der: ca_cert.der().clone(),
            cert_der: server_cert.der().clone(),
            key_der: server_key.serialize_der(),
            _dir: dir,
        }
    }

    /// A server configuration with the `localhost` certificate, offering these ALPN protocols.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A client configuration that trusts only this CA, offering these ALPN protocols.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add test CA");
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// What a TLS client saw: the negotiated ALPN protocol, the response's HTTP version, the reply.
#[derive(Debug)]
pub struct TlsReply {
    pub alpn: Option<Vec<u8>>,
    pub version: Version,
    pub reply: Reply,
}

/// GETs `path` from a TLS listener at `addr` as `localhost`, trusting only the test CA,
/// offering `alpn`; speaks HTTP/2 when the server picks `h2`, HTTP/1.1 otherwise.
pub async fn get_tls(pki: &Pki, addr: SocketAddr, alpn: &[&[u8]], path: &str) -> TlsReply {
    let connector = TlsConnector::from(pki.client_config(alpn));
    let tcp = TcpStream::connect(addr)
        .await
        .expect("connect to TLS listener");
    let server_name = ServerName::try_from("localhost").expect("server name");
    let stream = connector
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake with the proxy");
    let negotiated = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let authority = format!("localhost:{}", addr.port());
    let response = if negotiated.as_deref() == Some(b"h2") {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        let request = Request::get(format!("https://{authority}{path}"))
            .body(full(""))
            .expect("request");
        tokio::time::timeout(PATIENCE, sender.send_request(request))
            .await
            .expect("response in time")
            .expect("HTTP/2 response")
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(http::header::HOST, authority)
            .body(full(""))
            .expect("request");
        tokio::time::timeout(PATIENCE, sender.send_request(request))
            .await
            .expect("response in time")
            .expect("HTTP/1.1 response")
    };
    TlsReply {
        alpn: negotiated,
        version: response.version(),
        reply: reply(response).await,
    }
}

/// The JSON body of an error reply.
pub fn error_body(reply: &Reply) -> serde_json::Value {
    assert_eq!(
        reply
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "error replies are JSON: {reply:?}"
    );
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|err| panic!("error body is not JSON ({err}): {}", reply.text()))
}
