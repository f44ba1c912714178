//! Test fixture: a tenant app that probes what its host lets it do.
//!
//! `…?url=<URL>` sends one `GET` to the URL (taken as written, no decoding) and
//! reports the outcome as JSON: `200 {"status": …, "bytes": …}` when an answer
//! came, `502 {"error": …, "detail": …}` when the host refused or the request
//! failed. The end-to-end tests run it on the gateway and on Spin with the same
//! allow-list and compare.
//!
//! `…/memory` reports how many bytes of a 3 MiB zero-initialised static it
//! found not zero, then writes all of them: `200 {"leftover": n}`. Each request
//! gets a fresh instance, so `n` is 0 unless the host let one instance see
//! memory another wrote.

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

/// Size of the memory probe's buffer: past the 2 MiB of linear memory the
/// gateway keeps resident per instance slot, so both ways a freed slot is
/// reset (rewritten, and given back to the kernel) are probed.
pub const SCRATCH_BYTES: usize = 3 << 20;

/// The bytes of `buf` that are not zero; then every byte is written.
pub fn leftover_then_fill(buf: &mut [u8]) -> usize {
    let leftover = buf.iter().filter(|b| **b != 0).count();
    buf.fill(0xa5);
    leftover
}

/// The memory probe's report.
pub fn memory_report(leftover: usize) -> String {
    serde_json::json!({ "leftover": leftover }).to_string()
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

    #[test]
    fn the_memory_probe_counts_then_fills() {
        let mut buf = vec![0u8; 64];
        buf[3] = 1;
        assert_eq!(leftover_then_fill(&mut buf), 1);
        assert_eq!(leftover_then_fill(&mut buf), 64);
        assert_eq!(memory_report(0), r#"{"leftover":0}"#);
    }
}
