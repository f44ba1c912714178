//! What a request gives, checked before anything is written: user names and
//! passwords (and the made-up user Doradus returns once), the user count, options,
//! Hono documents (validated by the validator component; their trusted-CA DNs).

use super::{ManageError, NewUser, OPTIONS};
use crate::config::{TenantName, Tier};
use crate::store::Origin;
use crate::wasm::Runtime;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use serde_json::{Map, Value};

fn random_text(len: usize, alphabet: &[u8]) -> String {
    let mut bytes = vec![0u8; len];
    OsRng.fill_bytes(&mut bytes);
    // 256 is a multiple of neither alphabet length; the bias is below 1/4 bit per
    // character with 62 symbols, irrelevant at this length.
    bytes
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}

pub(super) fn generated_user() -> NewUser {
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const ALL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    NewUser {
        name: format!("u{}", random_text(12, LOWER)),
        password: random_text(24, ALL),
    }
}

pub(super) fn check_user(user: &NewUser) -> Result<(), ManageError> {
    let name_ok = !user.name.is_empty()
        && user.name.len() <= 64
        && user
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if !name_ok {
        return Err(ManageError::Invalid(format!(
            "User name '{}' is invalid: 1-64 letters, digits, '.', '_', '-' or '@'",
            user.name
        )));
    }
    if user.password.is_empty()
        || user.password.chars().count() > 256
        || user.password.chars().any(char::is_control)
    {
        return Err(ManageError::Invalid(format!(
            "The password of user '{}' must be 1-256 printable characters",
            user.name
        )));
    }
    Ok(())
}

/// Checks an option and returns its canonical name and value.
pub(super) fn check_option(
    name: &str,
    value: &str,
    origin: Origin,
) -> Result<(String, String), ManageError> {
    let Some(canonical) = OPTIONS.iter().find(|o| o.eq_ignore_ascii_case(name)) else {
        return Err(ManageError::Invalid(format!(
            "Unknown tenant option '{name}'; supported: {}",
            OPTIONS.join(", ")
        )));
    };
    let value = value.trim();
    let value = match *canonical {
        "ReplicationFactor" => match value.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => n.to_string(),
            _ => {
                return Err(ManageError::Invalid(format!(
                    "Option ReplicationFactor must be an integer from 1 to 100, not '{value}'"
                )));
            }
        },
        _ => {
            if origin == Origin::Settings {
                return Err(ManageError::Invalid(
                    "The tier of a tenant from the settings file is set there (TenantGateway.Tenants.{name}.Tier)".into(),
                ));
            }
            Tier::parse(value)
                .ok_or_else(|| {
                    ManageError::Invalid(format!(
                        "Option Tier must be Basic, Pro or Enterprise, not '{value}'"
                    ))
                })?
                .as_str()
                .to_owned()
        }
    };
    Ok(((*canonical).to_owned(), value))
}

/// The canonical trusted-CA DNs of a Hono document; two equal ones are an error.
pub(super) fn trusted_dns(hono: &Map<String, Value>) -> Result<Vec<String>, ManageError> {
    let mut out: Vec<String> = Vec::new();
    let cas = hono.get("trusted-ca").and_then(Value::as_array);
    for (i, ca) in cas.into_iter().flatten().enumerate() {
        let Some(dn) = ca.get("subject-dn").and_then(Value::as_str) else {
            continue;
        };
        let canonical = crate::tenancy::dn::canonical(dn)
            .map_err(|e| ManageError::Invalid(format!("$.trusted-ca[{i}].subject-dn: {e}")))?;
        if out.contains(&canonical) {
            return Err(ManageError::Invalid(format!(
                "$.trusted-ca[{i}].subject-dn: the same CA is listed twice"
            )));
        }
        out.push(canonical);
    }
    Ok(out)
}

/// The Hono document as stored: without `tenant-id` and `enabled` (the tenant's
/// own name and flag).
pub(super) fn stored_hono(mut doc: Map<String, Value>) -> (Map<String, Value>, Option<bool>) {
    doc.remove("tenant-id");
    let enabled = doc.remove("enabled").and_then(|v| v.as_bool());
    (doc, enabled)
}

/// Validates a Hono document with the validator component; returns it with
/// `tenant-id` set to `name` when absent.
pub(super) async fn validated_hono(
    rt: &Runtime,
    name: &TenantName,
    mut doc: Map<String, Value>,
    enabled: bool,
) -> Result<Map<String, Value>, ManageError> {
    match doc.get("tenant-id") {
        None => {
            doc.insert("tenant-id".into(), Value::String(name.as_str().to_owned()));
        }
        Some(Value::String(id)) if id.eq_ignore_ascii_case(name.as_str()) => {}
        Some(other) => {
            return Err(ManageError::Invalid(format!(
                "tenant-id {other} does not match the tenant '{name}' of the path"
            )));
        }
    }
    doc.entry("enabled").or_insert(Value::Bool(enabled));
    let text = Value::Object(doc.clone()).to_string();
    match rt.validate_tenant_info(&text, Some(&name.key())).await {
        Ok(Ok(())) => Ok(doc),
        Ok(Err(violations)) => Err(ManageError::Violations(violations)),
        Err(e) => Err(ManageError::Failed(anyhow::anyhow!("validator: {e}"))),
    }
}

/// Users one request may add or change: each costs a password hash (tens of
/// milliseconds of CPU), so one request cannot occupy the hashing threads for
/// long (a create with 1,900 users used to hash for 55 s).
pub const MAX_USERS_PER_REQUEST: usize = 16;

fn check_user_count(n: usize) -> Result<(), ManageError> {
    if n > MAX_USERS_PER_REQUEST {
        return Err(ManageError::Invalid(format!(
            "A request may add or change at most {MAX_USERS_PER_REQUEST} users ({n} given)"
        )));
    }
    Ok(())
}

/// The users checked (names, passwords, how many), then their passwords
/// hashed on the hashing threads: (name, PHC hash).
pub(super) async fn hash_users(
    hasher: &crate::security::password::Hasher,
    users: &[NewUser],
) -> Result<Vec<(String, String)>, ManageError> {
    for u in users {
        check_user(u)?;
    }
    check_user_count(users.len())?;
    let mut hashed = Vec::with_capacity(users.len());
    for u in users {
        let password = u.password.clone();
        let phc = hasher
            .run(move || crate::security::password::hash_password(&password))
            .await
            .map_err(|_| ManageError::Busy)?;
        hashed.push((u.name.clone(), phc));
    }
    Ok(hashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_and_canonical() {
        assert_eq!(
            check_option("replicationfactor", " 3 ", Origin::Api).unwrap(),
            ("ReplicationFactor".to_owned(), "3".to_owned())
        );
        assert_eq!(check_option("tier", "pro", Origin::Api).unwrap().1, "Pro");
        assert!(check_option("Tier", "pro", Origin::Settings).is_err());
        assert!(check_option("ReplicationFactor", "0", Origin::Api).is_err());
        assert!(check_option("Colour", "red", Origin::Api).is_err());
    }

    #[test]
    fn generated_users_are_random_and_valid() {
        let a = generated_user();
        let b = generated_user();
        assert_ne!(a.password, b.password);
        assert_eq!(a.password.len(), 24);
        check_user(&a).unwrap();
        assert!(
            check_user(&NewUser {
                name: "bad name".into(),
                password: "x".into()
            })
            .is_err()
        );
    }

    #[test]
    fn duplicate_dns_in_one_document_are_refused() {
        let doc: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "trusted-ca": [
                {"subject-dn": "CN=ca,O=Acme", "public-key": "AA=="},
                {"subject-dn": "cn = CA , o=acme", "public-key": "AA=="}
            ]
        }))
        .unwrap();
        assert!(matches!(trusted_dns(&doc), Err(ManageError::Invalid(_))));
    }
}
