//! Caller policy values.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Token requests per second a caller may make, with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, try_from = "RawRateLimit")]
pub struct RateLimit {
    #[schema(minimum = 1, maximum = 1000000)]
    pub per_second: u32,
    #[schema(minimum = 1, maximum = 1000000)]
    pub burst: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    per_second: i64,
    burst: i64,
}

const RATE_BOUND: i64 = 1_000_000;

impl TryFrom<RawRateLimit> for RateLimit {
    type Error = String;
    fn try_from(raw: RawRateLimit) -> Result<Self, String> {
        for (name, v) in [("per_second", raw.per_second), ("burst", raw.burst)] {
            if !(1..=RATE_BOUND).contains(&v) {
                return Err(format!(
                    "{name} must be between 1 and {RATE_BOUND}, got {v}"
                ));
            }
        }
        Ok(Self {
            per_second: raw.per_second as u32,
            burst: raw.burst as u32,
        })
    }
}

/// How often a caller's signing key is replaced, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "i64", into = "i64")]
#[schema(value_type = i64, minimum = 3600, maximum = 315360000, example = 2592000)]
pub struct RotationPeriod(i64);

impl RotationPeriod {
    /// An hour: shorter than that, prepublication and retirement overlap.
    pub const MIN_SECS: i64 = 3600;
    /// Ten years: beyond that "rotation" is a typo.
    pub const MAX_SECS: i64 = 10 * 365 * 86_400;

    pub fn secs(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for RotationPeriod {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if (Self::MIN_SECS..=Self::MAX_SECS).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!(
                "rotation period must be between {} and {} seconds, got {v}",
                Self::MIN_SECS,
                Self::MAX_SECS
            ))
        }
    }
}

impl From<RotationPeriod> for i64 {
    fn from(v: RotationPeriod) -> i64 {
        v.0
    }
}
