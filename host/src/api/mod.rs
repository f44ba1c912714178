//! The external surfaces other than tenant traffic, one module each, each
//! exporting its routes (`routes()`), which `app` mounts: the component
//! registry, the HeliosDB config API, Ed-Fi `/connect/*`, the Ed-Fi landing
//! document and `/v2/tenants`, Doradus `/_tenants`,
//! the change history, Hono tenant information, the OpenAPI document and
//! Swagger UI, operations (health, metrics), Vespa tenants.

pub mod components;
pub mod config;
pub mod connect;
pub mod doradus;
pub mod edfi;
pub mod history;
pub mod hono;
pub mod openapi;
pub mod ops;
pub mod vespa;
