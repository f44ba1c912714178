//! The request checks every surface makes: who sent it (the one credential
//! check), whether that identity may act for the tenant, and the management
//! APIs' super-user gate.

use super::answer::{error, retry_after, unauthorized};
use super::{Body, Gateway};
use crate::security::auth::{Principal, Refusal};
use crate::telemetry::Rejection;
use crate::tenancy::{Directory, Tenant};
use http::header::HeaderValue;
use http::{Response, StatusCode};

/// The address of the client of the request being served (loopback outside
/// a request's scope: a request made in-process).
pub(crate) fn client_addr() -> std::net::IpAddr {
    crate::telemetry::request::peer().map_or(std::net::Ipv4Addr::LOCALHOST.into(), |p| p.ip())
}

/// Who sent the request being served (its headers, from its client), for
/// `tenant`: the one credential check every surface makes.
pub(crate) async fn authenticate(
    gw: &Gateway,
    headers: &http::HeaderMap,
    dir: &Directory,
    tenant: Option<&Tenant>,
) -> Result<Principal, Refusal> {
    gw.auth
        .authenticate(
            headers.get(http::header::AUTHORIZATION),
            client_addr(),
            tenant,
            dir,
        )
        .await
}

/// Checks the credentials of a request for `tenant` (when known): `Err` is the
/// answer to send, in the config API's error format.
#[allow(clippy::result_large_err)]
pub(crate) async fn authorize(
    gw: &Gateway,
    dir: &Directory,
    headers: &http::HeaderMap,
    tenant: Option<&Tenant>,
    tenant_label: Option<&str>,
) -> Result<Principal, Response<Body>> {
    let principal = authenticate(gw, headers, dir, tenant)
        .await
        .map_err(|refusal| {
            gw.metrics.reject(refusal_reason(refusal));
            unauthorized(refusal, tenant_label)
        })?;
    if let (Principal::TenantUser { tenant: own, .. }, Some(tenant)) = (&principal, tenant)
        && *own != tenant.id
    {
        gw.metrics.reject(Rejection::Forbidden);
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "The credentials are another tenant's user's and may not be used for '{}'",
                tenant.name
            ),
            tenant_label,
        ));
    }
    if let (Principal::Client(claims), Some(tenant)) = (&principal, tenant)
        && claims.tenant != tenant.id
        && !dir.auth.tokens_cross_tenants
    {
        gw.metrics.reject(Rejection::Forbidden);
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "The token was issued for another tenant and may not be used for '{}'",
                tenant.name
            ),
            tenant_label,
        ));
    }
    Ok(principal)
}

/// What a refused credential counts as in the metrics.
pub(crate) fn refusal_reason(refusal: Refusal) -> Rejection {
    match refusal {
        Refusal::Throttled(_) => Rejection::SignInThrottled,
        Refusal::Busy => Rejection::SignInBusy,
        _ => Rejection::Unauthenticated,
    }
}

/// Why a management request (Doradus, Vespa, Hono writes) is refused.
pub(crate) struct Denied {
    /// 401, 403, 429 or 503.
    pub(crate) status: StatusCode,
    /// What to tell the caller.
    pub(crate) message: &'static str,
    /// The credential check's refusal, if that is why.
    pub(crate) refusal: Option<Refusal>,
}

impl Denied {
    /// Adds the Basic challenge a 401 carries, or the `Retry-After` of a 429
    /// or 503.
    pub(crate) fn challenge(&self, mut resp: Response<Body>) -> Response<Body> {
        match self.refusal.and_then(Refusal::retry_after) {
            Some(secs) => retry_after(&mut resp, secs),
            // These APIs take Basic credentials only.
            None if self.status == StatusCode::UNAUTHORIZED => {
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="tenant-gateway""#),
                );
            }
            None => {}
        }
        resp
    }
}

/// The management APIs' gate: the super-user's Basic credentials.
pub(crate) async fn require_super_user(
    gw: &Gateway,
    headers: &http::HeaderMap,
) -> Result<(), Denied> {
    let dir = gw.runtime.shared().directory.load_full();
    match authenticate(gw, headers, &dir, None).await {
        Ok(Principal::SuperUser) => Ok(()),
        Ok(_) => {
            gw.metrics.reject(Rejection::Forbidden);
            Err(Denied {
                status: StatusCode::FORBIDDEN,
                message: "Managing tenants needs the super-user's credentials",
                refusal: None,
            })
        }
        Err(refusal) => {
            gw.metrics.reject(refusal_reason(refusal));
            Err(Denied {
                status: refusal.status(),
                message: match refusal {
                    Refusal::BadCredentials => "The user name or password is incorrect",
                    Refusal::Throttled(_) => "Too many sign-in attempts; try again later",
                    Refusal::Busy => {
                        "The gateway is too busy checking passwords; try again shortly"
                    }
                    _ => "This API needs the super-user's Basic credentials",
                },
                refusal: Some(refusal),
            })
        }
    }
}
