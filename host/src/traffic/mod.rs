//! Tenant traffic to a tenant's upstream: the streaming reverse proxy.

pub mod proxy;
