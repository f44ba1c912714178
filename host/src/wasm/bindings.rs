//! Host bindings generated from the WIT in `wit/`; the only place
//! `bindgen!` runs.

#![allow(missing_docs)]

/// The config API component's imports: validator, feature gate, `wasi:keyvalue`.
pub mod api {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tenant-gateway:gateway/config-api-imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::wasm::kv::Bucket,
            "wasi:keyvalue/atomics.cas": crate::wasm::kv::Cas,
        },
    });
}

/// The validator component's exports.
pub mod validator {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tenant-gateway:gateway/validator-component",
        exports: { default: async },
    });
}

/// The feature-gate component's exports.
pub mod gate {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tenant-gateway:gateway/feature-gate-component",
        exports: { default: async },
    });
}

/// What tenant apps import beyond WASI: Spin's variables.
pub mod app {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tenant-gateway:gateway/tenant-app-imports",
    });
}
