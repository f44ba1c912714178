//! Every component's first calls, made before it is published (a component
//! that cannot answer them never serves), and the warm-up at start.

use super::components::LoadError;
use super::snapshot::Prepared;
use super::{Instance, Runtime, plugins};
use bytes::Bytes;

impl Runtime {
    /// Calls a prepared component the way requests will, under the same limits:
    /// a component that cannot answer its first call is never published.
    pub(super) async fn self_test(&self, prepared: &Prepared) -> Result<(), LoadError> {
        let failed = |what: &str, e: wasmtime::Error| LoadError::SelfTest(format!("{what}: {e:#}"));
        match prepared {
            Prepared::Validator(v) => {
                let defaults = plugins::default_config(v)
                    .await
                    .map_err(|e| failed("default-config", e))?;
                if !defaults.trim_start().starts_with('{')
                    || serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&defaults)
                        .is_err()
                {
                    return Err(LoadError::SelfTest(
                        "default-config did not return a JSON object".into(),
                    ));
                }
                let own = plugins::validate_config(v, "", &defaults)
                    .await
                    .map_err(|e| failed("validate-config", e))?;
                if let Err(violations) = own {
                    return Err(LoadError::SelfTest(format!(
                        "its default configuration breaks its own rules: {}",
                        violations[0].message
                    )));
                }
                plugins::validate_tenant_info(v, "", r#"{"tenant-id":"self-test","enabled":true}"#)
                    .await
                    .map_err(|e| failed("validate-tenant-info", e))?
                    .map_err(|v| {
                        LoadError::SelfTest(format!(
                            "validate-tenant-info refused a minimal document: {}",
                            v[0].message
                        ))
                    })
            }
            Prepared::Gate(g) => {
                let validator = self.snapshot.load().validator.clone();
                let defaults = plugins::default_config(&validator)
                    .await
                    .map_err(|e| failed("the validator's default-config", e))?;
                let n = plugins::count_features(
                    g,
                    crate::config::Tier::Basic,
                    &defaults,
                    Instance::Warm,
                )
                .await
                .map_err(|e| failed("list-features", e))?;
                if n.listed == 0 {
                    return Err(LoadError::SelfTest(
                        "list-features listed no feature".into(),
                    ));
                }
                Ok(())
            }
            Prepared::Api(a) => {
                let data = self.api_state(self.snapshot.load_full(), String::new(), None, None);
                let req = http::Request::get("/_self-test")
                    .body(Bytes::new())
                    .expect("a valid request");
                match self.serve_http_here(a.pre.clone(), data, req).await {
                    Ok(resp) if resp.status().is_server_error() => Err(LoadError::SelfTest(
                        format!("it answered a request with {}", resp.status()),
                    )),
                    Ok(_) => Ok(()),
                    Err(e) => Err(LoadError::SelfTest(e.to_string())),
                }
            }
        }
    }

    /// Runs the self-test of each component of everyone's, so the first request
    /// does not pay for instantiation and schema compilation, and starts making
    /// the validator's and the feature gate's primed instances in the
    /// background. Waiting for those (each compiles the validator's schemas
    /// again) was a third of a warm start on one core, and nothing needs them
    /// to be ready: a request that comes before them starts an instance of its
    /// own, as it would after a burst had used them up.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        let snapshot = self.snapshot.load_full();
        let defaults = plugins::default_config(&snapshot.validator).await?;
        anyhow::ensure!(
            defaults.starts_with('{'),
            "validator returned no default configuration"
        );
        let n = plugins::count_features(
            &snapshot.gate,
            crate::config::Tier::Basic,
            &defaults,
            Instance::Warm,
        )
        .await?;
        anyhow::ensure!(
            n.enabled > 0,
            "feature gate enables nothing for the default configuration"
        );
        snapshot.validator.pool.prime_later();
        snapshot.gate.pool.prime_later();
        Ok(())
    }
}
