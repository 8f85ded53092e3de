//! Groups: named grants of audiences, lifetimes, networks and subjects.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// ASAP verifiers reject tokens whose `exp - iat` exceeds one hour.
pub const MAX_TOKEN_LIFETIME_SECS: u32 = 3600;
const MAX_AUDIENCE_LEN: usize = 255;

/// An audience a group grants: an exact name, or a glob where `*` matches
/// any run of characters (`reports-*`, `*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "reports-*", min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
pub struct AudiencePattern(String);

impl AudiencePattern {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Glob match with `*` as the only metacharacter.
    pub fn matches(&self, audience: &str) -> bool {
        glob_match(self.0.as_bytes(), audience.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with one backtrack point: linear in practice and
    // free of the exponential blow-up of naive recursion.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Audience names are free-form (often URLs) but must be printable ASCII so
/// they compare byte-for-byte with what verifiers configure.
pub fn check_audience(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("audience must not be empty".into());
    }
    if value.len() > MAX_AUDIENCE_LEN {
        return Err(format!(
            "audience is longer than {MAX_AUDIENCE_LEN} characters"
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("audience must be printable ASCII without spaces".into());
    }
    Ok(())
}

impl TryFrom<String> for AudiencePattern {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        check_audience(&value)?;
        Ok(Self(value))
    }
}

impl From<AudiencePattern> for String {
    fn from(value: AudiencePattern) -> String {
        value.0
    }
}

/// A network in CIDR notation; a bare address means that one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
/// (The pattern: IPv4 or IPv6, with an optional prefix length.)
#[schema(value_type = String, example = "10.0.0.0/8", pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}(/(3[0-2]|[12]?[0-9]))?|(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$")]
pub struct Cidr(IpNet);

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if let Ok(net) = value.parse::<IpNet>() {
            return Ok(Self(net.trunc()));
        }
        value
            .parse::<IpAddr>()
            .map(|ip| Self(IpNet::from(ip)))
            .map_err(|_| format!("{value:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address"))
    }
}

impl From<Cidr> for String {
    fn from(value: Cidr) -> String {
        value.0.to_string()
    }
}

/// A token lifetime in seconds, 1..=3600.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "i64", into = "u32")]
#[schema(value_type = u32, minimum = 1, maximum = 3600)]
pub struct Lifetime(u32);

impl Lifetime {
    pub const MAX: Lifetime = Lifetime(MAX_TOKEN_LIFETIME_SECS);

    pub fn secs(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Lifetime {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        if (1..=i64::from(MAX_TOKEN_LIFETIME_SECS)).contains(&value) {
            Ok(Self(value as u32))
        } else {
            Err(format!(
                "lifetime must be between 1 and {MAX_TOKEN_LIFETIME_SECS} seconds, got {value}"
            ))
        }
    }
}

impl From<Lifetime> for u32 {
    fn from(value: Lifetime) -> u32 {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> AudiencePattern {
        AudiencePattern::try_from(s.to_owned()).unwrap()
    }

    #[test]
    fn globs_match_like_shell_stars() {
        assert!(pat("svc-b").matches("svc-b"));
        assert!(!pat("svc-b").matches("svc-bb"));
        assert!(pat("reports-*").matches("reports-eu"));
        assert!(pat("reports-*").matches("reports-"));
        assert!(!pat("reports-*").matches("report"));
        assert!(pat("*").matches("anything"));
        assert!(pat("a*b*c").matches("axxbyyc"));
        assert!(!pat("a*b*c").matches("axxbyy"));
    }

    #[test]
    fn cidr_accepts_bare_addresses() {
        let c = Cidr::try_from("10.1.2.3".to_owned()).unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.1.2.4".parse().unwrap()));
        assert!(Cidr::try_from("10.0.0.0/33".to_owned()).is_err());
    }

    #[test]
    fn lifetime_bounds() {
        assert!(Lifetime::try_from(0).is_err());
        assert!(Lifetime::try_from(3601).is_err());
        assert_eq!(Lifetime::try_from(3600).unwrap(), Lifetime::MAX);
    }
}
