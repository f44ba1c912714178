//! The smallest useful reverse proxy on the gateway's HTTP stack: hyper's
//! HTTP/1 server, hyper-util's pooled client, each request forwarded as it is
//! to one upstream; no tenant logic, no log. `scripts/bench-peers` runs it
//! beside nginx and HAProxy as the floor of what the stack costs.
//!
//! `cargo run --release -p tenant-gateway --example minimal_proxy -- LISTEN UPSTREAM`
//! (both `host:port`).

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: minimal_proxy LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN is host:port");
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM is host:port");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .expect("binding LISTEN");
        serve(listener, upstream).await
    });
}

/// Proxies every connection `listener` accepts to `upstream`, for good. (The
/// gateway's bench runs it too, in its own process, as its baseline.)
pub async fn serve(listener: tokio::net::TcpListener, upstream: SocketAddr) {
    let client: Client<_, hyper::body::Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let client = client.clone();
                    async move {
                        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                        *req.uri_mut() = format!("http://{upstream}{path}")
                            .parse()
                            .expect("an upstream URI");
                        client.request(req).await
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
