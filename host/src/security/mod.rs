//! Who is asking and how often: credentials (Basic, Bearer tokens, the
//! password-hashing pool), authorization rules, and rate limits.

pub mod auth;
pub mod rate;
