//! The token request form (RFC 6749 §4.4.2, RFC 8707 §2).

use std::borrow::Cow;

use crate::domain::denial::{Denial, Rule};
use crate::domain::grants::parse_audiences;
use crate::service::tokens::TokenRequest;

use super::error::OAuth2Error;

/// The parsed form. Single-valued parameters may appear once (RFC 6749
/// §3.2); `audience` and `resource` repeat.
#[derive(Default)]
pub(super) struct Form {
    grant_type: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    /// RFC 7523 §2.2 client authentication (`assertion.rs`).
    pub(super) client_assertion_type: Option<String>,
    pub(super) client_assertion: Option<String>,
    scope: Option<String>,
    audience: Vec<String>,
    resource: Vec<String>,
    /// Introspection (RFC 7662 §2.1) and revocation (RFC 7009 §2.1).
    pub(super) token: Option<String>,
    /// Only a hint: asapd has one kind of token and ignores it.
    token_type_hint: Option<String>,
    /// Token exchange (RFC 8693 §2.1).
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    requested_token_type: Option<String>,
}

/// RFC 8693's grant type, and the one token type asapd takes and issues.
pub(super) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(super) const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The `name=value` pairs of an `application/x-www-form-urlencoded` body,
/// decoded exactly as `form_urlencoded::parse` decodes them (the URL
/// Standard's rules), but borrowed where there is nothing to decode. Every
/// introspection and revocation carries a ~600-byte token of base64url and
/// dots, which the general decoder walked three times byte by byte (for
/// `+`, for `%`, then to check UTF-8) and copied; `benches/README.md`
/// ("Where introspection's time goes") has the figures.
pub(super) fn pairs(body: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            if memchr::memchr2(b'+', b'%', pair).is_some() {
                // Something to decode: the general decoder, on this pair only.
                if let Some((name, value)) = url::form_urlencoded::parse(pair).next() {
                    return (name, value);
                }
            }
            match memchr::memchr(b'=', pair) {
                Some(i) => (text(&pair[..i]), text(&pair[i + 1..])),
                None => (text(pair), Cow::Borrowed("")),
            }
        })
}

/// Bytes as text, invalid UTF-8 replaced (as the URL Standard's decoder
/// does); valid text, the usual case, is borrowed.
fn text(raw: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(raw),
    }
}

impl Form {
    pub(super) fn parse(body: &[u8]) -> Result<Self, OAuth2Error> {
        let mut form = Form::default();
        for (name, value) in pairs(body) {
            let slot = match name.as_ref() {
                "grant_type" => &mut form.grant_type,
                "client_id" => &mut form.client_id,
                "client_secret" => &mut form.client_secret,
                "client_assertion_type" => &mut form.client_assertion_type,
                "client_assertion" => &mut form.client_assertion,
                "scope" => &mut form.scope,
                "token" => &mut form.token,
                "token_type_hint" => &mut form.token_type_hint,
                "subject_token" => &mut form.subject_token,
                "subject_token_type" => &mut form.subject_token_type,
                "requested_token_type" => &mut form.requested_token_type,
                "audience" => {
                    form.audience.push(value.into_owned());
                    continue;
                }
                "resource" => {
                    form.resource.push(value.into_owned());
                    continue;
                }
                _ => continue,
            };
            if slot.is_some() {
                return Err(OAuth2Error::invalid_request(format!(
                    "{name} appears more than once"
                )));
            }
            *slot = Some(value.into_owned());
        }
        Ok(form)
    }

    /// The `token` of an introspection or revocation request.
    pub(super) fn take_token(&mut self) -> Result<String, OAuth2Error> {
        match self.token.take() {
            Some(token) if !token.is_empty() => Ok(token),
            _ => Err(OAuth2Error::invalid_request(
                "token is required: the token to introspect or revoke",
            )),
        }
    }

    /// Whether this is a token exchange (RFC 8693): the subject token is
    /// then the credential.
    pub(super) fn is_token_exchange(&self) -> bool {
        self.grant_type.as_deref() == Some(TOKEN_EXCHANGE)
    }

    /// The `subject_token` of a token exchange, of type
    /// `urn:ietf:params:oauth:token-type:jwt` (RFC 8693 §2.1), asking for a
    /// JWT if it asks at all.
    pub(super) fn take_subject_token(&mut self) -> Result<String, OAuth2Error> {
        match self.subject_token_type.as_deref() {
            Some(JWT_TOKEN_TYPE) => {}
            None | Some("") => {
                return Err(OAuth2Error::invalid_request(format!(
                    "subject_token_type is required: {JWT_TOKEN_TYPE}"
                )))
            }
            Some(other) => {
                return Err(OAuth2Error::invalid_request(format!(
                    "subject_token_type {} is not supported; use {JWT_TOKEN_TYPE}",
                    crate::audit::event::truncate(other, 60)
                )))
            }
        }
        if self
            .requested_token_type
            .as_deref()
            .is_some_and(|t| t != JWT_TOKEN_TYPE)
        {
            return Err(OAuth2Error::invalid_request(format!(
                "requested_token_type: asapd issues {JWT_TOKEN_TYPE} only"
            )));
        }
        match self.subject_token.take() {
            Some(token) if !token.is_empty() => Ok(token),
            _ => Err(OAuth2Error::invalid_request(
                "subject_token is required: the workload's JWT",
            )),
        }
    }

    /// The grant, scope and audience checks, run after authentication.
    pub(super) fn into_request(self) -> Result<TokenRequest, Denial> {
        match self.grant_type.as_deref() {
            None | Some("") => {
                return Err(Denial::on_field(
                    Rule::InvalidRequest,
                    "grant_type",
                    "grant_type is required: client_credentials",
                ))
            }
            Some("client_credentials") | Some(TOKEN_EXCHANGE) => {}
            Some(other) => {
                return Err(Denial::on_field(
                    Rule::UnsupportedGrantType,
                    "grant_type",
                    format!(
                    "grant_type {} is not supported; use client_credentials or {TOKEN_EXCHANGE}",
                    crate::audit::event::truncate(other, 40)
                ),
                ))
            }
        }
        if self.scope.as_deref().is_some_and(|s| !s.trim().is_empty()) {
            return Err(Denial::on_field(
                Rule::InvalidScope,
                "scope",
                "asapd tokens carry audiences, not scopes: leave scope out and name the \
                 audience with audience or resource",
            ));
        }
        let (values, field) = match (self.audience.is_empty(), self.resource.is_empty()) {
            (false, false) => {
                return Err(Denial::on_field(
                    Rule::InvalidRequest,
                    "resource",
                    "send audience or resource, not both",
                ))
            }
            (false, true) => (self.audience, "audience"),
            (true, false) => (self.resource, "resource"),
            (true, true) => {
                return Err(Denial::on_field(
                    Rule::InvalidTarget,
                    "audience",
                    "name the token's audience with audience or resource",
                ))
            }
        };
        // RFC 8707 §2: a resource indicator has no fragment.
        if field == "resource" && values.iter().any(|v| v.contains('#')) {
            return Err(Denial::on_field(
                Rule::InvalidTarget,
                "resource",
                "resource must not contain a fragment (#)",
            ));
        }
        let audiences = parse_audiences(values, field).map_err(|d| Denial {
            rule: Rule::InvalidTarget,
            ..d
        })?;
        Ok(TokenRequest {
            audiences,
            ..TokenRequest::default()
        })
    }
}

/// Decodes `application/x-www-form-urlencoded` text: RFC 6749 §2.3.1 has
/// clients encode the id and secret this way before HTTP Basic.
pub(super) fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_of_basic_credentials() {
        assert_eq!(form_decode("a%2Bb+c").as_deref(), Some("a+b c"));
        assert_eq!(form_decode("asapd_x-Y_z").as_deref(), Some("asapd_x-Y_z"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
    }

    proptest::proptest! {
        /// The fast path decodes every body exactly as the general decoder
        /// does: bytes drawn mostly from the form's own syntax.
        #[test]
        fn pairs_decode_as_form_urlencoded_does(
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"&=+%0aF.zZ_-~ ".to_vec()),
                    proptest::num::u8::ANY,
                ],
                0..48,
            )
        ) {
            let ours: Vec<_> = pairs(&body).collect();
            let theirs: Vec<_> = url::form_urlencoded::parse(&body).collect();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn repeated_single_parameters_are_refused() {
        assert!(Form::parse(b"grant_type=a&grant_type=b").is_err());
        let f = Form::parse(b"resource=a&resource=b&other=1&other=2").unwrap();
        assert_eq!(f.resource, vec!["a", "b"]);
    }

    #[test]
    fn grant_scope_and_target_rules() {
        let rule = |body: &[u8]| Form::parse(body).unwrap().into_request().unwrap_err().rule;
        assert_eq!(rule(b"audience=a"), Rule::InvalidRequest);
        assert_eq!(
            rule(b"grant_type=password&audience=a"),
            Rule::UnsupportedGrantType
        );
        assert_eq!(
            rule(b"grant_type=client_credentials&audience=a&scope=read"),
            Rule::InvalidScope
        );
        assert_eq!(rule(b"grant_type=client_credentials"), Rule::InvalidTarget);
        assert_eq!(
            rule(b"grant_type=client_credentials&resource=https://a/#x"),
            Rule::InvalidTarget
        );
        assert_eq!(
            rule(b"grant_type=client_credentials&audience=a&resource=b"),
            Rule::InvalidRequest
        );
        let ok = Form::parse(b"grant_type=client_credentials&resource=a&resource=b&scope=")
            .unwrap()
            .into_request()
            .unwrap();
        assert_eq!(ok.audiences, vec!["a", "b"]);
    }
}
