//! What shapes the code wasmtime compiles: one definition for the gateway's
//! engine, its compiler process, and `build.rs`, which precompiles the built-in
//! components with it (the build script includes this file). An artifact made
//! under another configuration is refused when it is loaded.

/// The engine configuration every compilation uses.
pub fn compiler_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    config
}
