//! A config API request through its component: a fresh store with the memory
//! cap and epoch deadline, the `wasi:http` handler called, the whole answer read.

use super::engine::{call_timeout, store_limits, yield_each_tick};
use super::snapshot::Snapshot;
use super::state::{ApiState, LimitedState};
use super::{COMPONENTS_HEADER, CONFIG_API_LABEL, CallError, Runtime, outbound};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Store as WasmStore;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

impl Runtime {
    pub(super) fn api_state(
        &self,
        snapshot: Arc<Snapshot>,
        principal: String,
        tenant: Option<String>,
        turn: Option<crate::store::WriteTurn>,
    ) -> ApiState {
        ApiState {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: store_limits(&self.loader.limits),
            snapshot,
            shared: self.shared.clone(),
            outbound: outbound::Outbound::deny_all(
                &self.loader.limits,
                CONFIG_API_LABEL.clone(),
                self.loader.metrics.clone(),
            ),
            principal,
            tenant,
            turn,
            failed: Arc::new(std::sync::OnceLock::new()),
            durable: Arc::default(),
        }
    }

    /// The components that serve `tenant`'s config API calls, as the
    /// `x-tg-components` header names them.
    pub fn component_versions(&self, tenant: Option<&str>) -> http::HeaderValue {
        self.snapshot.load().versions(tenant).clone()
    }

    /// Serves one HTTP request with the config API component. The body has already
    /// been read (and size-checked) by the server.
    /// `principal`: who sent it, for the change history; `tenant`: the tenant it
    /// is for (lower-case name), whose own policy components serve it; `turn`:
    /// an update's turn to write the tenant's configuration (held until the
    /// component is done). The answer names the component versions that
    /// served it (`x-tg-components`).
    pub async fn serve_config_api(
        self: &Arc<Self>,
        req: http::Request<Bytes>,
        principal: String,
        tenant: Option<String>,
        turn: Option<crate::store::WriteTurn>,
    ) -> Result<http::Response<Bytes>, CallError> {
        let snapshot = self.snapshot.load_full();
        let versions = snapshot.versions(tenant.as_deref()).clone();
        let data = self.api_state(snapshot.clone(), principal, tenant, turn);
        let failed = data.failed.clone();
        let durable = data.durable.clone();
        match self
            .serve_http(snapshot.config_api.pre.clone(), data, req)
            .await
        {
            Ok(mut resp) => {
                // Nothing is answered about a write before it is durable.
                let writes =
                    std::mem::take(&mut *durable.lock().unwrap_or_else(|e| e.into_inner()));
                for write in writes {
                    write
                        .wait()
                        .await
                        .map_err(|e| CallError::Store(e.to_string()))?;
                }
                resp.headers_mut().insert(COMPONENTS_HEADER, versions);
                Ok(resp)
            }
            Err(CallError::Guest(error)) if failed.get().is_some() => Err(CallError::Plugin {
                component: failed.get().cloned().unwrap_or_default(),
                error,
            }),
            Err(e) => Err(e),
        }
    }

    /// Runs a `wasi:http` handler for one request in a fresh store with the memory
    /// cap and epoch deadline; the whole response is read before it is returned.
    /// On a connection worker, all of it runs on the guests' runtime
    /// ([`Runtime::on_guest_threads`]): the guest, and the reading of its
    /// answer, which would otherwise wake the worker once per piece.
    pub(super) async fn serve_http<T>(
        self: &Arc<Self>,
        pre: ProxyPre<T>,
        data: T,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, CallError>
    where
        T: WasiHttpView + LimitedState + Send + 'static,
    {
        let this = self.clone();
        self.on_guest_threads(async move { this.serve_http_here(pre, data, req).await })
            .await?
    }

    /// [`Runtime::serve_http`], on this thread's runtime: for a caller already on
    /// the guests' threads (a load's self-test).
    pub(super) async fn serve_http_here<T>(
        &self,
        pre: ProxyPre<T>,
        data: T,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, CallError>
    where
        T: WasiHttpView + LimitedState + Send + 'static,
    {
        let timeout = call_timeout(&self.loader.limits) + Duration::from_millis(500);
        let _permit = tokio::time::timeout(timeout, self.permits.acquire())
            .await
            .map_err(|_| CallError::Busy)?
            .map_err(|_| CallError::Busy)?;
        let _counted = self.loader.metrics.in_flight();
        let mut store = WasmStore::new(&self.loader.engine, data);
        store.limiter(|s| s.limits());
        let deadline = std::time::Instant::now() + call_timeout(&self.loader.limits);
        yield_each_tick(&mut store, move |_| deadline);

        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = req.map(|b| {
            Full::new(b).map_err(
                |never: std::convert::Infallible| -> wasmtime_wasi_http::Error { match never {} },
            )
        });
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(CallError::Guest)?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(tx)
            .map_err(CallError::Guest)?;
        let task = tokio::spawn(crate::telemetry::request::inherit(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        }));

        let work = async {
            let resp = match rx.await {
                Ok(Ok(resp)) => resp,
                Ok(Err(code)) => {
                    return Err(CallError::Guest(wasmtime::Error::msg(format!(
                        "guest error code {code:?}"
                    ))));
                }
                Err(_) => {
                    let e = match task.await {
                        Ok(Ok(())) => wasmtime::Error::msg("component sent no response"),
                        Ok(Err(e)) => e,
                        Err(e) => wasmtime::Error::msg(format!("component task failed: {e}")),
                    };
                    return Err(CallError::Guest(e));
                }
            };
            let (parts, body) = resp.into_parts();
            // The whole body is read before answering, so a component that fails
            // half-way still yields a clean 500 instead of a truncated 200.
            let body = body
                .collect()
                .await
                .map_err(|e| {
                    CallError::Guest(wasmtime::Error::msg(format!("response body: {e:?}")))
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| CallError::Timeout)?
    }
}
