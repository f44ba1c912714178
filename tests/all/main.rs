//! End-to-end tests: each starts the real `tenant-gateway` process on 127.0.0.1:0
//! with its own data directory and drives it over HTTP. See tests/README.md.

mod browser;
mod components;
mod config_api;
mod doradus;
mod edfi;
mod failures;
mod harness;
mod history;
mod hono;
mod hono_amqp;
mod hosts;
mod outbound;
mod packaging;
mod persistence;
mod routing;
mod security;
mod shared_store;
mod tenancy;
mod validation;
mod vespa;
