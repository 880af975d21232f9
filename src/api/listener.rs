//! The REST API's accept loop: a few threads of its own, one actix-http
//! service per connection.
//!
//! Why not actix-web's `HttpServer`: each of its worker threads keeps a
//! clock for the `Date` header that ticks twice a second for as long as the
//! server runs (actix-http's `DateService`; actix/actix-web issue #3411).
//! On an idle node those ticks were 70% of the daemon's CPU (perf, default
//! timing). Here the service, and with it that clock, lives only as long as
//! a connection: an idle daemon with no client has no HTTP timer at all.
//! Building the service per connection costs tens of microseconds, once per
//! connection; keep-alive clients pay it once.
//!
//! Invariants kept from `HttpServer`:
//! - the HTTP work runs on threads of its own ([`Limits::threads`]
//!   arbiters; connections are handed to them in turn), so a burst of
//!   clients (or a slow TLS handshake) delays the HA actors only by the
//!   status questions the requests ask them; an idle arbiter thread sleeps
//!   in its reactor and costs nothing;
//! - at most [`Limits::max_connections`] connections are open at a time:
//!   beyond it the loop stops accepting and clients wait in the listen
//!   backlog until one closes;
//! - a failing `accept` (no file descriptor left) pauses the loop briefly
//!   instead of spinning or ending the server.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix::ArbiterHandle;
use actix_http::{HttpService, Request, Response, body::MessageBody};
use actix_service::{IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt, map_config};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use tokio::sync::{Semaphore, oneshot};

/// Timeouts and the connection bound of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long an idle keep-alive connection stays open.
    pub keep_alive: Duration,
    /// How long a request's head may take to arrive (then 408).
    pub request_timeout: Duration,
    /// How long a closing connection may take to shut down.
    pub disconnect_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Threads serving connections (at least one; the first also accepts).
    pub threads: usize,
}

/// How long the loop pauses after `accept` failed for want of a resource
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM): long enough for connections to close,
/// short enough that a health check waiting in the backlog is not failed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Marks a connection that came over TLS (read by the extra-headers
/// middleware: Patroni sends its `https` headers there).
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// The running server: resolves only if its thread ends, with the error
/// that ended it.
pub struct ApiServer {
    done: oneshot::Receiver<io::Result<()>>,
}

impl Future for ApiServer {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.done)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(io::Error::other("the REST API thread ended"))))
    }
}

/// Serve `listener` on a new thread (an actix arbiter: call inside an
/// actix `System`). `app` builds the actix-web application, once per
/// connection; `tls` makes every connection HTTPS; `on_tls` sees each TLS
/// connection once its handshake is done.
pub fn spawn<F, I, S, B>(
    listener: TcpListener,
    app: F,
    tls: Option<rustls::ServerConfig>,
    on_tls: fn(&TlsStream, &mut actix_http::Extensions),
    limits: Limits,
) -> io::Result<ApiServer>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let (tx, done) = oneshot::channel();
    // Dropping an `Arbiter` leaves its thread running; the handles keep
    // their event loops reachable for as long as the accept loop runs.
    let workers: Vec<ArbiterHandle> = (0..limits.threads.max(1))
        .map(|_| actix::Arbiter::new().handle())
        .collect();
    let acceptor = workers[0].clone();
    let spawned = acceptor.spawn(async move {
        let result = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => accept_loop(listener, local, app, tls, on_tls, limits, workers).await,
            Err(e) => Err(e),
        };
        let _ = tx.send(result);
    });
    if !spawned {
        return Err(io::Error::other("cannot start the REST API thread"));
    }
    Ok(ApiServer { done })
}

/// The TLS stream type of a connection.
pub type TlsStream = actix_tls::accept::rustls_0_23::TlsStream<TcpStream>;

async fn accept_loop<F, I, S, B>(
    listener: tokio::net::TcpListener,
    local: SocketAddr,
    app: F,
    tls: Option<rustls::ServerConfig>,
    on_tls: fn(&TlsStream, &mut actix_http::Extensions),
    limits: Limits,
    workers: Vec<ArbiterHandle>,
) -> io::Result<()>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut next = 0usize;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return Ok(()); // the semaphore is never closed
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                tracing::warn!(event = crate::events::API_ACCEPT_FAILED, error = %e);
                actix_web::rt::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // A tokio stream is bound to the reactor of the thread that
        // accepted it: hand the worker the plain socket (still
        // non-blocking) and let it register the socket with its own.
        let socket = match stream.into_std() {
            Ok(socket) => socket,
            Err(e) => {
                tracing::debug!(event = crate::events::API_CONNECTION_ENDED, error = %e);
                continue;
            }
        };
        let worker = &workers[next % workers.len()];
        next = next.wrapping_add(1);
        let app = app.clone();
        let tls = tls.clone();
        // The service's futures are not `Send`: send the worker a closure
        // that builds them on its own thread.
        worker.spawn_fn(move || {
            actix_web::rt::spawn(async move {
                match TcpStream::from_std(socket) {
                    Ok(stream) => serve_connection(stream, local, app, tls, on_tls, limits).await,
                    Err(e) => {
                        tracing::debug!(event = crate::events::API_CONNECTION_ENDED, error = %e)
                    }
                }
                drop(slot);
            });
        });
    }
}

/// Errors of one connection that came and went before `accept` returned.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// One connection, start to close, with a service of its own.
async fn serve_connection<F, I, S, B>(
    stream: TcpStream,
    local: SocketAddr,
    app: F,
    tls: Option<rustls::ServerConfig>,
    on_tls: fn(&TlsStream, &mut actix_http::Extensions),
    limits: Limits,
) where
    F: Fn() -> I,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let _ = stream.set_nodelay(true);
    // actix-web's own constructor of the application's view of the listener
    // is private; no route reads it (`secure` comes from [`OverTls`]).
    let factory = map_config(
        app().into_factory().map_err(|e| e.into().error_response()),
        |()| AppConfig::default(),
    );
    // One builder per stream type (its type parameter).
    macro_rules! builder {
        () => {
            HttpService::build()
                .keep_alive(limits.keep_alive)
                .client_request_timeout(limits.request_timeout)
                .client_disconnect_timeout(limits.disconnect_timeout)
                .local_addr(local)
        };
    }
    let result = match tls {
        None => match builder!().finish(factory).tcp().new_service(()).await {
            Ok(svc) => svc.call(stream).await.map_err(|e| e.to_string()),
            Err(()) => Err("cannot build the service".to_owned()),
        },
        Some(config) => {
            let svc = builder!()
                .on_connect_ext(move |io: &TlsStream, ext: &mut actix_http::Extensions| {
                    ext.insert(OverTls);
                    on_tls(io, ext);
                })
                .finish(factory)
                .rustls_0_23(config)
                .new_service(())
                .await;
            match svc {
                Ok(svc) => svc.call(stream).await.map_err(|e| format!("{e:?}")),
                Err(()) => Err("cannot build the service".to_owned()),
            }
        }
    };
    if let Err(e) = result {
        // A client that went away, a TLS handshake refused, a timeout:
        // the connection's own business, as with actix-web's server.
        tracing::debug!(event = crate::events::API_CONNECTION_ENDED, error = %e);
    }
}
