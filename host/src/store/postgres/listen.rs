//! Hearing of other instances' tenant changes: `LISTEN` on the schema's
//! channel on a connection of its own, on a thread of its own.

use postgres::fallible_iterator::FallibleIterator;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How often the listener checks whether the store was closed, and waits before
/// reconnecting after losing its connection.
const LISTEN_TICK: Duration = Duration::from_millis(500);

/// A `NOTIFY` channel name for a schema: lower-case letters, digits and `_`.
pub(super) fn channel_for(schema: &str) -> String {
    let clean: String = schema
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("tenant_gateway_{clean}")
}

/// Waits for notifications on `channel` and calls `wake` for each, reconnecting
/// when the connection is lost (and waking then too: a change may have been
/// missed meanwhile). Ends once `closed` is set.
pub(super) fn listen(
    config: postgres::Config,
    tls: MakeRustlsConnect,
    channel: String,
    closed: Arc<AtomicBool>,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    let mut failing = false;
    while !closed.load(Ordering::Relaxed) {
        let mut client = match config.connect(tls.clone()) {
            Ok(c) => c,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %crate::store::chain(&e), "cannot listen for tenant changes; retrying");
                    failing = true;
                }
                std::thread::sleep(LISTEN_TICK);
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN \"{channel}\"")) {
            tracing::warn!(error = %e, "cannot listen for tenant changes; retrying");
            std::thread::sleep(LISTEN_TICK);
            continue;
        }
        if failing {
            tracing::info!("listening for tenant changes again");
            failing = false;
        }
        wake();
        while !closed.load(Ordering::Relaxed) {
            let mut notifications = client.notifications();
            match notifications.timeout_iter(LISTEN_TICK).next() {
                Ok(Some(_)) => wake(),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %crate::store::chain(&e), "lost the tenant-change listener connection");
                    failing = true;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::channel_for;

    #[test]
    fn channel_names_are_plain_identifiers() {
        assert_eq!(channel_for("public"), "tenant_gateway_public");
        assert_eq!(channel_for("Tg-Test.1"), "tenant_gateway_tg_test_1");
        assert!(channel_for(&"x".repeat(200)).len() < 63);
    }
}
