//! asapd: key management and token issuing for ASAP.

pub mod audit;
pub mod caller_cache;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error_chain;
pub mod federation;
pub mod fleet_limits;
pub mod fsutil;
pub mod http;
pub mod jobs;
pub mod keyring;
pub mod metrics;
pub mod mirror;
pub mod ratelimit;
pub mod revoked;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
