//! OAuth2 client credentials as Ed-Fi Admin API issues them: clients registered
//! for a tenant (the secret kept only as a hash), and self-contained tokens
//! signed with HMAC-SHA256 (checking one costs a hash, not a store read).

use super::auth::{Authenticator, CheckFailure, CheckQuota, Refusal, unix_now};
use super::password::hash_password;
use crate::store::{Store, StoreError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use std::sync::Arc;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The gateway-private bucket of registered clients (components cannot open it).
const CLIENTS: &str = crate::store::CLIENTS_BUCKET;
/// Prefix of every token this gateway issues (format version).
/// `tg2.`: the payload carries the tenant's generation (`tg1.` tokens, from
/// before, did not, and are refused).
const TOKEN_PREFIX: &str = "tg2.";
/// Tenant UUID, expiry and tenant generation, before the client id.
const CLAIMS_FIXED: usize = 32;

/// The claims of a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The tenant the client was registered for.
    pub tenant: Uuid,
    /// That tenant's generation ([`crate::tenancy::Tenant::generation`]).
    pub generation: u64,
    /// Expiry, seconds since the Unix epoch.
    pub expires: u64,
    /// The client.
    pub client_id: String,
}

/// A registered client, as stored (the secret only as a hash).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ClientRecord {
    tenant_id: Uuid,
    /// The generation of the tenant it was registered for (absent in records
    /// of earlier versions: their `created_at` tells).
    #[serde(default)]
    generation: Option<u64>,
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

/// Ed-Fi's client secret rule: 32–128 characters, none a line feed, with a
/// lower-case letter, an upper-case letter, a digit and a character that is
/// none of these.
pub fn secret_follows_rule(secret: &str) -> bool {
    let n = secret.chars().count();
    (32..=128).contains(&n)
        && !secret.contains('\n')
        && secret.chars().any(|c| c.is_ascii_lowercase())
        && secret.chars().any(|c| c.is_ascii_uppercase())
        && secret.chars().any(|c| c.is_ascii_digit())
        && secret.chars().any(|c| !c.is_ascii_alphanumeric())
}

impl Authenticator {
    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// Makes a token for `client_id` of `tenant`, valid `lifetime` seconds.
    pub fn issue(
        &self,
        tenant: Uuid,
        generation: u64,
        client_id: &str,
        lifetime: u64,
    ) -> (String, u64) {
        let expires = unix_now() + lifetime;
        let mut payload = Vec::with_capacity(CLAIMS_FIXED + client_id.len());
        payload.extend_from_slice(tenant.as_bytes());
        payload.extend_from_slice(&expires.to_be_bytes());
        payload.extend_from_slice(&generation.to_be_bytes());
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
        if payload.len() < CLAIMS_FIXED {
            return Err(Refusal::BadToken);
        }
        let tenant = Uuid::from_slice(&payload[..16]).map_err(|_| Refusal::BadToken)?;
        let expires = u64::from_be_bytes(payload[16..24].try_into().expect("8 bytes"));
        if expires <= unix_now() {
            return Err(Refusal::BadToken);
        }
        let generation = u64::from_be_bytes(payload[24..32].try_into().expect("8 bytes"));
        let client_id =
            String::from_utf8(payload[CLAIMS_FIXED..].to_vec()).map_err(|_| Refusal::BadToken)?;
        Ok(Claims {
            tenant,
            generation,
            expires,
            client_id,
        })
    }

    /// Registers a client for `tenant` with its secret hashed on the hashing
    /// pool (one check of the address's quota). `Ok(false)`: the client id is
    /// taken.
    #[allow(clippy::too_many_arguments)]
    pub async fn register(
        &self,
        store: Arc<dyn Store>,
        client_id: String,
        secret: String,
        display_name: String,
        tenant: &crate::tenancy::Tenant,
        max_clients: u32,
        from: IpAddr,
        quota: CheckQuota,
    ) -> Result<crate::store::ClientRegistration, CheckFailure> {
        self.admit(from, &client_id, quota)?;
        let secret_hash = self
            .hasher
            .run(move || hash_password(&secret))
            .await
            .map_err(|_| Refusal::Busy)?;
        let record = ClientRecord {
            tenant_id: tenant.id,
            generation: Some(tenant.generation),
            display_name,
            secret_hash,
            created_at: crate::now_rfc3339(),
        };
        let value = serde_json::to_vec(&record).expect("a record serializes");
        let tenant_id = tenant.id.to_string();
        tokio::task::spawn_blocking(move || {
            store.register_client(&client_id, &tenant_id, &value, max_clients)
        })
        .await
        .map_err(|e| CheckFailure::Store(StoreError::Open(e.to_string())))?
        .map_err(CheckFailure::Store)
    }

    /// Exchanges client credentials for a token. `tenant`: the tenant the request
    /// named, if any; it must be the client's own. The secret check is limited
    /// and pooled like any password check; an unknown client id costs the same.
    #[allow(clippy::too_many_arguments)]
    pub async fn token(
        &self,
        store: Arc<dyn Store>,
        client_id: &str,
        secret: &str,
        tenant: Option<Uuid>,
        dir: &crate::tenancy::Directory,
        lifetime: u64,
        from: IpAddr,
        quota: CheckQuota,
    ) -> Result<Result<(String, u64, Uuid), TokenError>, CheckFailure> {
        let invalid = || {
            Ok(Err(token_error(
                "invalid_client",
                "Client authentication failed",
            )))
        };
        let id = client_id.to_owned();
        let stored = tokio::task::spawn_blocking(move || store.get(CLIENTS, &id))
            .await
            .map_err(|e| CheckFailure::Store(StoreError::Open(e.to_string())))?
            .map_err(CheckFailure::Store)?;
        let record = stored.and_then(|s| serde_json::from_slice::<ClientRecord>(&s.value).ok());
        let phc = record.as_ref().map(|r| r.secret_hash.as_str());
        let matches = self.check(from, client_id, secret, phc, quota).await?;
        let Some(record) = record.filter(|_| matches) else {
            return invalid();
        };
        if tenant.is_some_and(|t| t != record.tenant_id) {
            return invalid();
        }
        // A client of an earlier tenant of the same name (purged, then made
        // again) is no client of this one.
        let Some(current) = dir.by_id(&record.tenant_id) else {
            return invalid();
        };
        let same_generation = match record.generation {
            Some(g) => g == current.generation,
            // Records of earlier versions: one made before the tenant was
            // (by its creation time) belongs to an earlier tenant.
            None => {
                crate::tenancy::generation_of(&record.created_at)
                    >= crate::tenancy::generation_of(&current.created_at)
            }
        };
        if !same_generation {
            return invalid();
        }
        let (token, expires) =
            self.issue(record.tenant_id, current.generation, client_id, lifetime);
        Ok(Ok((token, expires, record.tenant_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::auth::tests::{LOCAL, QUOTA, auth};

    #[test]
    fn tokens_verify_until_altered_or_expired() {
        let (a, store, _dir) = auth();
        let tenant = Uuid::from_u128(7);
        let (token, expires) = a.issue(tenant, 42, "client-1", 60);
        let claims = a.verify_token(&token).unwrap();
        assert_eq!(claims.tenant, tenant);
        assert_eq!(claims.client_id, "client-1");
        assert_eq!(claims.expires, expires);
        assert_eq!(claims.generation, 42);

        // One changed character of the payload breaks the signature.
        let mut bytes = token.clone().into_bytes();
        bytes[6] = if bytes[6] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            a.verify_token(&String::from_utf8(bytes).unwrap()),
            Err(Refusal::BadToken)
        );
        // Expired.
        let (old, _) = a.issue(tenant, 42, "c", 0);
        assert_eq!(a.verify_token(&old), Err(Refusal::BadToken));
        // Another store's key signs tokens this one refuses; the same store's
        // key survives a reopen.
        let (other, _s, _d) = auth();
        assert_eq!(other.verify_token(&token), Err(Refusal::BadToken));
        let reopened = Authenticator::open(&store).unwrap();
        assert!(reopened.verify_token(&token).is_ok());
    }

    #[tokio::test]
    async fn clients_register_once_and_get_tokens_for_their_tenant_only() {
        let (a, store, _dir) = auth();
        let (dir, _) = crate::tenancy::Directory::sample(&store);
        let store: Arc<dyn Store> = Arc::new(store);
        let tenant1 = dir.get("Tenant1").unwrap().clone();
        let t1 = tenant1.id;
        let secret = "Aa1!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let register = |id: &str, display: &str| {
            a.register(
                store.clone(),
                id.into(),
                secret.into(),
                display.into(),
                &tenant1,
                2,
                LOCAL,
                QUOTA,
            )
        };
        use crate::store::ClientRegistration as R;
        assert_eq!(register("c1", "C1").await.unwrap(), R::Registered);
        assert_eq!(register("c1", "again").await.unwrap(), R::Taken);
        assert_eq!(register("c2", "C2").await.unwrap(), R::Registered);
        assert_eq!(
            register("c3", "C3").await.unwrap(),
            R::Full,
            "at most 2 per tenant"
        );
        let token = |id: &'static str, s: &'static str, t: Option<Uuid>| {
            a.token(store.clone(), id, s, t, &dir, 60, LOCAL, QUOTA)
        };
        let (token_text, _, tenant) = token("c1", secret, None).await.unwrap().unwrap();
        assert_eq!(tenant, t1);
        assert_eq!(a.verify_token(&token_text).unwrap().tenant, t1);
        assert!(token("c1", secret, Some(t1)).await.unwrap().is_ok());
        for (id, s, t) in [
            ("c1", "wrong", None),
            ("nobody", secret, None),
            ("c1", secret, Some(Uuid::from_u128(2))),
        ] {
            assert_eq!(
                token(id, s, t).await.unwrap().unwrap_err().code,
                "invalid_client"
            );
        }
        // The stored record holds a hash, not the secret.
        let raw = store.get(CLIENTS, "c1").unwrap().unwrap().value;
        assert!(!String::from_utf8(raw).unwrap().contains(secret));
    }

    #[test]
    fn secret_rule() {
        assert!(!secret_follows_rule("short"));
        assert!(!secret_follows_rule(&"a".repeat(40)));
        assert!(secret_follows_rule("Aa1!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(!secret_follows_rule(
            "Aa1!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\naa"
        ));
        assert!(!secret_follows_rule(&format!("Aa1!{}", "a".repeat(125))));
    }
}
