//! A minimal forwarding proxy: every request goes to one upstream, bodies streamed both ways.
//! Usage: minproxy LISTEN_ADDR UPSTREAM_ADDR (e.g. 127.0.0.1:4100 127.0.0.1:9000)

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;

type Body = http_body_util::combinators::BoxBody<hyper::body::Bytes, hyper::Error>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (listen, upstream) = match (args.get(1), args.get(2)) {
        (Some(l), Some(u)) => (l.clone(), u.clone()),
        _ => {
            return Err(std::io::Error::other(
                "usage: minproxy LISTEN_ADDR UPSTREAM_ADDR",
            ));
        }
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("minproxy listening on http://{listen} -> http://{upstream}");
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let pq = req
                        .uri()
                        .path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/")
                        .to_string();
                    if let Ok(uri) = format!("http://{upstream}{pq}").parse() {
                        *req.uri_mut() = uri;
                    }
                    let resp: Response<Body> = match client.request(req).await {
                        Ok(r) => r.map(|b| b.boxed()),
                        Err(_) => {
                            let empty = http_body_util::Empty::new()
                                .map_err(|never: Infallible| match never {});
                            let mut r = Response::new(empty.boxed());
                            *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                            r
                        }
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
