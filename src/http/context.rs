//! Where a request comes from: request id and client address.
//!
//! The client address is the socket peer, or the configured forwarding
//! header's right-most untrusted entry when the peer is a trusted proxy. A
//! forged `X-Forwarded-For` from anyone else is ignored.

use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::future::{ready, Ready};

use crate::audit::Origin;
use crate::domain::group::Cidr;
use crate::error::ApiError;
use crate::http::request_id::RequestId;
use crate::state::AppState;

/// Request facts every audit record carries.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
}

impl RequestMeta {
    /// The origin of events this request causes, before authentication.
    pub fn origin(&self, actor: &str) -> Origin {
        Origin {
            actor: actor.to_owned(),
            source_ip: self.client_ip,
            request_id: self.request_id.clone(),
        }
    }
}

pub fn client_ip(req: &HttpRequest, trusted: &[Cidr], header: &str) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.iter().any(|c| c.contains(peer)) {
        return Some(peer);
    }
    // Walk the chain right to left: each hop was added by the proxy after
    // it; the first address that is not a trusted proxy is the client.
    let hops: Vec<&str> = req
        .headers()
        .get_all(header)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted.iter().any(|c| c.contains(ip)) {
                    return Some(client);
                }
            }
            Err(_) => return Some(client),
        }
    }
    Some(client)
}

impl FromRequest for RequestMeta {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
        let client_ip = match req.app_data::<Data<AppState>>() {
            Some(state) => client_ip(
                req,
                &state.settings.http.trusted_proxies,
                &state.settings.http.forwarded_header,
            ),
            None => req.peer_addr().map(|a| a.ip()),
        };
        ready(Ok(RequestMeta {
            request_id,
            client_ip,
        }))
    }
}
