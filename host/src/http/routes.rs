//! The router pieces every surface is built from: [`Routes`] (a surface's
//! routes and the paths they own), [`mount`] (a surface under its prefix, with
//! its own 404 and 405), the extractors that answer in a surface's format
//! ([`Param`], [`SuperUser`]), and [`dispatch`], which serves owned paths with
//! the router and hands every other path straight to tenant traffic.

use super::{Body, Gateway, Router, Served, require_super_user};
use axum::extract::{FromRequestParts, Path};
use axum::routing::MethodRouter;
use http::request::Parts;
use http::{Response, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use tower::ServiceExt;

/// Routes, and the paths they own. Every path a route matches is owned; the
/// server hands a path nothing owns to tenant traffic without asking the
/// router (which would only fall back to it), so tenant traffic costs no
/// route lookup, no boxed fallback and no path-parameter map.
#[derive(Default)]
pub struct Routes {
    router: Router,
    owned: Vec<Owned>,
    /// Every path routed, in axum's syntax (what the OpenAPI document is
    /// checked against).
    paths: Vec<String>,
    /// Prefixes served by one handler each, without the router (see
    /// [`Routes::prefix`]).
    direct: Vec<(String, Direct)>,
}

/// A handler [`dispatch`] calls itself.
type Direct = Arc<
    dyn Fn(
            Arc<Gateway>,
            axum::extract::Request,
        ) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send>>
        + Send
        + Sync,
>;

/// Paths a route owns.
#[derive(Debug, Clone, PartialEq)]
enum Owned {
    /// Only this path.
    Exact(String),
    /// This path and every path below it (`{prefix}/…`).
    Under(String),
}

impl Owned {
    /// What the route path `route` (axum's syntax) can match: itself when it
    /// has no parameter, else everything below its part before the first one
    /// (more than it matches, never less).
    fn of(route: &str) -> Self {
        match route.find('{') {
            None => Owned::Exact(route.to_owned()),
            Some(at) => Owned::Under(route[..at].trim_end_matches('/').to_owned()),
        }
    }

    fn holds(&self, path: &str) -> bool {
        match self {
            Owned::Exact(p) => path == p,
            Owned::Under(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

/// The paths routes own, by their first segment: a request's path is
/// compared with the routes under its own first segment only. Tenant
/// traffic's paths are outside every route, and comparing each with all of
/// them (some fifty) was a tenth of a microsecond of every proxied request.
struct OwnedPaths {
    /// By first segment, sorted.
    by_segment: Vec<(String, Vec<Owned>)>,
    /// Whether a route owns every path (one whose first segment is a
    /// parameter).
    all: bool,
}

impl OwnedPaths {
    fn new(owned: Vec<Owned>) -> Self {
        let mut all = false;
        let mut by_segment: Vec<(String, Vec<Owned>)> = Vec::new();
        for o in owned {
            let path = match &o {
                Owned::Exact(p) => p.as_str(),
                Owned::Under(p) if p.is_empty() => {
                    all = true;
                    continue;
                }
                Owned::Under(p) => p.as_str(),
            };
            let segment = first_segment(path).to_owned();
            match by_segment.binary_search_by(|(s, _)| s.as_str().cmp(&segment)) {
                Ok(at) => by_segment[at].1.push(o),
                Err(at) => by_segment.insert(at, (segment, vec![o])),
            }
        }
        Self { by_segment, all }
    }

    /// Whether a route owns `path` (what [`Owned::holds`] says of any).
    fn hold(&self, path: &str) -> bool {
        if self.all {
            return true;
        }
        let segment = first_segment(path);
        self.by_segment
            .binary_search_by(|(s, _)| s.as_str().cmp(segment))
            .is_ok_and(|at| self.by_segment[at].1.iter().any(|o| o.holds(path)))
    }
}

/// A path's first segment (`api` of `/api/v1/…`; empty for `/`).
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split_once('/').map_or(rest, |(segment, _)| segment)
}

impl Routes {
    /// No routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `methods` at `path`.
    pub fn route(mut self, path: &str, methods: MethodRouter<Arc<Gateway>>) -> Self {
        self.owned.push(Owned::of(path));
        self.paths.push(path.to_owned());
        self.router = self.router.route(path, methods);
        self
    }

    /// Every path that starts with `prefix` (which ends in `/`), whatever the
    /// method, served by `handler`: for a surface that routes its paths itself
    /// (the config API's component does). [`dispatch`] calls it without a
    /// route lookup or path-parameter map; it is routed too, for a router used
    /// on its own.
    pub fn prefix<H, Fut>(mut self, prefix: &str, handler: H) -> Self
    where
        H: Fn(Arc<Gateway>, axum::extract::Request) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        debug_assert!(prefix.ends_with('/'), "a prefix ends in '/'");
        for path in [prefix.to_owned(), format!("{prefix}{{*rest}}")] {
            let handler = handler.clone();
            self = self.route(
                &path,
                axum::routing::any(
                    move |axum::extract::State(gw): axum::extract::State<Arc<Gateway>>,
                          req: axum::extract::Request| handler(gw, req),
                ),
            );
        }
        self.direct.push((
            prefix.to_owned(),
            Arc::new(move |gw, req| Box::pin(handler(gw, req))),
        ));
        self
    }

    /// Adds `other`'s routes.
    pub fn merge(mut self, other: Routes) -> Self {
        self.owned.extend(other.owned);
        self.paths.extend(other.paths);
        self.direct.extend(other.direct);
        self.router = self.router.merge(other.router);
        self
    }

    /// Every path routed, in axum's syntax (`{name}`, `{*rest}`).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(String::as_str)
    }

    /// The router alone (for a listener that serves nothing else).
    pub fn into_router(self) -> Router {
        self.router
    }
}

/// What serves the gateway's requests (what [`dispatch`] makes and
/// [`super::serve`] serves): one name for the service bounds.
pub trait GatewayService:
    tower::Service<
        http::Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GatewayService for S where
    S: tower::Service<
            http::Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The gateway's service: a path a route owns is served by the router, any
/// other by `rest` (tenant traffic), which is also the router's fallback for
/// an owned path no route matches after all.
pub fn dispatch<F, Fut>(routes: Routes, gateway: Arc<Gateway>, rest: F) -> impl GatewayService
where
    F: Fn(axum::extract::Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let fallback = rest.clone();
    let router = routes
        .router
        .fallback(move |req: axum::extract::Request| fallback(req))
        .with_state(gateway.clone());
    let owned = Arc::new(OwnedPaths::new(routes.owned));
    let direct: Arc<[(String, Direct)]> = routes.direct.into();
    tower::service_fn(move |req: http::Request<Body>| {
        let path = req.uri().path();
        if let Some((_, handler)) = direct.iter().find(|(p, _)| path.starts_with(p)) {
            Next::Direct {
                served: handler(gateway.clone(), req),
            }
        } else if owned.hold(path) {
            Next::Router {
                routed: router.clone().oneshot(req),
            }
        } else {
            Next::Rest { rest: rest(req) }
        }
    })
}

pin_project_lite::pin_project! {
    /// Which serves a request: a prefix's handler, the router or the rest.
    /// A future of its own (an `async` block awaiting one of them would hold
    /// the largest, tenant traffic's, twice: see [`super::observed`]).
    #[project = NextProj]
    enum Next<D, R, T> {
        Direct { #[pin] served: D },
        Router { #[pin] routed: R },
        Rest { #[pin] rest: T },
    }
}

impl<D, R, T> Future for Next<D, R, T>
where
    D: Future<Output = Response<Body>>,
    R: Future<Output = Result<Response<Body>, Infallible>>,
    T: Future<Output = Response<Body>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.project() {
            NextProj::Direct { served } => served.poll(cx).map(Ok),
            NextProj::Router { routed } => routed.poll(cx),
            NextProj::Rest { rest } => rest.poll(cx).map(Ok),
        }
    }
}

/// An external surface: the label of its requests in metrics and logs, and
/// how it words an error (each surface in its own format). The router's own
/// answers under a surface's paths — no such path, method not allowed, a bad
/// path parameter — are worded by it.
pub(crate) trait Surface: Send + Sync + 'static {
    /// The route label of its requests.
    const ROUTE: &'static str;

    /// An error answer in the surface's format; `parts` is the request's
    /// (a surface may pick its format from `Accept`).
    fn error(parts: &Parts, status: StatusCode, message: &str) -> Response<Body>;
}

/// The path as the client sent it (a surface's routes see theirs without
/// the surface's prefix); for error messages only.
fn original_path(parts: &Parts) -> String {
    match parts.extensions.get::<axum::extract::NestedPath>() {
        Some(prefix) => format!("{}{}", prefix.as_str(), parts.uri.path()),
        None => parts.uri.path().to_owned(),
    }
}

/// A surface's 404 for a path under it that names nothing.
async fn not_found<S: Surface>(req: axum::extract::Request) -> Response<Body> {
    let (parts, _) = req.into_parts();
    let message = format!("Nothing at '{}'", original_path(&parts));
    S::error(&parts, StatusCode::NOT_FOUND, &message)
}

/// A surface's 405 (the router adds `Allow`), labelled with its route (a
/// route outside [`mount`] has no label of its own).
async fn not_allowed<S: Surface>(req: axum::extract::Request) -> Response<Body> {
    Served::route_unless_noted(S::ROUTE);
    let (parts, _) = req.into_parts();
    let message = format!(
        "Method {} is not allowed on '{}' (see Allow)",
        parts.method,
        original_path(&parts)
    );
    S::error(&parts, StatusCode::METHOD_NOT_ALLOWED, &message)
}

/// `methods`, answering other methods with the surface's 405 and `Allow`.
pub(crate) fn methods<S: Surface>(
    methods: MethodRouter<Arc<Gateway>>,
) -> MethodRouter<Arc<Gateway>> {
    methods.fallback(not_allowed::<S>)
}

/// Mounts a surface's `routes` (paths relative to `prefix`, `/` being
/// `prefix` itself), each also with a trailing `/`. A path under `prefix` that
/// is not routed gets the surface's 404 (the surface owns every path under
/// `prefix`), and every answer is labelled with its route (unless its handler
/// noted one).
pub(crate) fn mount<S: Surface>(
    prefix: &str,
    routes: impl IntoIterator<Item = (&'static str, MethodRouter<Arc<Gateway>>)>,
) -> Routes {
    let mut under = Router::new();
    let mut outer = Router::new();
    let mut paths = Vec::new();
    for (path, methods) in routes {
        if path == "/" {
            outer = outer.route(&format!("{prefix}/"), methods.clone());
            paths.extend([prefix.to_owned(), format!("{prefix}/")]);
        } else {
            under = under.route(&format!("{path}/"), methods.clone());
            paths.extend([format!("{prefix}{path}"), format!("{prefix}{path}/")]);
        }
        under = under.route(path, methods);
    }
    let router = outer.nest(prefix, under.fallback(not_found::<S>)).layer(
        tower::util::MapResponseLayer::new(|resp: axum::response::Response| {
            Served::route_unless_noted(S::ROUTE);
            resp
        }),
    );
    Routes {
        router,
        owned: vec![Owned::Under(prefix.to_owned())],
        paths,
        direct: Vec::new(),
    }
}

/// A path parameter, percent-decoded; one that does not decode to UTF-8 is
/// the surface's 400.
pub(crate) struct Param<S>(pub(crate) String, pub(crate) PhantomData<S>);

impl<S: Surface, State: Send + Sync> FromRequestParts<State> for Param<S> {
    type Rejection = Response<Body>;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Param(value, PhantomData)),
            Err(_) => Err(S::error(
                parts,
                StatusCode::BAD_REQUEST,
                "The path does not decode to UTF-8 text",
            )),
        }
    }
}

/// The super-user's credentials on the request, checked before the handler
/// runs; a refusal is the surface's error (with the Basic challenge of a 401,
/// the `Retry-After` of a 429 or 503).
pub(crate) struct SuperUser<S>(PhantomData<S>);

impl<S: Surface> FromRequestParts<Arc<Gateway>> for SuperUser<S> {
    type Rejection = Response<Body>;

    async fn from_request_parts(
        parts: &mut Parts,
        gw: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        match require_super_user(gw, &parts.headers).await {
            Ok(()) => Ok(SuperUser(PhantomData)),
            Err(denied) => Err(denied.challenge(S::error(parts, denied.status, denied.message))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Owned;

    #[test]
    fn a_route_owns_what_it_can_match_and_nothing_beside_it() {
        let exact = Owned::of("/healthz");
        assert_eq!(exact, Owned::Exact("/healthz".into()));
        assert!(exact.holds("/healthz"));
        for other in ["/healthz/", "/healthzz", "/Healthz", "//healthz", "/"] {
            assert!(!exact.holds(other), "{other}");
        }
        let under = Owned::of("/api/v1/tenants/{*rest}");
        assert_eq!(under, Owned::Under("/api/v1/tenants".into()));
        for owned in [
            "/api/v1/tenants",
            "/api/v1/tenants/",
            "/api/v1/tenants/a/config",
        ] {
            assert!(under.holds(owned), "{owned}");
        }
        for other in ["/api/v1/tenantsX", "/api/v1/tenant", "/api/v2/tenants/a"] {
            assert!(!under.holds(other), "{other}");
        }
        // A parameter first: every path (more than the route matches, never less).
        assert!(Owned::of("/{name}").holds("/anything/at/all"));
        assert!(Owned::of("/a/{id}/b").holds("/a/1/b"));
    }

    /// Looking among the routes of a path's first segment only says what
    /// comparing it with every route says.
    #[test]
    fn owned_paths_by_first_segment_hold_what_the_routes_hold() {
        let routes = [
            "/",
            "/healthz",
            "/api/v1/tenants/{*rest}",
            "/api/v1/tenants",
            "/api",
            "/_tenants/{tenant}",
            "/application/v2/tenant/{name}",
            "/connect/token",
            "/a/{id}/b",
        ];
        let owned: Vec<Owned> = routes.iter().map(|r| Owned::of(r)).collect();
        let index = super::OwnedPaths::new(owned.clone());
        let paths = [
            "",
            "/",
            "//",
            "/healthz",
            "/healthz/",
            "/healthzz",
            "/api",
            "/api/",
            "/api/v1",
            "/api/v1/tenants",
            "/api/v1/tenants/x/config",
            "/api/v2",
            "/apix",
            "/_tenants",
            "/_tenants/a",
            "/application/v2/tenant/t",
            "/application",
            "/connect/token",
            "/connect/tokens",
            "/items/1",
            "/a/1/b",
            "/a",
            "*",
            "api/v1/tenants",
        ];
        let mut held = 0;
        for path in paths {
            let any = owned.iter().any(|o| o.holds(path));
            assert_eq!(index.hold(path), any, "{path}");
            held += usize::from(any);
        }
        assert!(held > 5 && held < paths.len() - 5, "{held}");
        // A route whose first segment is a parameter owns everything.
        let all = super::OwnedPaths::new(vec![Owned::of("/{name}"), Owned::of("/healthz")]);
        assert!(all.hold("/items/1") && all.hold("/"));
    }
}
