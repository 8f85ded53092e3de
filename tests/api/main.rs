//! Black-box tests: the real app on a random port, a fresh database each.

mod admin_auth;
mod admin_bearer;
mod audit;
mod bad_input;
mod callers;
mod cli_client;
mod config_layers;
mod contract;
mod groups;
mod helpers;
mod keys;
mod metrics;
mod oauth2;
mod openapi;
mod outage;
mod process;
mod public_keys;
mod restart;
mod rotation;
mod secrets;
mod secrets_at_rest;
mod shutdown;
mod token_support;
mod tokens;
