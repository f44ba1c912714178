//! `GET /api/v1/tenants/{id}/config` (served by `api::config`) with HTTP validators and without the
//! component when nothing changed.
//!
//! What the config-API component answers to a GET depends on three things
//! only: the stored configuration (its version in the store), the tenant's
//! record (name, tier, enabled, creation time) and the components that serve
//! the tenant (config API, validator with its defaults, feature gate). The
//! `ETag` names all three: `"{config version}-{digest of the record and the
//! component versions}"`, the same on every instance sharing a store.
//!
//! Every GET reads the configuration's version from the store — the one read
//! that makes a write visible to the very next GET on every instance — and
//! then answers `304 Not Modified` when `If-None-Match` names the current tag,
//! the answer kept from the last GET at this tag when there is one, and the
//! component's answer (kept for the next GET) otherwise. The keep is bounded
//! by size and holds nothing secret: it is what any reader of the tenant's
//! configuration is sent.

use super::{Body, Gateway, error};
use crate::tenancy::Tenant;
use bytes::Bytes;
use headers::HeaderMapExt;
use http::header::{ETAG, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use sha2::Digest;
use std::sync::Arc;
use uuid::Uuid;

/// How many bytes of answers are kept (the weight of an entry is its body).
const KEPT_BYTES: u64 = 8 << 20;
use crate::store::CONFIGS_BUCKET as CONFIGS;

/// One kept answer and the state it was made from.
struct Kept {
    /// The configuration's version in the store (0: none stored).
    version: i64,
    /// The components that made it (`x-tg-components`).
    components: HeaderValue,
    /// The tenant record it saw.
    record: Bytes,
    etag: HeaderValue,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct BodySize;

impl quick_cache::Weighter<Uuid, Arc<Kept>> for BodySize {
    fn weight(&self, _: &Uuid, kept: &Arc<Kept>) -> u64 {
        kept.body.len() as u64 + 256
    }
}

/// The kept answers of config GETs, by tenant.
pub(crate) struct ConfigReads {
    kept: quick_cache::sync::Cache<Uuid, Arc<Kept>, BodySize>,
}

impl Default for ConfigReads {
    fn default() -> Self {
        Self {
            kept: quick_cache::sync::Cache::with_weighter(4096, KEPT_BYTES, BodySize),
        }
    }
}

/// The strong entity tag of a configuration at `version` as `components` serve
/// a tenant with `record`.
fn entity_tag(version: i64, components: &HeaderValue, record: &[u8]) -> HeaderValue {
    let mut digest = sha2::Sha256::new();
    digest.update(components.as_bytes());
    digest.update([0]);
    digest.update(record);
    let digest = digest.finalize();
    let tag = format!("\"{version}-{}\"", hex::encode(&digest[..8]));
    HeaderValue::from_str(&tag).expect("an entity tag is a header value")
}

/// Whether `If-None-Match` names `etag` (weak comparison, `*` included).
fn not_modified(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(if_none_match) = request.typed_get::<headers::IfNoneMatch>() else {
        return false;
    };
    let Ok(etag) = etag.to_str().unwrap_or_default().parse::<headers::ETag>() else {
        return false;
    };
    !if_none_match.precondition_passes(&etag)
}

fn not_modified_answer(etag: HeaderValue, components: HeaderValue) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    resp.headers_mut().insert(ETAG, etag);
    resp.headers_mut()
        .insert(crate::wasm::COMPONENTS_HEADER, components);
    resp
}

impl ConfigReads {
    /// Answers a GET of `tenant`'s configuration: `run` is the component call,
    /// made only when no kept answer fits.
    pub(crate) async fn get<F>(
        &self,
        gw: &Gateway,
        tenant: &Arc<Tenant>,
        request: &HeaderMap,
        run: F,
    ) -> Response<Body>
    where
        F: Future<Output = Response<Body>>,
    {
        let components = gw.runtime.component_versions(Some(&tenant.name.key()));
        let store = gw.runtime.shared().store.clone();
        let key = tenant.id.to_string();
        let version = match tokio::task::spawn_blocking(move || store.version(CONFIGS, &key)).await
        {
            Ok(Ok(v)) => v.unwrap_or(0),
            Ok(Err(e)) => return unreadable(e, tenant),
            Err(e) => return unreadable(e, tenant),
        };
        if let Some(kept) = self.kept.get(&tenant.id)
            && kept.version == version
            && kept.components == components
            && kept.record == tenant.record
        {
            if not_modified(request, &kept.etag) {
                return not_modified_answer(kept.etag.clone(), components);
            }
            let mut resp = Response::new(Body::from(kept.body.clone()));
            *resp.headers_mut() = kept.headers.clone();
            return resp;
        }
        let etag = entity_tag(version, &components, &tenant.record);
        if not_modified(request, &etag) {
            return not_modified_answer(etag, components);
        }
        let resp = run.await;
        if resp.status() != StatusCode::OK {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        // The component's answer is whole already (`Body::from` bytes).
        let Ok(body) = http_body_util::BodyExt::collect(body).await else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The configuration could not be read",
                Some(&tenant.id.to_string()),
            );
        };
        let body = body.to_bytes();
        parts.headers.insert(ETAG, etag.clone());
        // Made from at least `version`: a write after the version was read
        // shows here and under a later tag too, never the other way round.
        self.kept.insert(
            tenant.id,
            Arc::new(Kept {
                version,
                components,
                record: tenant.record.clone(),
                etag,
                headers: parts.headers.clone(),
                body: body.clone(),
            }),
        );
        Response::from_parts(parts, Body::from(body))
    }
}

fn unreadable(e: impl std::fmt::Display, tenant: &Tenant) -> Response<Body> {
    tracing::error!(error = %e, "reading a configuration's version failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The configuration store is unavailable; retry shortly",
        Some(&tenant.id.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_the_version_the_components_and_the_record() {
        let a = HeaderValue::from_static("config-api=aaa, validator=bbb, feature-gate=ccc");
        let b = HeaderValue::from_static("config-api=aaa, validator=bbd, feature-gate=ccc");
        let t = entity_tag(3, &a, b"{\"tier\":\"Pro\"}");
        assert!(t.to_str().unwrap().starts_with("\"3-"), "{t:?}");
        assert_eq!(t, entity_tag(3, &a, b"{\"tier\":\"Pro\"}"));
        assert_ne!(t, entity_tag(4, &a, b"{\"tier\":\"Pro\"}"));
        assert_ne!(t, entity_tag(3, &b, b"{\"tier\":\"Pro\"}"));
        assert_ne!(t, entity_tag(3, &a, b"{\"tier\":\"Basic\"}"));
    }

    #[test]
    fn if_none_match_is_compared_weakly_and_star_matches() {
        let tag = entity_tag(1, &HeaderValue::from_static("x"), b"r");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::IF_NONE_MATCH,
                HeaderValue::from_str(v).unwrap(),
            );
            h
        };
        let text = tag.to_str().unwrap().to_owned();
        assert!(not_modified(&with(&text), &tag));
        assert!(not_modified(&with(&format!("W/{text}")), &tag));
        assert!(not_modified(&with(&format!("\"other\", {text}")), &tag));
        assert!(not_modified(&with("*"), &tag));
        assert!(!not_modified(&with("\"other\""), &tag));
        assert!(!not_modified(&with("garbage"), &tag));
        assert!(!not_modified(&HeaderMap::new(), &tag));
    }
}
