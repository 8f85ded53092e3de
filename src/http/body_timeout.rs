//! A deadline on request bodies. actix-http times out a request head that
//! does not arrive (408, see `raw_errors`) but not a body: a client that
//! sends a head with `Content-Length: 1000` and then one byte a minute
//! would hold its connection, and the handler waiting on it, for ever.
//!
//! The body stream a handler reads ends in an error once
//! `http.body_timeout_secs` have passed since the head arrived; whatever
//! the handler made of that error is replaced by a 408 problem, and the
//! connection is closed, since the rest of the body may still come. (A
//! body the handler leaves unread already closes the connection after the
//! answer: actix-http does that itself.)

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, Data};
use actix_web::{HttpMessage, HttpResponse};
use futures_util::Stream;
use tokio::time::Sleep;

use super::request_id::RequestId;
use crate::http::error::{Problem, PROBLEM_JSON};
use crate::state::AppState;

/// A body stream that fails once its deadline has passed.
struct Deadline {
    inner: Payload,
    sleep: Pin<Box<Sleep>>,
    /// Set when the deadline cut the body off.
    expired: Arc<AtomicBool>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        ready!(self.sleep.as_mut().poll(cx));
        self.expired.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request body did not arrive in time",
        )))))
    }
}

/// Puts the deadline on every request with a body.
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let secs = req
        .app_data::<Data<AppState>>()
        .map_or(10, |s| s.settings.http.body_timeout_secs);
    let expired = Arc::new(AtomicBool::new(false));
    let deadline = Deadline {
        inner: payload,
        sleep: Box::pin(tokio::time::sleep(Duration::from_secs(secs))),
        expired: expired.clone(),
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(deadline),
    });
    let request_id = req.extensions().get::<RequestId>().map(|id| id.0.clone());
    let res = next.call(req).await?.map_into_boxed_body();
    if !expired.load(Ordering::Relaxed) {
        return Ok(res);
    }
    tracing::info!(
        timeout_secs = secs,
        "request body too slow; closing the connection"
    );
    Ok(res.into_response(timed_out(secs, request_id)))
}

fn timed_out(secs: u64, request_id: Option<String>) -> HttpResponse {
    let problem = Problem {
        kind: "urn:asapd:problem:request-timeout".into(),
        title: "Request Timeout",
        status: StatusCode::REQUEST_TIMEOUT.as_u16(),
        detail: format!(
            "the request body did not arrive within {secs} seconds (http.body_timeout_secs)"
        ),
        request_id,
        field: None,
    };
    HttpResponse::build(StatusCode::REQUEST_TIMEOUT)
        .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
        .force_close()
        .json(problem)
}
