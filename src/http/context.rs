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
use crate::http::error::ApiError;
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

impl RequestMeta {
    pub fn of(req: &HttpRequest) -> Self {
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
        let client_ip = match req.app_data::<Data<AppState>>() {
            Some(state) => client_ip(
                req,
                &state.settings.http.trusted_proxies,
                &state.settings.http.forwarded_header,
            ),
            None => req.peer_addr().map(|a| a.ip()),
        };
        RequestMeta {
            request_id,
            client_ip,
        }
    }
}

impl FromRequest for RequestMeta {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(RequestMeta::of(req)))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter()
            .map(|c| Cidr::try_from(c.to_string()).unwrap())
            .collect()
    }

    fn ip(req: TestRequest, trusted: &[&str]) -> Option<IpAddr> {
        client_ip(&req.to_http_request(), &cidrs(trusted), "X-Forwarded-For")
    }

    fn from(peer: &str) -> TestRequest {
        TestRequest::default().peer_addr(format!("{peer}:4000").parse().unwrap())
    }

    fn some(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_socket_peer_without_trusted_proxies() {
        assert_eq!(ip(from("10.0.0.9"), &[]), some("10.0.0.9"));
    }

    #[test]
    fn a_forged_header_from_an_untrusted_peer_is_ignored() {
        let req = from("10.0.0.9").insert_header(("X-Forwarded-For", "192.168.1.1"));
        assert_eq!(ip(req, &["127.0.0.1"]), some("10.0.0.9"));
    }

    #[test]
    fn a_trusted_proxy_forwards_the_client() {
        let req = from("127.0.0.1").insert_header(("X-Forwarded-For", "192.168.1.1"));
        assert_eq!(ip(req, &["127.0.0.1"]), some("192.168.1.1"));
    }

    #[test]
    fn the_right_most_untrusted_hop_wins() {
        // The client forged the first entry; the proxies appended the rest.
        let req =
            from("127.0.0.1").insert_header(("X-Forwarded-For", "1.2.3.4, 192.168.1.1, 10.0.0.2"));
        assert_eq!(ip(req, &["127.0.0.1", "10.0.0.0/8"]), some("192.168.1.1"));
    }

    #[test]
    fn garbage_in_the_chain_stops_the_walk() {
        let req = from("127.0.0.1").insert_header(("X-Forwarded-For", "nonsense, 10.0.0.2"));
        assert_eq!(ip(req, &["127.0.0.1", "10.0.0.0/8"]), some("10.0.0.2"));
        let req = from("127.0.0.1").insert_header(("X-Forwarded-For", "nonsense"));
        assert_eq!(ip(req, &["127.0.0.1"]), some("127.0.0.1"));
    }

    #[test]
    fn without_a_header_a_trusted_peer_is_the_client() {
        assert_eq!(ip(from("127.0.0.1"), &["127.0.0.1"]), some("127.0.0.1"));
    }
}
