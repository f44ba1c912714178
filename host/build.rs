//! Builds the Wasm components from the workspace (`components/*`) for
//! `wasm32-wasip2` and exposes their paths to the host crate, so the binary embeds
//! components built from the current source. Installs the target with rustup when
//! it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

include!("build_env.rs");

const TARGET: &str = "wasm32-wasip2";
/// Each group is one cargo invocation: (package, env var naming the built file).
/// The failure-test fixture and the policy examples link the validator or
/// feature-gate crate without its exports, so they are built apart (in one
/// invocation cargo would unify the crate's features). They go first: should
/// their build touch those crates' own artifacts, the main group's build, which
/// comes after, leaves the exporting ones in place. The fixtures are test
/// components: the binary embeds only the four of the main group, which is
/// exactly what `spin.toml`'s build command builds (a test keeps the two the
/// same), so `spin build` after a gateway build is a no-op and both hosts run
/// the same files.
const GROUPS: [&[(&str, &str)]; 2] = [
    &[
        ("tg-faulty-validator", "TG_FAULTY_VALIDATOR_WASM"),
        ("tg-policy-validator", "TG_POLICY_VALIDATOR_WASM"),
        ("tg-policy-feature-gate", "TG_POLICY_FEATURE_GATE_WASM"),
        ("tg-broken-validator", "TG_BROKEN_VALIDATOR_WASM"),
        ("tg-outbound-probe", "TG_OUTBOUND_PROBE_WASM"),
    ],
    &[
        ("tg-validator", "TG_VALIDATOR_WASM"),
        ("tg-feature-gate", "TG_FEATURE_GATE_WASM"),
        ("tg-config-api", "TG_CONFIG_API_WASM"),
        ("tg-tenant-app", "TG_TENANT_APP_WASM"),
    ],
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for watched in ["components", "wit", "schemas", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    println!("cargo:rerun-if-changed=build_env.rs");

    ensure_target();

    // One component target dir shared by every host profile (dev, test, release,
    // bench), so the components are built once.
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => root.join("target"),
    }
    .join("components");

    let out = target_dir.join(TARGET).join("component");
    for group in GROUPS {
        build(&root, &target_dir, group);
        for (package, var) in group {
            let file = out.join(format!("{}.wasm", package.replace('-', "_")));
            assert!(file.exists(), "missing component {}", file.display());
            println!("cargo:rustc-env={var}={}", file.display());
        }
    }
}

fn build(root: &Path, target_dir: &Path, group: &[(&str, &str)]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--profile", "component", "--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir);
    for (package, _) in group {
        cmd.args(["-p", package]);
    }
    for var in OUTER_BUILD_ENV {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for the Wasm components");
    assert!(status.success(), "building the Wasm components failed");
}

/// Installs the `wasm32-wasip2` standard library with rustup if this toolchain
/// lacks it (rust-toolchain.toml lists it, but rustup only honours that list when
/// it installs the toolchain itself).
fn ensure_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.as_deref().is_some_and(has_std) {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if let Some(toolchain) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        cmd.arg("--toolchain").arg(toolchain);
    }
    let status = cmd
        .status()
        .expect("rustup is needed to install the wasm32-wasip2 target");
    assert!(status.success(), "`rustup target add {TARGET}` failed");
}

fn has_std(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    })
}
