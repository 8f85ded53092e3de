//! A caller's token policy: its own networks, its rate limit and the
//! grants of its groups.

use super::caller::RateLimit;
use super::grants::Grant;
use super::group::Cidr;

/// The caller's policy: cached per replica (see `caller_cache`), dropped
/// whenever this replica changes a caller or group.
pub struct Policy {
    pub cidrs: Vec<Cidr>,
    pub rate_limit: Option<RateLimit>,
    pub grants: Vec<Grant>,
}
