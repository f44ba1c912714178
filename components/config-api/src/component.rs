//! The Spin HTTP component: spin-sdk's HTTP export, with the [`Platform`]
//! implemented over `wasi:keyvalue` (store + compare-and-swap) and the
//! validator and feature-gate imports.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "tenant-gateway:gateway/config-api-imports",
    generate_all,
});

use crate::{Fault, Features, Outcome, Platform, TenantRecord, Violation};
use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use tenant_gateway::feature_gate::feature_gate::{self, Tier};
use tenant_gateway::validator::validator;
use wasi::keyvalue::{atomics, store};

struct Spin {
    tenants: Option<store::Bucket>,
    configs: Option<store::Bucket>,
}

fn fault(e: store::Error) -> Fault {
    Fault(match e {
        store::Error::NoSuchStore => "no such key-value store".into(),
        store::Error::AccessDenied => "key-value store access denied".into(),
        store::Error::Other(m) => m,
    })
}

fn text(bytes: Vec<u8>) -> Result<String, Fault> {
    String::from_utf8(bytes).map_err(|_| Fault("stored value is not UTF-8".into()))
}

impl Spin {
    fn bucket(slot: &mut Option<store::Bucket>, name: &str) -> Result<(), Fault> {
        if slot.is_none() {
            *slot = Some(store::open(name).map_err(fault)?);
        }
        Ok(())
    }

    fn configs(&mut self) -> Result<&store::Bucket, Fault> {
        Self::bucket(&mut self.configs, crate::CONFIGS_BUCKET)?;
        Ok(self.configs.as_ref().expect("opened above"))
    }
}

impl Platform for Spin {
    type Cas = atomics::Cas;

    fn tenant(&mut self, id: &str) -> Result<Option<TenantRecord>, Fault> {
        Self::bucket(&mut self.tenants, crate::TENANTS_BUCKET)?;
        let bucket = self.tenants.as_ref().expect("opened above");
        // Keys are lower case (a UUID's canonical form, and names are
        // case-insensitive): look up the path segment in the same case.
        match bucket.get(&id.to_ascii_lowercase()).map_err(fault)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Fault(format!("tenant record unreadable: {e}"))),
        }
    }

    fn read_config(&mut self, tenant_id: &str) -> Result<Option<String>, Fault> {
        self.configs()?
            .get(tenant_id)
            .map_err(fault)?
            .map(text)
            .transpose()
    }

    fn begin_update(&mut self, tenant_id: &str) -> Result<(Option<String>, Self::Cas), Fault> {
        let cas = atomics::Cas::new(self.configs()?, tenant_id).map_err(fault)?;
        let current = cas.current().map_err(fault)?.map(text).transpose()?;
        Ok((current, cas))
    }

    fn commit_update(&mut self, cas: Self::Cas, config: String) -> Result<bool, Fault> {
        match atomics::swap(cas, &config.into_bytes()) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(e)) => Err(fault(e)),
        }
    }

    fn default_config(&mut self) -> String {
        validator::default_config()
    }

    fn apply_patch(
        &mut self,
        current: Option<&str>,
        patch: &str,
    ) -> Result<Outcome, Vec<Violation>> {
        validator::apply_patch(current, patch)
            .map(|o| Outcome {
                config: o.config,
                updated_fields: o.updated_fields,
            })
            .map_err(|v| {
                v.into_iter()
                    .map(|v| Violation {
                        path: v.path,
                        message: v.message,
                    })
                    .collect()
            })
    }

    fn list_features(&mut self, tenant: &TenantRecord, config: &str) -> Features {
        let ctx = feature_gate::TenantContext {
            tenant_id: tenant.id.clone(),
            name: tenant.name.clone(),
            tier: match tenant.tier.as_str() {
                "Enterprise" => Tier::Enterprise,
                "Pro" => Tier::Pro,
                _ => Tier::Basic,
            },
        };
        let list = feature_gate::list_features(&ctx, config);
        Features {
            features: list
                .features
                .into_iter()
                .map(|f| crate::Feature {
                    name: f.name,
                    enabled: f.enabled,
                    available: f.available,
                    description: f.description,
                    tier_required: match f.tier_required {
                        Tier::Basic => "Basic",
                        Tier::Pro => "Pro",
                        Tier::Enterprise => "Enterprise",
                    }
                    .into(),
                })
                .collect(),
            total_enabled: list.total_enabled,
            total_available: list.total_available,
        }
    }

    fn now(&mut self) -> String {
        crate::time::now()
    }
}

#[http_component]
fn handle(req: Request) -> impl IntoResponse {
    let mut platform = Spin {
        tenants: None,
        configs: None,
    };
    let content_type = req.header("content-type").and_then(|v| v.as_str());
    let out = crate::handle(
        &mut platform,
        crate::Request {
            method: method_name(req.method()),
            path: req.path(),
            content_type,
            body: req.body(),
        },
    );
    let mut builder = Response::builder();
    builder
        .status(out.status)
        .header("content-type", "application/json");
    for (name, value) in out.headers {
        builder.header(name, value);
    }
    builder.body(out.body).build()
}

fn method_name(m: &spin_sdk::http::Method) -> &'static str {
    use spin_sdk::http::Method;
    match m {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        _ => "OTHER",
    }
}
