//! The Hono Tenant API over AMQP 1.0 (`TenantGateway.Amqp`): SASL PLAIN with
//! the gateway's own identities (`sasl.rs`), then request/reply links on the
//! address `tenant` answered from the same tenant directory as every other API.

pub mod sasl;
