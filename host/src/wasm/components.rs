//! What the runtime runs: the slots components are loaded into (`validator`,
//! `feature-gate`, `config-api`, and a tenant's own `validator@{tenant}` /
//! `feature-gate@{tenant}`), what is known of each loaded component, and why a
//! load is refused.

use std::fmt;

/// What a component does, and so which world it must export; written as its
/// slot name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `tenant-gateway:gateway/validator-component`.
    Validator,
    /// `tenant-gateway:gateway/feature-gate-component`.
    FeatureGate,
    /// A `wasi:http` handler with the config API's imports.
    ConfigApi,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Validator, Kind::FeatureGate, Kind::ConfigApi];

    /// The slot name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Validator => "validator",
            Kind::FeatureGate => "feature-gate",
            Kind::ConfigApi => "config-api",
        }
    }

    /// What the kind must export: prefixes of export names (any patch version).
    pub fn required_exports(self) -> &'static [&'static str] {
        match self {
            Kind::Validator => &[
                "tenant-gateway:validator/validator@0.2.",
                "tenant-gateway:validator/documents@0.2.",
            ],
            Kind::FeatureGate => &["tenant-gateway:feature-gate/feature-gate@0.2."],
            Kind::ConfigApi => &["wasi:http/incoming-handler@0.2."],
        }
    }

    /// Whether a tenant may have its own component of this kind (policy modules).
    pub fn per_tenant(self) -> bool {
        matches!(self, Kind::Validator | Kind::FeatureGate)
    }

    /// The component built into the binary.
    pub fn builtin(self) -> &'static super::builtin::Builtin {
        match self {
            Kind::Validator => &super::builtin::VALIDATOR,
            Kind::FeatureGate => &super::builtin::FEATURE_GATE,
            Kind::ConfigApi => &super::builtin::CONFIG_API,
        }
    }
}

/// Where a component is loaded: a kind, for every tenant or for one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// What it is.
    pub kind: Kind,
    /// The tenant (lower-case name) whose own component it is; `None`: everyone's.
    pub tenant: Option<String>,
}

impl Slot {
    /// Everyone's component of `kind`.
    pub fn global(kind: Kind) -> Self {
        Self { kind, tenant: None }
    }

    /// Reads `validator`, `feature-gate`, `config-api`, `validator@{tenant}` or
    /// `feature-gate@{tenant}` (tenant names are case-insensitive).
    pub fn parse(name: &str) -> Result<Self, String> {
        let (kind, tenant) = match name.split_once('@') {
            Some((k, t)) => (k, Some(t)),
            None => (name, None),
        };
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| {
                format!(
                    "'{name}' names no component slot: validator, feature-gate, config-api, validator@{{tenant}} or feature-gate@{{tenant}}"
                )
            })?;
        let tenant = match tenant {
            None => None,
            Some(_) if !kind.per_tenant() => {
                return Err(format!(
                    "a tenant cannot have its own {}; only validator and feature-gate",
                    kind.as_str()
                ));
            }
            Some(t) => Some(
                crate::config::TenantName::parse(t)
                    .map_err(|why| format!("'{t}' is not a tenant name: it {why}"))?
                    .key(),
            ),
        };
        Ok(Self { kind, tenant })
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        if let Some(t) = &self.tenant {
            write!(f, "@{t}")?;
        }
        Ok(())
    }
}

/// Where a component's bytes came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built into the binary.
    Builtin,
    /// A file of the components directory.
    Directory(std::path::PathBuf),
    /// `PUT /_components/{name}`.
    Api,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin => f.write_str("builtin"),
            Source::Directory(p) => write!(f, "directory:{}", p.display()),
            Source::Api => f.write_str("api"),
        }
    }
}

/// What is known of a loaded component.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    /// Its slot.
    pub slot: Slot,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: usize,
    /// When it was loaded (RFC 3339).
    pub loaded_at: String,
    /// Where it came from.
    pub source: Source,
    /// Its exports (interface names).
    pub exports: Vec<String>,
    /// Whether loading it compiled it (`false`: a precompiled artifact was used).
    pub compiled: bool,
}

impl ComponentInfo {
    /// The first 12 hex digits of the hash: enough to tell versions apart.
    pub fn short_sha(&self) -> &str {
        &self.sha256[..12.min(self.sha256.len())]
    }
}

/// Why a component was not loaded; the running one stays.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Larger than `TenantGateway.Limits.MaxComponentBytes`.
    #[error("the component is {size} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not a Wasm component at all.
    #[error("not a Wasm component: {0}")]
    NotComponent(&'static str),
    /// More functions than `TenantGateway.Limits.MaxComponentFunctions`:
    /// refused before compiling (compile time and memory grow with them).
    #[error(
        "the component has more than {max} functions (Limits.MaxComponentFunctions); it is refused before compiling"
    )]
    TooManyFunctions {
        /// The limit.
        max: usize,
    },
    /// It does not compile.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// Compiling it needed more time or memory than the compiler is given.
    #[error("the component was refused: {0}")]
    CompileBudget(String),
    /// It imports what the gateway does not provide, or lacks an export.
    #[error("the component does not fit the {slot} slot: {why}")]
    WrongShape {
        /// The slot.
        slot: String,
        /// What is wrong.
        why: String,
    },
    /// Instantiating it or its self-test call failed.
    #[error("the component failed its self-test: {0}")]
    SelfTest(String),
}

/// Checks the header of `bytes`: a component, not a core module or other file.
pub fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00]) => Ok(()),
        Some([0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00]) => Err(LoadError::NotComponent(
            "it is a core Wasm module; make a component of it (cargo build --target wasm32-wasip2, or wasm-tools component new)",
        )),
        Some([0, b'a', b's', b'm', ..]) => Err(LoadError::NotComponent(
            "unsupported Wasm binary version or layer",
        )),
        _ => Err(LoadError::NotComponent(
            "it does not start with the Wasm magic number",
        )),
    }
}

/// Counts the functions of every core module inside `bytes` (a first pass of
/// the binary, no compilation) and refuses more than `max`. A binary too
/// malformed to count is left to the compiler, which says why.
pub fn check_functions(bytes: &[u8], max: usize) -> Result<(), LoadError> {
    let mut functions = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(wasmparser::Payload::CodeSectionStart { count, .. }) => {
                functions = functions.saturating_add(count as usize);
                if functions > max {
                    return Err(LoadError::TooManyFunctions { max });
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_counted_before_compiling() {
        let validator = super::super::builtin::VALIDATOR.wasm();
        assert!(check_functions(&validator, usize::MAX).is_ok());
        assert!(matches!(
            check_functions(&validator, 10),
            Err(LoadError::TooManyFunctions { max: 10 })
        ));
        let many = wat::parse_str(format!("(module {})", "(func)".repeat(500))).unwrap();
        assert!(check_functions(&many, 499).is_err());
        assert!(check_functions(&many, 500).is_ok());
        assert!(check_functions(b"\0asm\x0d\0\x01\0garbage", 1).is_ok());
    }

    #[test]
    fn slots_parse_and_print() {
        assert_eq!(
            Slot::parse("validator").unwrap(),
            Slot::global(Kind::Validator)
        );
        let s = Slot::parse("feature-gate@Tenant1").unwrap();
        assert_eq!(s.kind, Kind::FeatureGate);
        assert_eq!(s.tenant.as_deref(), Some("tenant1"));
        assert_eq!(s.to_string(), "feature-gate@tenant1");
        assert!(Slot::parse("config-api@Tenant1").is_err());
        assert!(Slot::parse("validator@bad name").is_err());
        assert!(Slot::parse("router").is_err());
        assert!(Slot::parse("validator@").is_err());
    }

    #[test]
    fn only_components_pass_the_header_check() {
        assert!(check_header(&super::super::builtin::VALIDATOR.wasm()).is_ok());
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0rest"),
            Err(LoadError::NotComponent(m)) if m.contains("core Wasm module")
        ));
        assert!(check_header(b"hello world").is_err());
        assert!(check_header(b"").is_err());
    }
}
