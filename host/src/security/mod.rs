//! Who is asking and how often: credentials and authorization (`auth.rs`),
//! clients and their tokens (`token.rs`), password hashing on its own pool
//! (`password.rs`), rate limits (`rate.rs`).

pub mod auth;
pub mod password;
pub mod rate;
pub mod token;
