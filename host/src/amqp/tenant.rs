//! The Tenant API's one operation, `get`, answered from the tenant directory:
//! what a request asks (subject, body) and who asks it give the reply's
//! status and body, as the HTTP API (`api/hono.rs`) answers the same search.

use crate::security::auth::Principal;
use crate::tenancy::{Directory, Tenant};
use serde_json::Value;

/// A reply: `status` (an application property), the body, and whether it is
/// the tenant's document (JSON, with `cache_control`) or a short text.
#[derive(Debug, PartialEq)]
pub struct Answer {
    /// HTTP-style status code.
    pub status: u16,
    /// The document (JSON) or the reason (text).
    pub body: Vec<u8>,
    /// The body is the tenant's information document.
    pub document: bool,
}

fn text(status: u16, reason: &str) -> Answer {
    Answer {
        status,
        body: reason.as_bytes().to_vec(),
        document: false,
    }
}

/// Answers a request with `subject` and `body` (the Data section) from `who`.
pub fn answer(dir: &Directory, who: &Principal, subject: Option<&str>, body: &[u8]) -> Answer {
    if subject != Some("get") {
        return text(400, "unsupported operation: the subject must be get");
    }
    let Ok(Value::Object(query)) = serde_json::from_slice::<Value>(body) else {
        return text(400, "the body must be a JSON object");
    };
    let tenant: Option<&std::sync::Arc<Tenant>> =
        match (query.get("tenant-id"), query.get("subject-dn")) {
            (Some(Value::String(id)), None) if !id.is_empty() => dir.get(id),
            (None, Some(Value::String(dn))) if !dn.is_empty() => {
                if crate::tenancy::dn::canonical(dn).is_err() {
                    return text(400, "subject-dn is not an RFC 2253 distinguished name");
                }
                dir.by_subject_dn(dn)
            }
            _ => {
                return text(
                    400,
                    "give exactly one of tenant-id and subject-dn, as a string",
                );
            }
        };
    let Some(tenant) = tenant else {
        return text(404, "no tenant matches");
    };
    let entitled = match who {
        Principal::SuperUser => true,
        Principal::Client(claims) => claims.tenant == tenant.id,
        Principal::TenantUser { tenant: id, .. } => *id == tenant.id,
    };
    if !entitled {
        return text(403, "not authorized to read this tenant's information");
    }
    Answer {
        status: 200,
        body: tenant.hono_document().to_string().into_bytes(),
        document: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_answers_by_id_and_refuses_what_the_spec_refuses() {
        let store = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(store.path()).unwrap();
        let (dir, _) = Directory::sample(&store);
        let t1 = dir.get("Tenant1").unwrap().clone();
        let t2 = dir.get("Tenant2").unwrap().clone();
        let user = Principal::TenantUser {
            tenant: t1.id,
            user: "u".into(),
        };
        let ok = answer(&dir, &user, Some("get"), br#"{"tenant-id":"Tenant1"}"#);
        assert_eq!((ok.status, ok.document), (200, true));
        let doc: Value = serde_json::from_slice(&ok.body).unwrap();
        assert_eq!(doc["tenant-id"], "Tenant1");
        assert_eq!(doc["enabled"], true);
        let by_uuid = format!(r#"{{"tenant-id":"{}"}}"#, t1.id);
        assert_eq!(
            answer(&dir, &user, Some("get"), by_uuid.as_bytes()).status,
            200
        );
        let other = format!(r#"{{"tenant-id":"{}"}}"#, t2.name);
        assert_eq!(
            answer(&dir, &user, Some("get"), other.as_bytes()).status,
            403
        );
        assert_eq!(
            answer(&dir, &Principal::SuperUser, Some("get"), other.as_bytes()).status,
            200
        );
        assert_eq!(
            answer(&dir, &user, Some("get"), br#"{"tenant-id":"nope"}"#).status,
            404
        );
        for (subject, body) in [
            (Some("add"), &br#"{"tenant-id":"Tenant1"}"#[..]),
            (None, br#"{"tenant-id":"Tenant1"}"#),
            (Some("get"), b"[1]"),
            (Some("get"), b"not json"),
            (Some("get"), b"{}"),
            (
                Some("get"),
                br#"{"tenant-id":"Tenant1","subject-dn":"CN=x"}"#,
            ),
            (Some("get"), br#"{"tenant-id":7}"#),
            (Some("get"), br#"{"subject-dn":"not a dn"}"#),
        ] {
            let a = answer(&dir, &user, subject, body);
            assert_eq!((a.status, a.document), (400, false), "{subject:?} {body:?}");
        }
        assert_eq!(
            answer(
                &dir,
                &user,
                Some("get"),
                br#"{"subject-dn":"CN=nobody,O=x"}"#
            )
            .status,
            404
        );
    }
}
