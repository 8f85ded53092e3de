//! Black-box tests: the real app on a random port, a fresh database each.

mod admin_auth;
mod admin_bearer;
mod bad_input;
mod callers;
mod groups;
mod helpers;
mod keys;
mod oauth2;
mod openapi;
mod process;
mod public_keys;
mod restart;
mod secrets;
mod secrets_at_rest;
mod token_support;
mod tokens;
