//! The HTTP server: actix-web's `HttpServer`, assembled from its parts so
//! that every connection, after TLS, goes through [`ProblemIo`].
//!
//! `HttpServer` fixes the connection type to the socket (or its TLS
//! stream), so it cannot wrap it; this builds the same pipeline with the
//! same settings (`HttpServer::listen` / `listen_rustls_0_23` in
//! actix-web 4.18) and one wrapper more.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::{HttpService, KeepAlive, Protocol};
use actix_server::{GracefulShutdownSignal, Server, ServerBuilder};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt as _,
};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_tls::accept::TlsError;
use actix_web::dev::{AppConfig, ServiceRequest, ServiceResponse};
use actix_web::rt::net::TcpStream;
use actix_web::App;

use super::raw_errors::ProblemIo;

/// The service an actix-web `App<T>` is built on: `T` here.
pub trait AppService<B>:
    ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<B>,
        Error = actix_web::Error,
        InitError = (),
    > + 'static
{
}

impl<T, B> AppService<B> for T where
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static
{
}

/// What actix-web's `HttpServer` gives a client to close after the answer.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the app built by `factory` on `listener`, over TLS when `tls` is
/// set, with `workers` worker threads, giving clients `head_timeout` to send
/// a request head. Signals are left to the caller.
pub fn serve<F, T, B>(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    workers: usize,
    head_timeout: Duration,
    factory: F,
) -> io::Result<Server>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: AppService<B>,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let builder = ServerBuilder::default().workers(workers).disable_signals();
    let signal = builder.graceful_shutdown_signal();
    let name = format!("asapd-{addr}");
    let builder = match tls {
        None => builder.listen(name, listener, move || {
            fn_service(move |io: TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok((ProblemIo::new(io, head_timeout), Protocol::Http1, peer))
            })
            .and_then(http_service(
                &factory,
                addr,
                false,
                head_timeout,
                signal.clone(),
            ))
        })?,
        Some(mut config) => {
            // What actix-web offers in ALPN without its `http2` feature.
            let mut protocols = vec![b"http/1.1".to_vec()];
            protocols.append(&mut config.alpn_protocols);
            config.alpn_protocols = protocols;
            builder.listen(name, listener, move || {
                Acceptor::new(config.clone())
                    .map_init_err(|_| unreachable!("the TLS acceptor has no init error"))
                    .map_err(TlsError::into_service_error)
                    .and_then(fn_service(move |io: TlsStream<TcpStream>| async move {
                        let peer = io.get_ref().0.peer_addr().ok();
                        Ok((ProblemIo::new(io, head_timeout), Protocol::Http1, peer))
                    }))
                    .and_then(
                        http_service(&factory, addr, true, head_timeout, signal.clone())
                            .map_err(TlsError::Service),
                    )
            })?
        }
    };
    Ok(builder.run())
}

/// actix-web's HTTP service over connections of type `T`.
fn http_service<IO, F, T, B>(
    factory: &F,
    addr: SocketAddr,
    secure: bool,
    head_timeout: Duration,
    signal: GracefulShutdownSignal,
) -> impl ServiceFactory<
    (ProblemIo<IO>, Protocol, Option<SocketAddr>),
    Config = (),
    Response = (),
    Error = actix_http::error::DispatchError,
    InitError = (),
>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
    F: Fn() -> App<T>,
    T: AppService<B>,
    B: MessageBody + 'static,
{
    let app = factory()
        .into_factory()
        .map_err(|err: actix_web::Error| err.error_response());
    // `HttpServer` builds this with a crate-private constructor; this is
    // the one it exports (for actix-test).
    let config = AppConfig::__priv_test_new(secure, addr.to_string(), addr);
    HttpService::build()
        .graceful_shutdown_signal(move || {
            let signal = signal.clone();
            async move { signal.notified().await }
        })
        .keep_alive(KeepAlive::default())
        .client_request_timeout(head_timeout)
        .client_disconnect_timeout(DISCONNECT_TIMEOUT)
        .local_addr(addr)
        .finish(map_config(app, move |_| config.clone()))
}
