//! The external surfaces other than tenant traffic, one module each: the
//! component registry, Ed-Fi `/connect/*`, Doradus `/_tenants`, the change
//! history, Hono tenant information, the OpenAPI document, Vespa tenants.

pub mod components;
pub mod connect;
pub mod doradus;
pub mod history;
pub mod hono;
pub mod openapi;
pub mod vespa;
