//! Outbound HTTP of components (`wasi:http/outgoing-handler`). Every request is
//! checked against the component's allow-list on scheme, host and port before
//! any name is resolved or connection made; a refused one fails inside the
//! guest with `http-request-denied`, as on Spin, and is logged and counted.
//! Tenant apps get the list of their settings
//! (`TenantGateway.Apps.{name}.AllowedOutboundHosts`); the config API gets an
//! empty one, and the plugins have no `wasi:http` at all. Allowed requests get
//! the `Limits` timeouts (the guest may ask for shorter ones), a response body
//! cap and a per-call request budget.

use crate::config::Limits;
use crate::config::allowed_hosts::AllowedHosts;
use crate::tenancy::Tenant;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The outbound policy of one component call.
pub struct Outbound {
    allowed: Arc<AllowedHosts>,
    timeout: Duration,
    max_response_bytes: u64,
    /// Requests this call may still make.
    budget: u32,
    /// Who is asking, for the log: component and tenant.
    component: Arc<str>,
    tenant: Option<Arc<Tenant>>,
    /// One refusal is logged per call (a guest in a loop would flood the log).
    logged: bool,
    metrics: super::Metrics,
}

impl Outbound {
    /// The policy of `component` serving `tenant`.
    pub fn new(
        allowed: Arc<AllowedHosts>,
        limits: &Limits,
        component: Arc<str>,
        tenant: Option<Arc<Tenant>>,
        metrics: super::Metrics,
    ) -> Self {
        Self {
            allowed,
            timeout: Duration::from_millis(limits.outbound_timeout_ms),
            max_response_bytes: limits.max_outbound_response_bytes,
            budget: limits.max_outbound_requests_per_call,
            component,
            tenant,
            logged: false,
            metrics,
        }
    }

    /// A policy that refuses every request.
    pub fn deny_all(limits: &Limits, component: Arc<str>, metrics: super::Metrics) -> Self {
        Self::new(Arc::default(), limits, component, None, metrics)
    }

    fn refuse(&mut self, uri: &http::Uri, why: &str) -> Error {
        self.metrics.outbound(super::metrics::Outbound::Denied);
        if !std::mem::replace(&mut self.logged, true) {
            // Scheme, host and port only: a path or query may carry secrets.
            tracing::warn!(
                component = %self.component,
                tenant = self.tenant.as_ref().map_or("", |t| t.name.as_str()),
                scheme = uri.scheme_str().unwrap_or(""),
                host = uri.host().unwrap_or(""),
                port = uri.port_u16(),
                "outbound request refused: {why}"
            );
        }
        Error::HttpRequestDenied
    }

    /// Whether a request to `uri` may be sent (and counts it against the budget).
    fn check(&mut self, uri: &http::Uri) -> Result<(), Error> {
        let scheme = uri.scheme_str().unwrap_or("");
        let host = uri.host().unwrap_or("");
        if !self.allowed.allows(scheme, host, uri.port_u16()) {
            return Err(self.refuse(uri, "not in the component's AllowedOutboundHosts"));
        }
        if self.budget == 0 {
            return Err(self.refuse(uri, "Limits.MaxOutboundRequestsPerCall reached"));
        }
        self.budget -= 1;
        Ok(())
    }
}

/// The shorter of the guest's wish and the gateway's limit.
fn capped(asked: Option<Duration>, limit: Duration) -> Option<Duration> {
    Some(asked.map_or(limit, |a| a.min(limit)))
}

/// The body error of a capped response: the size error when the cap was hit,
/// else the body's own error.
fn body_error(e: Box<dyn std::error::Error + Send + Sync>, cap: u64) -> Error {
    if e.is::<LengthLimitError>() {
        return Error::HttpResponseBodySize(Some(cap));
    }
    match e.downcast::<Error>() {
        Ok(e) => *e,
        Err(e) => Error::InternalError(Some(e.to_string())),
    }
}

type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Sent {
        if let Err(e) = self.check(request.uri()) {
            return Box::new(async move { Err(e) });
        }
        let asked = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: capped(asked.connect_timeout, self.timeout),
            first_byte_timeout: capped(asked.first_byte_timeout, self.timeout),
            between_bytes_timeout: capped(asked.between_bytes_timeout, self.timeout),
        };
        let cap = self.max_response_bytes;
        let metrics = self.metrics.clone();
        Box::new(async move {
            let sent = async {
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
                let declared = response
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                if let Some(len) = declared.filter(|len| *len > cap) {
                    return Err(Error::HttpResponseBodySize(Some(len)));
                }
                let limit = usize::try_from(cap).unwrap_or(usize::MAX);
                let response = response.map(|body| {
                    Limited::new(body, limit)
                        .map_err(move |e| body_error(e, cap))
                        .boxed_unsync()
                });
                Ok((
                    response,
                    Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
                ))
            };
            let result = sent.await;
            metrics.outbound(match &result {
                Ok(_) => super::metrics::Outbound::Answered,
                Err(_) => super::metrics::Outbound::Failed,
            });
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_timeouts_are_capped_not_raised() {
        let limit = Duration::from_secs(10);
        assert_eq!(capped(None, limit), Some(limit));
        assert_eq!(
            capped(Some(Duration::from_secs(1)), limit),
            Some(Duration::from_secs(1))
        );
        assert_eq!(capped(Some(Duration::from_secs(60)), limit), Some(limit));
    }

    #[test]
    fn budget_and_list_refuse() {
        let limits = Limits {
            max_outbound_requests_per_call: 1,
            ..Limits::default()
        };
        let allowed = Arc::new(AllowedHosts::parse(&["http://127.0.0.1:9"]).unwrap());
        let mut o = Outbound::new(allowed, &limits, "app".into(), None, Default::default());
        let ok: http::Uri = "http://127.0.0.1:9/x".parse().unwrap();
        let other: http::Uri = "http://127.0.0.1:10/x".parse().unwrap();
        assert!(matches!(o.check(&other), Err(Error::HttpRequestDenied)));
        assert!(o.check(&ok).is_ok());
        assert!(matches!(o.check(&ok), Err(Error::HttpRequestDenied)));
        let mut none = Outbound::deny_all(&limits, "api".into(), Default::default());
        assert!(none.check(&ok).is_err());
    }
}
