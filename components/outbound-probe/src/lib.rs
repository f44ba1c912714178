//! Test fixture: a tenant app that sends one `GET` to the URL after `?url=`
//! (taken as written, no decoding) and reports the outcome as JSON: `200
//! {"status": …, "bytes": …}` when an answer came, `502 {"error": …, "detail":
//! …}` when the host refused or the request failed. The end-to-end tests run it
//! on the gateway and on Spin with the same allow-list and compare.

#[cfg(target_arch = "wasm32")]
mod component;

/// The target URL of a probe request's query string.
pub fn target(query: &str) -> Option<&str> {
    query.strip_prefix("url=").filter(|u| !u.is_empty())
}

/// The report of a request that got an answer.
pub fn answered(status: u16, bytes: usize) -> String {
    serde_json::json!({ "status": status, "bytes": bytes }).to_string()
}

/// The report of a request that got none: `kind` says which step failed,
/// `detail` the guest-side error as the host gave it.
pub fn failed(kind: &str, detail: &str) -> String {
    serde_json::json!({ "error": kind, "detail": detail }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports() {
        assert_eq!(target("url=http://x/"), Some("http://x/"));
        assert_eq!(target("url="), None);
        assert_eq!(target("u=1"), None);
        assert_eq!(answered(204, 0), r#"{"status":204,"bytes":0}"#);
        let f: serde_json::Value =
            serde_json::from_str(&failed("send", "HttpRequestDenied")).unwrap();
        assert_eq!(f["error"], "send");
    }
}
