//! Who is calling: the super-user (HTTP Basic, checked against an Argon2 hash from
//! the settings), or a client holding a Bearer token from `POST /connect/token`
//! (OAuth2 client credentials, as Ed-Fi Admin API issues them).
//!
//! Tokens are self-contained and signed (HMAC-SHA256 with a key kept in the
//! store): checking one costs a hash, not a database read, and every gateway
//! sharing the store accepts it. A token names the tenant its client was
//! registered for; whether it may be used on another tenant is a setting
//! (`TenantGateway.Auth.TokensCrossTenants`, off by default).

use crate::config::SuperUser;
use crate::store::{Store, StoreError};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Gateway-private buckets of the store (components cannot open them).
const CLIENTS: &str = crate::store::CLIENTS_BUCKET;
const GATEWAY: &str = "_gateway";
const TOKEN_KEY: &str = "token-signing-key";
/// Prefix of every token this gateway issues (format version).
/// `tg2.`: the payload carries the tenant's generation (`tg1.` tokens, from
/// before, did not, and are refused).
const TOKEN_PREFIX: &str = "tg2.";
/// Tenant UUID, expiry and tenant generation, before the client id.
const CLAIMS_FIXED: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Hashes a password for the settings file or the store (Argon2id with the
/// crate's default cost, random salt, PHC string).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let argon = Argon2::default();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .expect("a generated salt decodes");
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    assert!(
        argon2_into(&argon, password.as_bytes(), salt_bytes, &mut out),
        "Argon2 with default parameters hashes any password"
    );
    PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(argon.params()).expect("default parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("a 32-byte output")),
    }
    .to_string()
}

fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let Ok(version) = hash.version.map(Version::try_from).transpose() else {
        return false;
    };
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    // `Output`'s comparison takes the same time wherever the bytes differ.
    argon2_into(&argon, password.as_bytes(), salt, &mut out)
        && Output::new(&out).is_ok_and(|o| o == expected)
}

thread_local! {
    /// Argon2's working memory (19 MiB at the default cost), kept by each
    /// thread for its next hash: the hashing threads ([`Hasher`]) are few and
    /// fixed, so this bounds the memory hashing ever holds. Allocated afresh
    /// per hash, the allocator kept most of it anyway, on whichever threads
    /// ran hashes (measured: 20 checks left 177 MB resident).
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest Argon2 memory a stored hash may ask for (64 MiB): a hash asking more
/// never matches, so no hash in a settings file or a store can make a check
/// allocate without bound.
const MAX_BLOCKS: usize = 64 * 1024;

/// Argon2 of `password` and `salt` into `out`, in this thread's kept memory.
fn argon2_into(argon: &Argon2, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    let n = argon.params().block_count();
    if n > MAX_BLOCKS {
        return false;
    }
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        if blocks.len() < n {
            blocks.resize(n, Block::default());
        }
        argon
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..n])
            .is_ok()
    })
}

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
    /// Too many password checks from this address, or for this user, lately
    /// (429); the seconds until another is admitted.
    #[error("Too many sign-in attempts; try again later")]
    Throttled(u64),
    /// Every password-checking slot is taken (503).
    #[error("The gateway is too busy checking passwords; try again shortly")]
    Busy,
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
            Refusal::BadCredentials | Refusal::Throttled(_) | Refusal::Busy => {
                r#"Basic realm="tenant-gateway""#
            }
        }
    }

    /// The status of this refusal: 401, or 429 / 503 when no check was made.
    pub fn status(self) -> http::StatusCode {
        match self {
            Refusal::Throttled(_) => http::StatusCode::TOO_MANY_REQUESTS,
            Refusal::Busy => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// `Retry-After` seconds of a 429 or 503.
    pub fn retry_after(self) -> Option<u64> {
        match self {
            Refusal::Throttled(s) => Some(s),
            Refusal::Busy => Some(1),
            _ => None,
        }
    }
}

/// Where password hashing and checking (Argon2: tens of milliseconds of CPU
/// and 19 MiB of memory each) runs: a few threads of its own, one per core,
/// never the async workers, with a bounded queue. Past the queue a request is
/// refused at once (503) instead of waiting, so a flood of guesses costs
/// bounded CPU and memory and cannot stall the gateway. Threads of its own,
/// not tokio's blocking pool: each thread keeps the memory of the hashes it
/// ran for reuse (the allocator's per-thread arenas), so a fixed, small set
/// of threads bounds that memory too (on the blocking pool, whose threads
/// come and go, 200 guesses left 300 MB behind). A client that gives up does
/// not cancel the hash it caused; it still counts against the bound.
pub struct Hasher {
    jobs: std::sync::mpsc::SyncSender<Box<dyn FnOnce() + Send>>,
    checks: AtomicU64,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("runs", &self.runs())
            .finish_non_exhaustive()
    }
}

/// The hashing queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Hasher {
    /// `parallel` threads, `waiting` more jobs queued.
    pub fn new(parallel: usize, waiting: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Box<dyn FnOnce() + Send>>(waiting);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..parallel.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match next {
                            Ok(job) => job(),
                            // The hasher is gone.
                            Err(_) => return,
                        }
                    }
                })
                .expect("start a password hashing thread");
        }
        Self {
            jobs,
            checks: AtomicU64::new(0),
        }
    }

    /// One thread per core, 32 jobs waiting.
    pub fn for_this_machine() -> Self {
        Self::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
            32,
        )
    }

    /// Queues `work` (a hash or a check), or refuses it at once when the queue
    /// is full; the future yields its result.
    pub fn submit<T, W>(
        &self,
        work: W,
    ) -> Result<impl Future<Output = Result<T, Busy>> + use<T, W>, Busy>
    where
        T: Send + 'static,
        W: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(Box::new(move || {
                let _ = tx.send(work());
            }))
            .map_err(|_| Busy)?;
        self.checks.fetch_add(1, Ordering::Relaxed);
        Ok(async move { rx.await.map_err(|_| Busy) })
    }

    /// Runs `work` on the hashing threads within the bounds.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        self.submit(work)?.await
    }

    /// Hashes and checks queued so far.
    pub fn runs(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

/// What a password check counts against: the client's address, and the user
/// name (or client id) it is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Attempt {
    Address(IpAddr),
    User(String),
}

/// Limits on password checks per client address and per user name, from the
/// settings (`TenantGateway.Auth.PasswordChecksPer…PerMinute`). Credentials
/// that verified before are remembered and never checked again, so the limits
/// fall on guesses, not on a client that signs in correctly.
#[derive(Debug, Clone, Copy)]
pub struct CheckQuota {
    /// Per client address per minute.
    pub per_address: u32,
    /// Per user name or client id per minute.
    pub per_user: u32,
}

impl From<&crate::config::AuthSettings> for CheckQuota {
    fn from(a: &crate::config::AuthSettings) -> Self {
        Self {
            per_address: a.password_checks_per_address_per_minute,
            per_user: a.password_checks_per_user_per_minute,
        }
    }
}

/// Distinct addresses and user names the limiter keeps track of before it
/// forgets those whose quota is whole again.
const ATTEMPT_KEYS: usize = 10_000;

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

/// Credential checks and token issue. Built once; the settings it reads (the
/// super-user, token lifetime) come with each call, so a settings reload applies
/// at once.
pub struct Authenticator {
    key: [u8; 32],
    /// SHA-256 of `name:password` pairs that verified (salted with the signing
    /// key), so an Argon2 check is paid once per credential, not per request.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Where every hash and check runs.
    pub hasher: Hasher,
    attempts: crate::security::rate::RateLimiter<Attempt>,
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
            hasher: Hasher::for_this_machine(),
            attempts: crate::security::rate::RateLimiter::default(),
        })
    }

    /// Admits one password check for `user` from `from`, or refuses it (429)
    /// when either has had its share this minute.
    fn admit(&self, from: IpAddr, user: &str, quota: CheckQuota) -> Result<(), Refusal> {
        let wait = |d: std::time::Duration| Refusal::Throttled(d.as_secs().max(1));
        self.attempts
            .check_key(Attempt::Address(from), quota.per_address, ATTEMPT_KEYS)
            .map_err(wait)?;
        self.attempts
            .check_key(Attempt::User(user.to_owned()), quota.per_user, ATTEMPT_KEYS)
            .map_err(wait)
    }

    /// Checks `password` against `phc` within the check limits and on the
    /// hashing pool: `Ok(true)` if it matches. `phc` `None` (no such user) is
    /// checked against a hash of a random password, so an unknown name costs
    /// what a wrong password costs and cannot be told apart by time.
    async fn check(
        &self,
        from: IpAddr,
        user: &str,
        password: &str,
        phc: Option<&str>,
        quota: CheckQuota,
    ) -> Result<bool, Refusal> {
        self.admit(from, user, quota)?;
        let (password, phc) = (
            password.to_owned(),
            phc.map_or_else(|| DUMMY_HASH.clone(), str::to_owned),
        );
        self.hasher
            .run(move || verify_password(&password, &phc))
            .await
            .map_err(|_| Refusal::Busy)
    }

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

    /// The salted digest that remembers a credential that verified.
    fn fingerprint(&self, scope: &[u8], phc: &str, name: &str, password: &str) -> [u8; 32] {
        let mut digest = Sha256::new();
        digest.update(self.key);
        digest.update(scope);
        digest.update([0]);
        digest.update(phc.as_bytes());
        digest.update(name.as_bytes());
        digest.update([0]);
        digest.update(password.as_bytes());
        digest.finalize().into()
    }

    fn remembered(&self, fingerprint: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(fingerprint)
    }

    fn remember(&self, fingerprint: [u8; 32]) {
        let mut set = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() > 1024 {
            set.clear();
        }
        set.insert(fingerprint);
    }

    /// Checks Basic credentials `name:password` against the super-user and
    /// the users of `tenant`; a name that is neither, against the users of
    /// that name of other tenants (at most [`OTHER_TENANT_CANDIDATES`]), so
    /// valid credentials for the wrong tenant are known as such (403, not
    /// 401). A credential that verified before is known at once; any other
    /// costs one check per candidate, limited and pooled ([`Self::check`]).
    #[allow(clippy::too_many_arguments)]
    async fn verify_basic(
        &self,
        from: IpAddr,
        name: &str,
        password: &str,
        super_user: Option<&SuperUser>,
        tenant: Option<&crate::tenancy::Tenant>,
        everyone: &[Arc<crate::tenancy::Tenant>],
        quota: CheckQuota,
    ) -> Result<Principal, Refusal> {
        fn user_of<'t>(
            t: &'t crate::tenancy::Tenant,
            name: &str,
        ) -> Option<(&'t [u8], &'t str, Principal)> {
            t.doc.users.get(name).map(|phc| {
                let who = Principal::TenantUser {
                    tenant: t.id,
                    user: name.to_owned(),
                };
                (&t.id.as_bytes()[..], phc.as_str(), who)
            })
        }
        // Each possible account: its hash, who it is, and the digest that
        // remembers this credential for it.
        let mut accounts: Vec<(&[u8], &str, Principal)> = [
            super_user.filter(|su| su.name == name).map(|su| {
                (
                    &b"super-user"[..],
                    su.password_hash.as_str(),
                    Principal::SuperUser,
                )
            }),
            tenant.and_then(|t| user_of(t, name)),
        ]
        .into_iter()
        .flatten()
        .collect();
        if accounts.is_empty() {
            let requested = tenant.map(|t| t.id);
            accounts.extend(
                everyone
                    .iter()
                    .filter(|t| Some(t.id) != requested)
                    .filter_map(|t| user_of(t, name))
                    .take(OTHER_TENANT_CANDIDATES),
            );
        }
        let candidates: Vec<(&str, Principal, [u8; 32])> = accounts
            .into_iter()
            .map(|(scope, phc, who)| (phc, who, self.fingerprint(scope, phc, name, password)))
            .collect();
        if let Some((_, who, _)) = candidates.iter().find(|(_, _, f)| self.remembered(f)) {
            return Ok(who.clone());
        }
        if candidates.is_empty() {
            self.check(from, name, password, None, quota).await?;
            return Err(Refusal::BadCredentials);
        }
        for (phc, who, fingerprint) in candidates {
            if self.check(from, name, password, Some(phc), quota).await? {
                self.remember(fingerprint);
                return Ok(who);
            }
        }
        Err(Refusal::BadCredentials)
    }

    /// Who sent `authorization` (the header's value), from the client address
    /// `from`, under the tenants and `TenantGateway.Auth` of `dir`. Basic
    /// credentials are the super-user's, or those of a user of `tenant` (the
    /// tenant the request is for, else of another one).
    pub async fn authenticate(
        &self,
        authorization: Option<&http::HeaderValue>,
        from: IpAddr,
        tenant: Option<&crate::tenancy::Tenant>,
        dir: &crate::tenancy::Directory,
    ) -> Result<Principal, Refusal> {
        let auth = &dir.auth;
        let value = authorization
            .ok_or(Refusal::Missing)?
            .to_str()
            .map_err(|_| Refusal::Malformed)?;
        let (scheme, rest) = value.split_once(' ').ok_or(Refusal::Malformed)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let claims = self.verify_token(rest)?;
            // Issued for this very tenant, not an earlier one of its name.
            return match dir.by_id(&claims.tenant) {
                Some(t) if t.generation == claims.generation => Ok(Principal::Client(claims)),
                _ => Err(Refusal::BadToken),
            };
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let (name, password) = basic(rest).ok_or(Refusal::Malformed)?;
            return self
                .verify_basic(
                    from,
                    &name,
                    &password,
                    auth.super_user.as_ref(),
                    tenant,
                    dir.tenants(),
                    CheckQuota::from(auth),
                )
                .await;
        }
        Err(Refusal::Malformed)
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

/// Users of other tenants a Basic credential is tried against when its name
/// is no user of the tenant asked about (bounds the hashing one request causes).
const OTHER_TENANT_CANDIDATES: usize = 2;

/// Why a check could not be made: refused before it (429, 503), or the store failed.
#[derive(Debug)]
pub enum CheckFailure {
    /// Throttled or busy.
    Refused(Refusal),
    /// The store failed.
    Store(StoreError),
}

impl From<Refusal> for CheckFailure {
    fn from(r: Refusal) -> Self {
        CheckFailure::Refused(r)
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

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const QUOTA: CheckQuota = CheckQuota {
        per_address: 100,
        per_user: 100,
    };

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

    fn header(user: &str, pw: &str) -> http::HeaderValue {
        http::HeaderValue::from_str(&format!(
            "Basic {}",
            STANDARD.encode(format!("{user}:{pw}"))
        ))
        .unwrap()
    }

    /// A directory without tenants, under `auth`.
    fn directory(auth: crate::config::AuthSettings) -> crate::tenancy::Directory {
        let mut dir = crate::tenancy::Directory::default();
        dir.auth = auth;
        dir
    }

    fn settings(
        su: Option<SuperUser>,
        per_address: u32,
        per_user: u32,
    ) -> crate::config::AuthSettings {
        crate::config::AuthSettings {
            super_user: su,
            password_checks_per_address_per_minute: per_address,
            password_checks_per_user_per_minute: per_user,
            ..Default::default()
        }
    }

    fn admin() -> SuperUser {
        SuperUser {
            name: "admin".into(),
            password_hash: hash_password("s3cret"),
        }
    }

    #[tokio::test]
    async fn super_user_basic_credentials() {
        let (a, _store, _dir) = auth();
        let with = settings(Some(admin()), 100, 100);
        let without = settings(None, 100, 100);
        let check = |h: Option<http::HeaderValue>, s: &crate::config::AuthSettings| {
            let s = s.clone();
            let a = &a;
            async move { a.authenticate(h.as_ref(), LOCAL, None, &directory(s)).await }
        };
        for _ in 0..2 {
            assert_eq!(
                check(Some(header("admin", "s3cret")), &with).await,
                Ok(Principal::SuperUser)
            );
        }
        assert_eq!(
            check(Some(header("admin", "nope")), &with).await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            check(Some(header("root", "s3cret")), &with).await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            check(Some(header("admin", "s3cret")), &without).await,
            Err(Refusal::BadCredentials)
        );
        assert_eq!(check(None, &with).await, Err(Refusal::Missing));
        assert_eq!(
            check(Some(http::HeaderValue::from_static("Digest x")), &with).await,
            Err(Refusal::Malformed)
        );
    }

    /// An unknown user name costs one check, as a wrong password does, so the
    /// time taken does not tell which names exist; a credential that verified
    /// before costs none.
    #[tokio::test]
    async fn unknown_users_cost_what_wrong_passwords_cost() {
        let (a, _store, _dir) = auth();
        let s = settings(Some(admin()), 100, 100);
        let runs = |h: http::HeaderValue| {
            let (a, s) = (&a, &s);
            async move {
                let before = a.hasher.runs();
                let _ = a
                    .authenticate(Some(&h), LOCAL, None, &directory(s.clone()))
                    .await;
                a.hasher.runs() - before
            }
        };
        assert_eq!(runs(header("nobody", "x")).await, 1);
        assert_eq!(runs(header("admin", "wrong")).await, 1);
        assert_eq!(runs(header("admin", "s3cret")).await, 1);
        assert_eq!(runs(header("admin", "s3cret")).await, 0, "remembered");
    }

    /// Guesses are limited per address and per user name (429 with the wait),
    /// before any hash is computed; a credential that verified before still
    /// works while its name is throttled.
    #[tokio::test]
    async fn password_checks_are_limited_per_address_and_per_user() {
        let (a, _store, _dir) = auth();
        let s = settings(Some(admin()), 5, 3);
        let try_as = |user: &str, pw: &str, from: [u8; 4]| {
            let (a, s, h) = (&a, &s, header(user, pw));
            async move {
                a.authenticate(Some(&h), IpAddr::from(from), None, &directory(s.clone()))
                    .await
            }
        };
        assert_eq!(
            try_as("admin", "s3cret", [10, 0, 0, 1]).await,
            Ok(Principal::SuperUser)
        );
        for _ in 0..2 {
            assert_eq!(
                try_as("admin", "guess", [10, 0, 0, 2]).await,
                Err(Refusal::BadCredentials)
            );
        }
        // Three checks of the name this minute (one the correct login): its
        // quota is spent, from any address.
        let before = a.hasher.runs();
        match try_as("admin", "guess", [10, 0, 0, 3]).await {
            Err(Refusal::Throttled(wait)) => assert!((1..=60).contains(&wait), "{wait}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.hasher.runs(), before, "no hash for a throttled guess");
        assert_eq!(
            try_as("admin", "s3cret", [10, 0, 0, 4]).await,
            Ok(Principal::SuperUser)
        );
        // One address: five checks of any names, then no more.
        for i in 0..3 {
            assert_eq!(
                try_as(&format!("user{i}"), "x", [10, 0, 0, 2]).await,
                Err(Refusal::BadCredentials)
            );
        }
        assert!(matches!(
            try_as("someone", "x", [10, 0, 0, 2]).await,
            Err(Refusal::Throttled(_))
        ));
        assert_eq!(
            Refusal::Throttled(5).status(),
            http::StatusCode::TOO_MANY_REQUESTS
        );
    }

    /// One job runs and one waits; the next is refused at once, and once the
    /// queue drains work is taken again.
    #[tokio::test]
    async fn the_hasher_refuses_work_past_its_bound() {
        let hasher = Hasher::new(1, 1);
        let (started, running) = std::sync::mpsc::channel::<()>();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let first = hasher
            .submit(move || {
                started.send(()).unwrap();
                gate.recv().unwrap();
                1
            })
            .unwrap();
        running.recv().unwrap();
        let second = hasher.submit(|| 2).unwrap();
        assert!(matches!(hasher.submit(|| 3), Err(Busy)));
        release.send(()).unwrap();
        assert_eq!(first.await, Ok(1));
        assert_eq!(second.await, Ok(2));
        assert_eq!(hasher.run(|| 7).await, Ok(7));
    }

    #[test]
    fn secret_rule() {
        assert!(secret_problem("short").is_some());
        assert!(secret_problem(&"a".repeat(40)).is_some());
        assert!(secret_problem("Aa1!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_none());
    }
}
