//! Which audiences a caller may get tokens for, for how long, from where
//! and under which subject (steps 5 and 6 of docs/ARCHITECTURE.md,
//! "The path of a token request").
//!
//! A grant is one of the caller's groups. An audience is allowed when some
//! grant's pattern matches it and the grant's CIDRs (if any) contain the
//! client IP; the longest lifetime for it is the largest among those
//! grants. A multi-audience token lives no longer than its most
//! restricted audience allows.

use std::net::IpAddr;

use super::denial::{Denial, Rule};
use super::group::{check_audience, AudiencePattern, Cidr};

/// Most audiences one token may carry; verifiers compare each.
pub const MAX_AUDIENCES: usize = 16;

/// One group of the caller, as the token policy sees it.
#[derive(Debug, Clone)]
pub struct Grant {
    pub group: String,
    pub audiences: Vec<AudiencePattern>,
    pub max_lifetime: u32,
    pub cidrs: Vec<Cidr>,
    pub allow_subject: bool,
}

impl Grant {
    fn grants(&self, audience: &str) -> bool {
        self.audiences.iter().any(|p| p.matches(audience))
    }

    fn reachable_from(&self, ip: Option<IpAddr>) -> bool {
        self.cidrs.is_empty() || ip.is_some_and(|ip| self.cidrs.iter().any(|c| c.contains(ip)))
    }
}

/// The audiences of one request: 1..=16 printable-ASCII names, duplicates
/// dropped, order kept. `field` names them in errors (`audience`,
/// `resource`).
pub fn parse_audiences(values: Vec<String>, field: &str) -> Result<Vec<String>, Denial> {
    if values.is_empty() {
        return Err(Denial::on_field(
            Rule::InvalidRequest,
            field,
            format!("{field}: name at least one audience"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        let path = format!("{field}[{i}]");
        check_audience(&value)
            .map_err(|e| Denial::on_field(Rule::InvalidRequest, &path, format!("{path}: {e}")))?;
        if !out.contains(&value) {
            out.push(value);
        }
    }
    if out.len() > MAX_AUDIENCES {
        return Err(Denial::on_field(
            Rule::InvalidRequest,
            field,
            format!("{field}: at most {MAX_AUDIENCES} audiences per token"),
        ));
    }
    Ok(out)
}

/// What the grants allow for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    /// The token's lifetime in seconds.
    pub lifetime: u32,
    /// The groups whose grants cover the audiences, for the audit record.
    pub groups: Vec<String>,
}

/// Step 5: every audience must be granted by a grant reachable from `ip`;
/// an explicit `lifetime` above the allowed maximum is refused (never
/// silently shortened: a caller that caches tokens must get what it asked
/// for), while the default lifetime is clamped to it.
pub fn allow(
    grants: &[Grant],
    ip: Option<IpAddr>,
    audiences: &[String],
    lifetime: Option<u32>,
    default_lifetime: u32,
) -> Result<Allowance, Denial> {
    let mut max = u32::MAX;
    let mut tightest = "";
    let mut groups: Vec<String> = Vec::new();
    for (i, audience) in audiences.iter().enumerate() {
        let matching: Vec<&Grant> = grants.iter().filter(|g| g.grants(audience)).collect();
        if matching.is_empty() {
            return Err(Denial::on_field(
                Rule::AudienceNotGranted,
                format!("audience[{i}]"),
                format!("no group of this caller grants audience {audience}"),
            ));
        }
        let Some(best) = matching
            .iter()
            .filter(|g| g.reachable_from(ip))
            .max_by_key(|g| g.max_lifetime)
        else {
            let names: Vec<&str> = matching.iter().map(|g| g.group.as_str()).collect();
            return Err(Denial::on_field(
                Rule::GrantNetwork,
                format!("audience[{i}]"),
                format!(
                    "audience {audience} is granted by group {} only to requests from its \
                     networks, and this request comes from {}",
                    names.join(", "),
                    ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string())
                ),
            ));
        };
        if best.max_lifetime < max {
            max = best.max_lifetime;
            tightest = audience;
        }
        if !groups.contains(&best.group) {
            groups.push(best.group.clone());
        }
    }
    let lifetime = match lifetime {
        Some(l) if l > max => {
            return Err(Denial::on_field(
                Rule::LifetimeExceeded,
                "lifetime",
                format!(
                    "lifetime: {l} seconds is more than the {max} seconds the grants for \
                     audience {tightest} allow"
                ),
            ))
        }
        Some(l) => l,
        None => default_lifetime.min(max),
    };
    Ok(Allowance { lifetime, groups })
}

/// Step 6: a subject other than the caller needs, for every audience, a
/// reachable grant with `allow_subject` that allows the lifetime too.
pub fn allow_subject(
    grants: &[Grant],
    ip: Option<IpAddr>,
    audiences: &[String],
    lifetime: u32,
) -> Result<(), Denial> {
    for audience in audiences {
        let ok = grants.iter().any(|g| {
            g.allow_subject
                && g.grants(audience)
                && g.reachable_from(ip)
                && g.max_lifetime >= lifetime
        });
        if !ok {
            return Err(Denial::on_field(
                Rule::SubjectNotAllowed,
                "subject",
                format!(
                    "subject: setting a subject other than the caller needs a group with \
                     allow_subject that grants audience {audience}"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(group: &str, audiences: &[&str], max: u32, cidrs: &[&str], subject: bool) -> Grant {
        Grant {
            group: group.into(),
            audiences: audiences
                .iter()
                .map(|a| AudiencePattern::try_from(a.to_string()).unwrap())
                .collect(),
            max_lifetime: max,
            cidrs: cidrs
                .iter()
                .map(|c| Cidr::try_from(c.to_string()).unwrap())
                .collect(),
            allow_subject: subject,
        }
    }

    fn auds(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)));

    #[test]
    fn exact_and_glob_grants() {
        let g = [grant("g", &["svc-b", "reports-*"], 600, &[], false)];
        let a = allow(&g, IP, &auds(&["svc-b", "reports-eu"]), None, 60).unwrap();
        assert_eq!(a.lifetime, 60);
        assert_eq!(a.groups, vec!["g".to_string()]);
        let d = allow(&g, IP, &auds(&["svc-b", "svc-c"]), None, 60).unwrap_err();
        assert_eq!(d.rule, Rule::AudienceNotGranted);
        assert_eq!(d.field.as_deref(), Some("audience[1]"));
        assert!(d.message.contains("svc-c"));
    }

    #[test]
    fn lifetime_is_refused_above_the_grant_and_default_is_clamped() {
        let g = [grant("short", &["a"], 30, &[], false)];
        assert_eq!(allow(&g, IP, &auds(&["a"]), None, 60).unwrap().lifetime, 30);
        assert_eq!(
            allow(&g, IP, &auds(&["a"]), Some(30), 60).unwrap().lifetime,
            30
        );
        let d = allow(&g, IP, &auds(&["a"]), Some(31), 60).unwrap_err();
        assert_eq!(d.rule, Rule::LifetimeExceeded);
        assert_eq!(d.field.as_deref(), Some("lifetime"));
    }

    #[test]
    fn the_most_generous_reachable_grant_counts_per_audience() {
        let g = [
            grant("short", &["a", "b"], 60, &[], false),
            grant("long", &["a"], 900, &[], false),
            grant("far", &["a"], 3600, &["192.168.0.0/16"], false),
        ];
        assert!(allow(&g, IP, &auds(&["a"]), Some(900), 60).is_ok());
        assert!(allow(&g, IP, &auds(&["a"]), Some(901), 60).is_err());
        // b caps the whole token at 60 s.
        let d = allow(&g, IP, &auds(&["a", "b"]), Some(61), 60).unwrap_err();
        assert!(d.message.contains("audience b"), "{}", d.message);
    }

    #[test]
    fn grant_cidrs_must_contain_the_client() {
        let g = [grant("office", &["a"], 600, &["192.168.0.0/16"], false)];
        let d = allow(&g, IP, &auds(&["a"]), None, 60).unwrap_err();
        assert_eq!(d.rule, Rule::GrantNetwork);
        assert!(d.message.contains("10.1.2.3") && d.message.contains("office"));
        assert!(allow(
            &g,
            Some("192.168.1.1".parse().unwrap()),
            &auds(&["a"]),
            None,
            60
        )
        .is_ok());
        assert!(allow(&g, None, &auds(&["a"]), None, 60).is_err());
    }

    #[test]
    fn subject_needs_a_permissive_grant_for_every_audience() {
        let g = [
            grant("plain", &["a", "b"], 600, &[], false),
            grant("delegate", &["a"], 600, &[], true),
        ];
        assert!(allow_subject(&g, IP, &auds(&["a"]), 60).is_ok());
        let d = allow_subject(&g, IP, &auds(&["a", "b"]), 60).unwrap_err();
        assert_eq!(d.rule, Rule::SubjectNotAllowed);
        assert!(d.message.contains("audience b"));
        assert!(allow_subject(&g, IP, &auds(&["a"]), 601).is_err());
    }

    #[test]
    fn audiences_are_checked_and_deduplicated() {
        assert_eq!(
            parse_audiences(auds(&["a", "b", "a"]), "audience").unwrap(),
            auds(&["a", "b"])
        );
        let d = parse_audiences(auds(&["a", "has space"]), "audience").unwrap_err();
        assert_eq!(d.field.as_deref(), Some("audience[1]"));
        assert!(parse_audiences(vec![], "resource").is_err());
        let many: Vec<String> = (0..17).map(|i| format!("a{i}")).collect();
        assert!(parse_audiences(many, "audience").is_err());
    }
}
