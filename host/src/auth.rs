//! Who is calling: the super-user (HTTP Basic, checked against an Argon2 hash from
//! the settings), or a client holding a Bearer token from `POST /connect/token`
//! (OAuth2 client credentials, as Ed-Fi Admin API issues them).
//!
//! Tokens are self-contained and signed (HMAC-SHA256 with a key kept in the
//! store): checking one costs a hash, not a database read, and every gateway
//! sharing the store accepts it. A token names the tenant its client was
//! registered for; whether it may be used on another tenant is a setting
//! (`TenantGateway.Auth.TokensCrossTenants`, off by default).

use crate::settings::SuperUser;
use crate::store::{Store, StoreError};
use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Mutex;
use uuid::Uuid;

/// Gateway-private buckets of the store (components cannot open them).
const CLIENTS: &str = "_clients";
const GATEWAY: &str = "_gateway";
const TOKEN_KEY: &str = "token-signing-key";
/// Prefix of every token this gateway issues (format version).
const TOKEN_PREFIX: &str = "tg1.";

type HmacSha256 = Hmac<Sha256>;

/// Hashes a password for the settings file or the store (Argon2id, random salt,
/// PHC string).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters hashes any password")
        .to_string()
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// The claims of a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The tenant the client was registered for.
    pub tenant: Uuid,
    /// Expiry, seconds since the Unix epoch.
    pub expires: u64,
    /// The client.
    pub client_id: String,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The super-user (Basic auth).
    SuperUser,
    /// A client with a valid token.
    Client(Claims),
    /// A user of one tenant (Basic auth; valid for that tenant only).
    TenantUser {
        /// The tenant.
        tenant: Uuid,
        /// The user name.
        user: String,
    },
}

/// Why the credentials of a request were refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization` header.
    #[error("Authentication is required: send a Bearer token from /connect/token")]
    Missing,
    /// A header that is neither Basic nor Bearer, or malformed.
    #[error("The Authorization header is not a Bearer token or Basic credentials")]
    Malformed,
    /// Bad token: not ours, altered or expired.
    #[error("The access token is invalid or has expired")]
    BadToken,
    /// Basic credentials that are not the super-user's.
    #[error("The user name or password is incorrect")]
    BadCredentials,
}

impl Refusal {
    /// The `WWW-Authenticate` challenge for this refusal (RFC 6750).
    pub fn challenge(self) -> &'static str {
        match self {
            Refusal::Missing => r#"Bearer realm="tenant-gateway", Basic realm="tenant-gateway""#,
            Refusal::BadToken => {
                r#"Bearer realm="tenant-gateway", error="invalid_token", error_description="The access token is invalid or has expired""#
            }
            Refusal::Malformed => r#"Bearer realm="tenant-gateway", error="invalid_request""#,
            Refusal::BadCredentials => r#"Basic realm="tenant-gateway""#,
        }
    }
}

/// A registered client, as stored (the secret only as a hash).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ClientRecord {
    tenant_id: Uuid,
    display_name: String,
    secret_hash: String,
    created_at: String,
}

/// Why a token request failed (RFC 6749 §5.2 error codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, `invalid_scope`.
    pub code: &'static str,
    /// Human-readable detail.
    pub description: String,
}

fn token_error(code: &'static str, description: impl Into<String>) -> TokenError {
    TokenError {
        code,
        description: description.into(),
    }
}

/// The scopes a client may ask for (Ed-Fi's, and our own name for the same).
pub const SCOPES: [&str; 2] = ["edfi_admin_api/full_access", "tenant-gateway/full_access"];

/// Credential checks and token issue. Built once; the settings it reads (the
/// super-user, token lifetime) come with each call, so a settings reload applies
/// at once.
pub struct Authenticator {
    key: [u8; 32],
    /// SHA-256 of `name:password` pairs that verified (salted with the signing
    /// key), so an Argon2 check is paid once per credential, not per request.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator")
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Authenticator {
    /// Loads the token signing key from the store, creating it on first start.
    pub fn open(store: &dyn Store) -> Result<Self, StoreError> {
        let mut fresh = [0u8; 32];
        OsRng.fill_bytes(&mut fresh);
        // Only the first gateway to get here writes; everyone reads the winner.
        store.swap(GATEWAY, TOKEN_KEY, None, &fresh)?;
        let stored = store
            .get(GATEWAY, TOKEN_KEY)?
            .ok_or_else(|| StoreError::Open("token signing key vanished".into()))?;
        let key: [u8; 32] = stored
            .value
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Open("token signing key has the wrong length".into()))?;
        Ok(Self {
            key,
            verified: Mutex::new(HashSet::new()),
        })
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// Makes a token for `client_id` of `tenant`, valid `lifetime` seconds.
    pub fn issue(&self, tenant: Uuid, client_id: &str, lifetime: u64) -> (String, u64) {
        let expires = unix_now() + lifetime;
        let mut payload = Vec::with_capacity(24 + client_id.len());
        payload.extend_from_slice(tenant.as_bytes());
        payload.extend_from_slice(&expires.to_be_bytes());
        payload.extend_from_slice(client_id.as_bytes());
        let mut mac = self.mac();
        mac.update(&payload);
        let sig = mac.finalize().into_bytes();
        let token = format!(
            "{TOKEN_PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(sig)
        );
        (token, expires)
    }

    /// Checks a token: ours, unaltered, unexpired.
    pub fn verify_token(&self, token: &str) -> Result<Claims, Refusal> {
        let rest = token.strip_prefix(TOKEN_PREFIX).ok_or(Refusal::BadToken)?;
        let (payload, sig) = rest.split_once('.').ok_or(Refusal::BadToken)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| Refusal::BadToken)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| Refusal::BadToken)?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&sig).map_err(|_| Refusal::BadToken)?;
        if payload.len() < 24 {
            return Err(Refusal::BadToken);
        }
        let tenant = Uuid::from_slice(&payload[..16]).map_err(|_| Refusal::BadToken)?;
        let expires = u64::from_be_bytes(payload[16..24].try_into().expect("8 bytes"));
        if expires <= unix_now() {
            return Err(Refusal::BadToken);
        }
        let client_id = String::from_utf8(payload[24..].to_vec()).map_err(|_| Refusal::BadToken)?;
        Ok(Claims {
            tenant,
            expires,
            client_id,
        })
    }

    /// Checks a password against a PHC hash, remembering (as a salted digest) the
    /// pairs that verified so the Argon2 cost is paid once per credential.
    fn verify_cached(&self, scope: &[u8], phc: &str, name: &str, password: &str) -> bool {
        let mut digest = Sha256::new();
        digest.update(self.key);
        digest.update(scope);
        digest.update([0]);
        digest.update(phc.as_bytes());
        digest.update(name.as_bytes());
        digest.update([0]);
        digest.update(password.as_bytes());
        let fingerprint: [u8; 32] = digest.finalize().into();
        if self
            .verified
            .lock()
            .expect("poisoned")
            .contains(&fingerprint)
        {
            return true;
        }
        if !verify_password(password, phc) {
            return false;
        }
        let mut set = self.verified.lock().expect("poisoned");
        if set.len() > 1024 {
            set.clear();
        }
        set.insert(fingerprint);
        true
    }

    /// Checks Basic credentials against the super-user.
    pub fn verify_super_user(
        &self,
        super_user: Option<&SuperUser>,
        name: &str,
        password: &str,
    ) -> bool {
        match super_user {
            Some(su) if name == su.name => {
                self.verify_cached(b"super-user", &su.password_hash, name, password)
            }
            _ => false,
        }
    }

    /// Who sent `authorization` (the header's value). Basic credentials are the
    /// super-user's, or those of a user of `tenant` (the tenant the request is for).
    pub fn authenticate(
        &self,
        authorization: Option<&http::HeaderValue>,
        super_user: Option<&SuperUser>,
        tenant: Option<&crate::tenants::Tenant>,
    ) -> Result<Principal, Refusal> {
        let value = authorization
            .ok_or(Refusal::Missing)?
            .to_str()
            .map_err(|_| Refusal::Malformed)?;
        let (scheme, rest) = value.split_once(' ').ok_or(Refusal::Malformed)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.verify_token(rest).map(Principal::Client);
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let (name, password) = basic(rest).ok_or(Refusal::Malformed)?;
            if self.verify_super_user(super_user, &name, &password) {
                return Ok(Principal::SuperUser);
            }
            if let Some(t) = tenant
                && let Some(phc) = t.doc.users.get(&name)
                && self.verify_cached(t.id.as_bytes(), phc, &name, &password)
            {
                return Ok(Principal::TenantUser {
                    tenant: t.id,
                    user: name,
                });
            }
            return Err(Refusal::BadCredentials);
        }
        Err(Refusal::Malformed)
    }

    /// Registers a client for `tenant`. `Ok(false)`: the client id is taken.
    pub fn register(
        &self,
        store: &dyn Store,
        client_id: &str,
        secret: &str,
        display_name: &str,
        tenant: Uuid,
        now: &str,
    ) -> Result<bool, StoreError> {
        let record = ClientRecord {
            tenant_id: tenant,
            display_name: display_name.to_owned(),
            secret_hash: hash_password(secret),
            created_at: now.to_owned(),
        };
        let value = serde_json::to_vec(&record).expect("a record serializes");
        store.swap(CLIENTS, client_id, None, &value)
    }

    /// Exchanges client credentials for a token. `tenant`: the tenant the request
    /// named, if any; it must be the client's own.
    pub fn token(
        &self,
        store: &dyn Store,
        client_id: &str,
        secret: &str,
        tenant: Option<Uuid>,
        lifetime: u64,
    ) -> Result<Result<(String, u64, Uuid), TokenError>, StoreError> {
        let invalid = || {
            Ok(Err(token_error(
                "invalid_client",
                "Client authentication failed",
            )))
        };
        let Some(stored) = store.get(CLIENTS, client_id)? else {
            // Same cost as a real check, so unknown ids cannot be told apart by time.
            verify_password(secret, &DUMMY_HASH);
            return invalid();
        };
        let Ok(record) = serde_json::from_slice::<ClientRecord>(&stored.value) else {
            return invalid();
        };
        if !verify_password(secret, &record.secret_hash) {
            return invalid();
        }
        if tenant.is_some_and(|t| t != record.tenant_id) {
            return invalid();
        }
        let (token, expires) = self.issue(record.tenant_id, client_id, lifetime);
        Ok(Ok((token, expires, record.tenant_id)))
    }
}

/// A hash of a random password, checked for unknown client ids.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut random = [0u8; 16];
    OsRng.fill_bytes(&mut random);
    hash_password(&hex::encode(random))
});

/// Decodes `base64(name:password)`.
pub fn basic(encoded: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// Ed-Fi's client secret rule: 32–128 characters with a lower-case letter, an
/// upper-case letter, a digit and a character that is none of these.
pub fn secret_problem(secret: &str) -> Option<&'static str> {
    let n = secret.chars().count();
    let ok = (32..=128).contains(&n)
        && secret.chars().any(|c| c.is_ascii_lowercase())
        && secret.chars().any(|c| c.is_ascii_uppercase())
        && secret.chars().any(|c| c.is_ascii_digit())
        && secret.chars().any(|c| !c.is_ascii_alphanumeric());
    (!ok).then_some(
        "ClientSecret must be 32 to 128 characters with at least one lower-case letter, one upper-case letter, one digit and one special character",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn auth() -> (Authenticator, SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        (Authenticator::open(&store).unwrap(), store, dir)
    }

    #[test]
    fn tokens_verify_until_altered_or_expired() {
        let (a, store, _dir) = auth();
        let tenant = Uuid::from_u128(7);
        let (token, expires) = a.issue(tenant, "client-1", 60);
        let claims = a.verify_token(&token).unwrap();
        assert_eq!(claims.tenant, tenant);
        assert_eq!(claims.client_id, "client-1");
        assert_eq!(claims.expires, expires);

        // One changed character of the payload breaks the signature.
        let mut bytes = token.clone().into_bytes();
        bytes[6] = if bytes[6] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            a.verify_token(&String::from_utf8(bytes).unwrap()),
            Err(Refusal::BadToken)
        );
        // Expired.
        let (old, _) = a.issue(tenant, "c", 0);
        assert_eq!(a.verify_token(&old), Err(Refusal::BadToken));
        // Another store's key signs tokens this one refuses; the same store's
        // key survives a reopen.
        let (other, _s, _d) = auth();
        assert_eq!(other.verify_token(&token), Err(Refusal::BadToken));
        let reopened = Authenticator::open(&store).unwrap();
        assert!(reopened.verify_token(&token).is_ok());
    }

    #[test]
    fn clients_register_once_and_get_tokens_for_their_tenant_only() {
        let (a, store, _dir) = auth();
        let t1 = Uuid::from_u128(1);
        let secret = "Aa1!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert!(
            a.register(&store, "c1", secret, "C1", t1, "2025-01-01T00:00:00Z")
                .unwrap()
        );
        assert!(
            !a.register(&store, "c1", secret, "again", t1, "2025-01-01T00:00:00Z")
                .unwrap()
        );
        let (token, _, tenant) = a.token(&store, "c1", secret, None, 60).unwrap().unwrap();
        assert_eq!(tenant, t1);
        assert_eq!(a.verify_token(&token).unwrap().tenant, t1);
        assert!(a.token(&store, "c1", secret, Some(t1), 60).unwrap().is_ok());
        for (id, s, t) in [
            ("c1", "wrong", None),
            ("nobody", secret, None),
            ("c1", secret, Some(Uuid::from_u128(2))),
        ] {
            assert_eq!(
                a.token(&store, id, s, t, 60).unwrap().unwrap_err().code,
                "invalid_client"
            );
        }
        // The stored record holds a hash, not the secret.
        let raw = store.get(CLIENTS, "c1").unwrap().unwrap().value;
        assert!(!String::from_utf8(raw).unwrap().contains(secret));
    }

    #[test]
    fn super_user_basic_credentials() {
        let (a, _store, _dir) = auth();
        let su = SuperUser {
            name: "admin".into(),
            password_hash: hash_password("s3cret"),
        };
        let header = |user: &str, pw: &str| {
            http::HeaderValue::from_str(&format!(
                "Basic {}",
                STANDARD.encode(format!("{user}:{pw}"))
            ))
            .unwrap()
        };
        for _ in 0..2 {
            assert_eq!(
                a.authenticate(Some(&header("admin", "s3cret")), Some(&su), None),
                Ok(Principal::SuperUser)
            );
        }
        assert_eq!(
            a.authenticate(Some(&header("admin", "nope")), Some(&su), None),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            a.authenticate(Some(&header("root", "s3cret")), Some(&su), None),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            a.authenticate(Some(&header("admin", "s3cret")), None, None),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(a.authenticate(None, Some(&su), None), Err(Refusal::Missing));
        assert_eq!(
            a.authenticate(
                Some(&http::HeaderValue::from_static("Digest x")),
                Some(&su),
                None
            ),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn secret_rule() {
        assert!(secret_problem("short").is_some());
        assert!(secret_problem(&"a".repeat(40)).is_some());
        assert!(secret_problem("Aa1!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_none());
    }
}
