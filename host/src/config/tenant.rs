//! What a tenant is in the settings: its name, tier, connection settings, routes
//! and apps, and the secret wrapper that keeps connection strings out of logs.

use super::allowed_hosts::AllowedHosts;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A validated tenant name: 1–50 characters from `[A-Za-z0-9_-]`. Shared:
/// a clone (the settings' tenant, the directory's, its metrics label, its
/// lookup key when the name is lower case) is the same bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(Arc<str>);

impl TenantName {
    /// Longest accepted name.
    pub const MAX_LEN: usize = 50;

    /// Checks a name; the error says why it is not one.
    pub fn parse(name: &str) -> Result<Self, &'static str> {
        Self::check(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// Whether `name` is a tenant name, as [`TenantName::parse`] checks it,
    /// without keeping it (nothing allocated: a request's `Tenant` header is
    /// checked on every request).
    pub fn check(name: &str) -> Result<(), &'static str> {
        if name.is_empty() {
            return Err("must not be empty");
        }
        if name.len() > Self::MAX_LEN {
            return Err("must be at most 50 characters");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("may contain only letters, digits, '-' and '_'");
        }
        // Paths take a tenant's name or its UUID in the same place: a name
        // that reads as a UUID would be another tenant's id.
        if uuid::Uuid::try_parse(name).is_ok() {
            return Err(
                "must not have the form of a UUID (tenant ids are UUIDs, and paths take either)",
            );
        }
        Ok(())
    }

    /// The name as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive lookup key.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The name's own bytes, shared (the tenant's metrics label).
    pub fn shared(&self) -> &Arc<str> {
        &self.0
    }

    /// The lookup key ([`TenantName::key`]), sharing the name's bytes when
    /// the name is lower case already.
    pub fn shared_key(&self) -> Arc<str> {
        if self.0.bytes().any(|b| b.is_ascii_uppercase()) {
            Arc::from(self.key())
        } else {
            self.0.clone()
        }
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A value that must never be shown: connection strings, passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the code that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Service tier of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
pub enum Tier {
    /// The default.
    #[default]
    Basic,
    /// Middle tier.
    Pro,
    /// Top tier.
    Enterprise,
}

impl Tier {
    /// Reads a tier name, any case.
    pub fn parse(name: &str) -> Option<Self> {
        [Tier::Basic, Tier::Pro, Tier::Enterprise]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Basic => "Basic",
            Tier::Pro => "Pro",
            Tier::Enterprise => "Enterprise",
        }
    }
}

/// A tenant's connection strings by name, in name order, in one shared
/// allocation (a clone shares it: the settings' tenant and its directory entry
/// hold the same bytes).
///
/// Packed: each name and value after its length, then compressed (an LZ4
/// block, `lz4_flex`) against the first set packed in the process when that
/// makes it smaller. Tenants' strings differ mostly in a database name and a
/// password, so a tenant's two strings of some 125 bytes each keep in about
/// 60 bytes, where as two strings, two names and their index they took six
/// allocations and some 500 bytes of heap (the largest part of what a tenant
/// holds; see "Memory under load, per tenant" in the README). Reading one
/// unpacks the set, well under a microsecond; only tenant apps' environments
/// and the Ed-Fi tenant listing read them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectionStringSet(Option<Arc<[u8]>>);

/// The set other sets are compressed against: the first packed of at most
/// [`REFERENCE_MAX`] bytes, for the life of the process (so a set packs to the
/// same bytes whenever it is packed, and equal sets compare equal as bytes).
static REFERENCE: std::sync::OnceLock<Box<[u8]>> = std::sync::OnceLock::new();
/// The largest set that becomes the [`REFERENCE`].
const REFERENCE_MAX: usize = 4 << 10;
/// First byte of a packed set: the rest is the entries as they are.
const PLAIN: u8 = 0;
/// First byte of a packed set: the entries' length (four bytes), then their
/// LZ4 block against the [`REFERENCE`].
const AGAINST_REFERENCE: u8 = 1;

impl ConnectionStringSet {
    /// Packs `entries` (in name order, names unique).
    fn pack(entries: &BTreeMap<String, Secret>) -> Self {
        if entries.is_empty() {
            return Self(None);
        }
        // The tag first, then the entries.
        let mut plain = vec![PLAIN];
        for (name, value) in entries {
            for part in [name.as_bytes(), value.expose().as_bytes()] {
                crate::push_prefixed::<4>(&mut plain, part)
                    .expect("a settings string is under 4 GiB");
            }
        }
        let entries = &plain[1..];
        let reference = match REFERENCE.get() {
            Some(r) => Some(r),
            None if entries.len() <= REFERENCE_MAX => {
                Some(REFERENCE.get_or_init(|| entries.into()))
            }
            None => None,
        };
        if let Some(reference) = reference {
            let mut packed = vec![0; 5 + lz4_flex::block::get_maximum_output_size(entries.len())];
            packed[0] = AGAINST_REFERENCE;
            packed[1..5].copy_from_slice(&(entries.len() as u32).to_le_bytes());
            if let Ok(n) =
                lz4_flex::block::compress_into_with_dict(entries, &mut packed[5..], reference)
                && 5 + n < plain.len()
            {
                return Self(Some(Arc::from(&packed[..5 + n])));
            }
        }
        Self(Some(Arc::from(plain)))
    }

    /// Every name and connection string, in name order.
    pub fn entries(&self) -> Vec<(String, Secret)> {
        let Some(packed) = &self.0 else {
            return Vec::new();
        };
        let unpacked;
        let plain = match packed.split_first() {
            Some((&AGAINST_REFERENCE, rest)) => {
                let (len, block) = rest.split_at(4);
                let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
                let reference = REFERENCE
                    .get()
                    .expect("set before any set packed against it");
                unpacked = lz4_flex::block::decompress_with_dict(block, len, reference)
                    .expect("a set packed against the reference unpacks");
                &unpacked[..]
            }
            Some((_, plain)) => plain,
            None => &[],
        };
        let mut parts =
            crate::prefixed_parts::<4>(plain).map(|p| String::from_utf8_lossy(p).into_owned());
        std::iter::from_fn(|| Some((parts.next()?, Secret::new(parts.next()?)))).collect()
    }

    /// The connection string named `name` (names compare exactly).
    pub fn get(&self, name: &str) -> Option<Secret> {
        self.entries()
            .into_iter()
            .find_map(|(k, v)| (k == name).then_some(v))
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Bytes it holds (tests).
    #[cfg(test)]
    pub(crate) fn packed_len(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.len())
    }
}

/// Names, never values.
impl fmt::Debug for ConnectionStringSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries()).finish()
    }
}

impl From<BTreeMap<String, Secret>> for ConnectionStringSet {
    fn from(map: BTreeMap<String, Secret>) -> Self {
        Self::pack(&map)
    }
}

/// Collected as a map would be: in name order, a later value of a name
/// replacing an earlier one.
impl FromIterator<(String, Secret)> for ConnectionStringSet {
    fn from_iter<I: IntoIterator<Item = (String, Secret)>>(items: I) -> Self {
        Self::pack(&items.into_iter().collect())
    }
}

/// One tenant from the settings file.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSettings {
    /// Name as configured.
    pub name: TenantName,
    /// `ConnectionStrings` of the tenant (name → connection string), shared
    /// with the directory's tenant (one copy of every tenant's strings).
    pub connection_strings: ConnectionStringSet,
    /// Tier, from the `TenantGateway` section (default Basic).
    pub tier: Tier,
    /// Where the tenant's traffic is proxied (`TenantGateway.Tenants.{name}.Upstream`).
    pub upstream: Option<std::sync::Arc<http::Uri>>,
    /// The tenant's own routes (`TenantGateway.Tenants.{name}.Routes`), tried
    /// before the shared ones.
    pub routes: Vec<Route>,
}

/// Where a route sends tenant traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A tenant app (a name of `TenantGateway.Apps`).
    App(String),
    /// The tenant's `Upstream`.
    Upstream,
}

/// A path prefix of tenant traffic and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `/`-separated prefix, starting with `/`, no trailing `/` (except `/` itself).
    pub path: String,
    /// Where matching requests go.
    pub target: Target,
}

impl Route {
    /// Whether `path` is this route's prefix or below it (whole segments only).
    pub fn matches(&self, path: &str) -> bool {
        self.path == "/"
            || path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// The component of a tenant app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AppSource {
    /// Built into the binary (`builtin:tenant-app`).
    Builtin(&'static str),
    /// A `.wasm` file.
    File(PathBuf),
}

/// A tenant app of the settings (`TenantGateway.Apps.{name}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    /// Its component (`Component`).
    pub source: AppSource,
    /// Where it may send HTTP requests (`AllowedOutboundHosts`, Spin's
    /// syntax); empty, the default, allows nowhere.
    pub allowed_outbound_hosts: Arc<AllowedHosts>,
}

/// Names accepted after `builtin:` in `TenantGateway.Apps.{name}.Component`.
pub const BUILTIN_APPS: [&str; 1] = ["tenant-app"];
