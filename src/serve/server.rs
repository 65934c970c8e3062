//! The listener, connections (HTTP/1.1 and HTTP/2) and graceful shutdown.
//!
//! [`Server::run`] takes a shutdown future, mini-redis style: when it completes the server stops
//! accepting, gives in-flight requests up to the shutdown timeout to finish, then flushes the
//! store. Tests bind `127.0.0.1:0` and read the real address back from [`Server::local_addr`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::Error;
use crate::serve::connections::{AcceptErrors, Admission, Connections, Ended, Registered};
use crate::serve::mode::Mode;
use crate::serve::outcome::ResetConnection;
use crate::serve::proxy::Proxy;
use crate::serve::request::PREFIX;
use crate::serve::summary::Summary;

/// A bound, ready server: the cassette is loaded and the port is taken.
pub struct Server {
    listener: TcpListener,
    proxy: Arc<Proxy>,
    connections: Arc<Connections>,
    addr: SocketAddr,
    shutdown_timeout: Duration,
}

impl Server {
    /// Opens the proxy (store, cassette, upstream) for `mode` and binds `config.listen`.
    pub async fn bind(config: &Config, mode: Mode) -> Result<Server, Error> {
        let proxy = crate::serve::startup::open(config, mode)?;
        let listener = TcpListener::bind(config.listen).await.map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
        Server::from_listener(listener, proxy, config)
    }

    /// A server on an already bound listener.
    pub fn from_listener(listener: TcpListener, proxy: Proxy, config: &Config) -> Result<Server, Error> {
        let addr = listener
            .local_addr()
            .map_err(Error::io("read the listening address", None))?;
        Ok(Server {
            listener,
            proxy: Arc::new(proxy),
            connections: Arc::new(Connections::new(config.max_connections, config.client_timeout)),
            addr,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The address actually bound (the real port when listening on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give a Plaid client: `http://IP:PORT/plaid-compatible`.
    pub fn base_url(&self) -> String {
        base_url(self.addr)
    }

    /// The base URL that puts a Plaid client's requests in session `name` (see
    /// `docs/sessions.md`): `http://IP:PORT/sessions/NAME/plaid-compatible`.
    pub fn session_url(&self, name: &str) -> String {
        session_url(self.addr, name)
    }

    /// Serves until `shutdown` completes, then drains connections (bounded by the shutdown
    /// timeout), lets the writer finish, flushes the store and returns the session summary.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Summary, Error> {
        let Server {
            listener,
            proxy,
            connections,
            shutdown_timeout,
            ..
        } = self;
        let builder = auto::Builder::new(TokioExecutor::new());
        // Closes connections idle for the client timeout; stops with this function.
        let sweeper = AbortOnDrop(tokio::spawn({
            let connections = connections.clone();
            async move {
                let mut tick = tokio::time::interval(connections.sweep_every());
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    connections.sweep();
                }
            }
        }));
        let mut accept_errors = AcceptErrors::default();
        let mut refusals = AcceptErrors::default();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            // Out of file descriptors and the like: keep serving, but do not
                            // spin and do not flood the log.
                            let pause = accept_errors.failed("accept failed", &e);
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                    };
                    accept_errors.succeeded();
                    let connection = match connections.admit() {
                        Admission::Admitted(connection) => connection,
                        Admission::Refused => {
                            // Dropping the stream closes it: every open connection is busy.
                            refusals.failed(
                                "connection refused: max_connections reached and every connection has a request in flight",
                                &format_args!("{} open", connections.len()),
                            );
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let proxy = proxy.clone();
                    let service_connection = connection.clone();
                    let service = service_fn(move |request| {
                        let proxy = proxy.clone();
                        let busy = service_connection.busy();
                        async move {
                            let mut response = proxy.handle(request).await;
                            // A reset or timeout fault: no answer at all; hyper closes the
                            // connection on a service error.
                            if let Some(reset) = response.extensions().get::<ResetConnection>() {
                                return Err(*reset);
                            }
                            // Busy until the answer is written (or the client goes away), not
                            // only until it is ready: the sweep never closes a connection that
                            // is still writing a large answer to a slow reader.
                            response.body_mut().hold(busy);
                            Ok(response)
                        }
                    });
                    let served = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    // Declared first, dropped last: the connection leaves the registry only
                    // once its task has let go of everything (the proxy included).
                    let registered = Registered::new(connections.clone(), connection.clone());
                    tokio::spawn(async move {
                        let _registered = registered;
                        match connection.serve(served).await {
                            Ended::Served(Ok(())) => {}
                            Ended::Served(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                            // Dropping the connection (here) closes the socket.
                            Ended::Closed => {
                                tracing::debug!(%peer, "closing a connection: idle, evicted, or past the shutdown timeout");
                            }
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        tracing::info!("shutting down: finishing in-flight requests");
        connections.finish_all();
        if tokio::time::timeout(shutdown_timeout, connections.drained())
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?shutdown_timeout, "in-flight requests did not finish in time; closing them");
            connections.close_all();
        }
        drop(sweeper);
        // Webhooks queued after answers already sent still go out (bounded like the requests).
        proxy.finish_deliveries(shutdown_timeout).await;
        // A connection's task lets go of the proxy a moment after its connection ended; the
        // store (and its lock) must be released when this returns, so that a caller can open it
        // again at once. Bounded: a task still holding it past the timeout is logged, not awaited.
        let released = tokio::time::timeout(shutdown_timeout, async {
            while Arc::strong_count(&proxy) > 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        if released.await.is_err() {
            tracing::warn!("a connection task still holds the store after the shutdown timeout; it is released when that task ends");
        }
        // The writer finishes what is queued (fsyncs: off the runtime's workers).
        let closing = proxy.clone();
        tokio::task::spawn_blocking(move || closing.close())
            .await
            .map_err(|e| Error::io("finish recording and flush the store", None)(std::io::Error::other(e)))??;
        tracing::info!("stopped");
        proxy.summary()
    }

    /// Runs the server on a background task; drop or [`RunningServer::stop`] the handle to
    /// shut it down. This is how Rust tests use plaid-vcr in-process.
    pub fn spawn(self) -> RunningServer {
        let addr = self.addr;
        let connections = self.connections.clone();
        let webhook_key_id = self.proxy.webhook_key_id().map(str::to_owned);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            let _ = rx.await;
        }));
        RunningServer {
            addr,
            connections,
            webhook_key_id,
            stop: Some(tx),
            task: Some(task),
        }
    }
}

/// Aborts its task when dropped (the sweeper, if `run` itself is dropped midway).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A server running on a background task.
pub struct RunningServer {
    addr: SocketAddr,
    connections: Arc<Connections>,
    webhook_key_id: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<Summary, Error>>>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give a Plaid client: `http://IP:PORT/plaid-compatible`.
    pub fn base_url(&self) -> String {
        base_url(self.addr)
    }

    /// The base URL that puts a Plaid client's requests in session `name` (see
    /// `docs/sessions.md`): `http://IP:PORT/sessions/NAME/plaid-compatible`.
    pub fn session_url(&self, name: &str) -> String {
        session_url(self.addr, name)
    }

    /// The key id replayed webhooks are signed with (`None` in `record`), which
    /// `/webhook_verification_key/get` answers for.
    pub fn webhook_key_id(&self) -> Option<&str> {
        self.webhook_key_id.as_deref()
    }

    /// Requests being answered right now (tests use it to act at an exact moment).
    pub fn requests_in_flight(&self) -> usize {
        self.connections.requests_in_flight()
    }

    /// Shuts down gracefully, waits until the store is flushed and released, and returns the
    /// session summary.
    pub async fn stop(mut self) -> Result<Summary, Error> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| Error::io("stop the server", None)(std::io::Error::other(e)))?,
            // Only `stop` takes the task, and it consumes the handle.
            None => Err(Error::io("stop the server", None)(std::io::Error::other(
                "it was already stopped",
            ))),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // Signals shutdown; the task finishes draining on its own.
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A replay server for Rust tests, in-process: replays `cassette` on a free loopback port with
/// a private temporary store, so tests can run in parallel. Drop it or call
/// [`ReplayServer::stop`] (which also returns the session summary) to shut it down.
pub struct ReplayServer {
    server: RunningServer,
    // Dropped after `server`, so the store outlives the shutdown signal.
    _store: tempfile::TempDir,
}

impl ReplayServer {
    /// Starts replaying `cassette` (a directory of recorded interactions).
    pub async fn start(cassette: impl Into<std::path::PathBuf>) -> Result<ReplayServer, Error> {
        Self::start_with(Config {
            cassette: cassette.into(),
            ..Config::default()
        })
        .await
    }

    /// Starts replaying with `config`; its `listen` and `store` are replaced by a free loopback
    /// port and a temporary store.
    pub async fn start_with(mut config: Config) -> Result<ReplayServer, Error> {
        let store = tempfile::Builder::new()
            .prefix("plaid-vcr-store-")
            .tempdir()
            .map_err(Error::io("create a temporary store in", Some(&std::env::temp_dir())))?;
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.store = store.path().to_owned();
        let server = Server::bind(&config, Mode::Replay).await?.spawn();
        Ok(ReplayServer { server, _store: store })
    }

    /// The base URL to give a Plaid client: `http://127.0.0.1:PORT/plaid-compatible`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The key id replayed webhooks are signed with (see `webhooks::signer`).
    pub fn webhook_key_id(&self) -> Option<&str> {
        self.server.webhook_key_id()
    }

    /// Shuts down and returns the session summary (hits, misses, unused recordings).
    pub async fn stop(self) -> Result<Summary, Error> {
        self.server.stop().await
    }
}

/// `http://IP:PORT/plaid-compatible` for a server listening on `addr`.
fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}{PREFIX}")
}

/// The base URL of session `name` on a server listening on `addr`.
fn session_url(addr: SocketAddr, name: &str) -> String {
    format!("http://{addr}{}{name}{PREFIX}", crate::serve::session::PATH_PREFIX)
}
