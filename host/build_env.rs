/// Settings of an outer cargo build that must not reach a nested build of the
/// Wasm components: flags meant for the host target, and wrappers such as
/// clippy-driver that would make the two alternate and rebuild each other's
/// artifacts. Shared by `build.rs` and the test that runs `spin build`.
const OUTER_BUILD_ENV: [&str; 7] = [
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
];
