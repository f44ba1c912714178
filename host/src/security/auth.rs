//! Who is calling: the super-user (HTTP Basic, checked against an Argon2 hash from
//! the settings), or a client holding a Bearer token from `POST /connect/token`
//! (OAuth2 client credentials, as Ed-Fi Admin API issues them).
//!
//! Tokens are self-contained and signed (HMAC-SHA256 with a key kept in the
//! store): checking one costs a hash, not a database read, and every gateway
//! sharing the store accepts it. A token names the tenant its client was
//! registered for; whether it may be used on another tenant is a setting
//! (`TenantGateway.Auth.TokensCrossTenants`, off by default).

use super::password::{DUMMY_HASH, Hasher, verify_password};
use super::token::Claims;
use crate::config::SuperUser;
use crate::store::{Store, StoreError};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Where the token signing key is kept: a gateway-private bucket of the store.
const GATEWAY: &str = "_gateway";
const TOKEN_KEY: &str = "token-signing-key";

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

/// Credential checks and token issue. Built once; the settings it reads (the
/// super-user, token lifetime) come with each call, so a settings reload applies
/// at once.
pub struct Authenticator {
    pub(super) key: [u8; 32],
    /// SHA-256 of `name:password` pairs that verified (salted with the signing
    /// key), so an Argon2 check is paid once per credential, not per request.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// The credentials being checked now, by fingerprint: a request with the
    /// same credential waits for that check instead of starting its own (16
    /// connections opened at once with one valid credential would otherwise
    /// spend the address's check quota and be answered 429). An entry lives
    /// while someone holds it.
    checking: Mutex<std::collections::HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
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
            checking: Mutex::new(std::collections::HashMap::new()),
            hasher: Hasher::for_this_machine(),
            attempts: crate::security::rate::RateLimiter::default(),
        })
    }

    /// Admits one password check for `user` from `from`, or refuses it (429)
    /// when either has had its share this minute.
    pub(super) fn admit(&self, from: IpAddr, user: &str, quota: CheckQuota) -> Result<(), Refusal> {
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
    pub(super) async fn check(
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

    /// The queue of checks of the credential with `fingerprint`.
    fn flight(&self, fingerprint: [u8; 32]) -> Arc<tokio::sync::Mutex<()>> {
        let mut checking = self.checking.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by the requests in flight: entries nobody holds go.
        checking.retain(|_, f| Arc::strong_count(f) > 1);
        checking.entry(fingerprint).or_default().clone()
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
        everyone: impl Iterator<Item = &Arc<crate::tenancy::Tenant>>,
        quota: CheckQuota,
    ) -> Result<Principal, Refusal> {
        fn user_of<'t>(
            t: &'t crate::tenancy::Tenant,
            name: &str,
        ) -> Option<(&'t [u8], &'t str, Principal)> {
            tenant_user(t, name).map(|(phc, who)| (&t.id.as_bytes()[..], phc, who))
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
        // One check at a time per credential; a check that verified while
        // this one waited answers it.
        let flight = self.flight(candidates[0].2);
        let _turn = flight.lock().await;
        if let Some((_, who, _)) = candidates.iter().find(|(_, _, f)| self.remembered(f)) {
            return Ok(who.clone());
        }
        for (phc, who, fingerprint) in candidates {
            if self.check(from, name, password, Some(phc), quota).await? {
                self.remember(fingerprint);
                return Ok(who);
            }
        }
        Err(Refusal::BadCredentials)
    }

    /// Who signs in with `name` and `password` where there is no HTTP request
    /// (AMQP's SASL PLAIN), from `from`: the super-user by its name, a user of
    /// a tenant as `user@tenant` (the tenant by name or id), or a plain user
    /// name matched as Basic credentials with no tenant asked about are. The
    /// same check limits and hashing pool as every password check.
    pub async fn sign_in(
        &self,
        from: IpAddr,
        name: &str,
        password: &str,
        dir: &crate::tenancy::Directory,
    ) -> Result<Principal, Refusal> {
        let (user, tenant) = sign_in_name(name, dir);
        let auth = &dir.auth;
        self.verify_basic(
            from,
            user,
            password,
            auth.super_user.as_ref(),
            tenant,
            dir.iter(),
            CheckQuota::from(auth),
        )
        .await
    }

    /// Who `name` is when something other than a password proved it (AMQP's
    /// SASL EXTERNAL: a client certificate the configured CA issued): the
    /// super-user by its name, or a tenant user as `user@tenant`; `None` for
    /// anyone else. Nothing is hashed, so nothing is throttled.
    pub fn identify(name: &str, dir: &crate::tenancy::Directory) -> Option<Principal> {
        match sign_in_name(name, dir) {
            (user, Some(t)) => tenant_user(t, user).map(|(_, who)| who),
            (user, None) => dir
                .auth
                .super_user
                .as_ref()
                .is_some_and(|su| su.name == user)
                .then_some(Principal::SuperUser),
        }
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
                    dir.iter(),
                    CheckQuota::from(auth),
                )
                .await;
        }
        Err(Refusal::Malformed)
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

/// Decodes `base64(name:password)`.
pub fn basic(encoded: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// The user `name` of tenant `t`: its password hash, and who it is.
fn tenant_user<'t>(t: &'t crate::tenancy::Tenant, name: &str) -> Option<(&'t str, Principal)> {
    t.doc().users.get(name).map(|phc| {
        let who = Principal::TenantUser {
            tenant: t.id,
            user: name.to_owned(),
        };
        (phc.as_str(), who)
    })
}

/// A sign-in name read as AMQP names it: `user@tenant` (the tenant by name
/// or id) when that tenant exists, else the whole name with no tenant.
fn sign_in_name<'d>(
    name: &'d str,
    dir: &'d crate::tenancy::Directory,
) -> (&'d str, Option<&'d crate::tenancy::Tenant>) {
    match name.rsplit_once('@') {
        Some((user, t)) if !user.is_empty() => match dir.get(t) {
            Some(tenant) => (user, Some(tenant.as_ref())),
            None => (name, None),
        },
        _ => (name, None),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::security::password::hash_password;
    use crate::store::SqliteStore;

    pub(in crate::security) fn auth() -> (Authenticator, SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        (Authenticator::open(&store).unwrap(), store, dir)
    }

    pub(in crate::security) const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    pub(in crate::security) const QUOTA: CheckQuota = CheckQuota {
        per_address: 100,
        per_user: 100,
    };

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

    /// Sixteen requests at once with one valid credential are all let in on
    /// one check, however small the address's check quota.
    #[tokio::test]
    async fn concurrent_requests_with_one_credential_share_its_check() {
        let (a, _store, _dir) = auth();
        let dir = directory(settings(Some(admin()), 2, 2));
        let h = header("admin", "s3cret");
        let all = futures_util::future::join_all(
            (0..16).map(|_| a.authenticate(Some(&h), LOCAL, None, &dir)),
        )
        .await;
        assert!(
            all.iter().all(|r| r == &Ok(Principal::SuperUser)),
            "{all:?}"
        );
        assert!(a.checking.lock().unwrap().len() <= 1);
        // A wrong password still counts against the quota.
        let wrong = header("admin", "nope");
        let mut refusals = Vec::new();
        for _ in 0..3 {
            refusals.push(a.authenticate(Some(&wrong), LOCAL, None, &dir).await);
        }
        assert!(
            matches!(refusals[2], Err(Refusal::Throttled(_))),
            "{refusals:?}"
        );
    }

    /// Signing in without HTTP (AMQP SASL): the super-user by name; a user
    /// named for a tenant that has no such user is refused, as is a wrong
    /// password.
    #[tokio::test]
    async fn sign_in_by_name_and_password() {
        let (a, _store, _dir) = auth();
        let dir = directory(settings(Some(admin()), 100, 100));
        assert_eq!(
            a.sign_in(LOCAL, "admin", "s3cret", &dir).await,
            Ok(Principal::SuperUser)
        );
        for (name, password) in [
            ("admin", "nope"),
            ("nobody@Tenant1", "s3cret"),
            ("@Tenant1", "s3cret"),
        ] {
            assert_eq!(
                a.sign_in(LOCAL, name, password, &dir).await,
                Err(Refusal::BadCredentials),
                "{name}"
            );
        }
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
}
