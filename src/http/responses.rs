//! The error answers many operations share, documented once.
//!
//! The admin gate, the JSON extractor and the database answer the same way
//! for every operation they guard, so their statuses are added here, by
//! what an operation is (admin, JSON body, query, path parameters), rather
//! than repeated in each handler's annotation, where one would be
//! forgotten. Statuses a handler documents itself keep its wording.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, ResponseBuilder};

use crate::http::error::PROBLEM_JSON;

/// A shared response: its status, component name and description.
struct Shared {
    status: &'static str,
    name: &'static str,
    description: &'static str,
}

const BAD_REQUEST: Shared = Shared {
    status: "400",
    name: "BadRequest",
    description: "Malformed input; `field` names the field or parameter at fault",
};
const UNAUTHORIZED: Shared = Shared {
    status: "401",
    name: "AdminUnauthorized",
    description: "Missing or wrong credentials (HTTP Basic, or a Bearer token from asapd)",
};
const FORBIDDEN: Shared = Shared {
    status: "403",
    name: "Forbidden",
    description: "Authenticated, but not in group admin (auditor: reads only)",
};
const NOT_FOUND: Shared = Shared {
    status: "404",
    name: "NotFound",
    description: "No such resource",
};
const TOO_LARGE: Shared = Shared {
    status: "413",
    name: "PayloadTooLarge",
    description: "The body is larger than `http.max_body_bytes` (default 65536)",
};
const UNSUPPORTED: Shared = Shared {
    status: "415",
    name: "UnsupportedMediaType",
    description: "The body is not sent as `application/json`",
};
const RATE_LIMITED: Shared = Shared {
    status: "429",
    name: "TooManyRequests",
    description:
        "Too many failed authentications from this address; retry after `Retry-After` seconds",
};
const UNAVAILABLE: Shared = Shared {
    status: "503",
    name: "Unavailable",
    description: "The database is unavailable; nothing was changed; retry later",
};

const ALL: [&Shared; 8] = [
    &BAD_REQUEST,
    &UNAUTHORIZED,
    &FORBIDDEN,
    &NOT_FOUND,
    &TOO_LARGE,
    &UNSUPPORTED,
    &RATE_LIMITED,
    &UNAVAILABLE,
];

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

fn component(shared: &Shared) -> Response {
    let mut response = ResponseBuilder::new()
        .description(shared.description)
        .content(
            PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        );
    if shared.status == "401" {
        response = response.header(
            "WWW-Authenticate",
            string_header("`Basic realm=\"asapd\"` and `Bearer realm=\"asapd\"`"),
        );
    }
    if shared.status == "429" {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                ))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    response.build()
}

fn add(op: &mut Operation, shared: &Shared) {
    op.responses
        .responses
        .entry(shared.status.to_owned())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(shared.name)));
}

fn has_json_body(op: &Operation) -> bool {
    op.request_body
        .as_ref()
        .is_some_and(|b| matches!(b, RefOr::T(b) if b.content.contains_key("application/json")))
}

fn has_parameter(op: &Operation, location: ParameterIn) -> bool {
    op.parameters
        .iter()
        .flatten()
        .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == location))
}

/// Adds the shared statuses to every operation they apply to, and the
/// shared responses to the components.
pub fn document_shared_errors(api: &mut OpenApi) {
    for (path, item) in api.paths.paths.iter_mut() {
        let admin = path.starts_with("/v1/admin/");
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            if admin {
                for shared in [&UNAUTHORIZED, &FORBIDDEN, &RATE_LIMITED, &UNAVAILABLE] {
                    add(op, shared);
                }
            }
            if has_json_body(op) {
                for shared in [&BAD_REQUEST, &TOO_LARGE, &UNSUPPORTED] {
                    add(op, shared);
                }
            }
            if has_parameter(op, ParameterIn::Query) {
                add(op, &BAD_REQUEST);
            }
            if has_parameter(op, ParameterIn::Path) {
                add(op, &NOT_FOUND);
            }
        }
    }
    let components = api.components.get_or_insert_with(Default::default);
    for shared in ALL {
        components
            .responses
            .insert(shared.name.to_owned(), RefOr::T(component(shared)));
    }
}
