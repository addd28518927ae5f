//! The admin endpoint: plain HTTP/1.1 on a TCP address (loopback by default), never on
//! the CRI socket. `/metrics` (Prometheus text), `/healthz` (the process serves),
//! `/readyz` (every backend answered `Version` lately; 503 naming those that did not),
//! `/debug/pulls` (JSON: queued and running pulls, the cap, backends). Also the small
//! client `imageshim status` uses to read it.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};

use crate::backend::health::Health;
use crate::status::view::Viewer;

/// What the admin endpoint reads.
pub struct AdminState {
    pub registry: Registry,
    pub health: Arc<Health>,
    pub viewer: Viewer,
}

/// Why the admin endpoint could not start or be read.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on admin address {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the admin endpoint at {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin endpoint at {addr}: http")]
    Http {
        addr: String,
        #[source]
        source: hyper::Error,
    },
}

/// Binds the admin address; serving starts with [`serve`].
pub async fn bind(addr: &str) -> Result<TcpListener, AdminError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    if let Ok(local) = listener.local_addr() {
        if !local.ip().is_loopback() {
            tracing::warn!(%local, "admin endpoint is not on loopback: it has no authentication and shows image names");
        }
    }
    Ok(listener)
}

/// Serves admin requests forever, one task per connection.
pub async fn serve(listener: Arc<TcpListener>, state: Arc<AdminState>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, request.uri().path())) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(error = %err, "admin connection ended with an error");
            }
        });
    }
}

fn route(state: &AdminState, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => metrics(state),
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => readyz(state),
        "/debug/pulls" => {
            let body = serde_json::to_string_pretty(&state.viewer.view())
                .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
            reply(StatusCode::OK, "application/json", body)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz, /debug/pulls\n".into(),
        ),
    }
}

fn metrics(state: &AdminState) -> Response<Full<Bytes>> {
    state.health.readiness();
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        ),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode metrics\n".into(),
        ),
    }
}

fn readyz(state: &AdminState) -> Response<Full<Bytes>> {
    let readiness = state.health.readiness();
    let not_ready: Vec<String> = readiness
        .iter()
        .filter(|r| !r.ready)
        .map(|r| {
            let why = r.last_error.as_deref().unwrap_or("no answer yet");
            match r.last_answer_age {
                Some(age) => format!(
                    "backend {}: {why} (last answered {:.0}s ago)",
                    r.backend,
                    age.as_secs_f64()
                ),
                None => format!("backend {}: {why} (never answered)", r.backend),
            }
        })
        .collect();
    match not_ready.is_empty() {
        true => text(StatusCode::OK, "ready\n".into()),
        false => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", not_ready.join("; ")),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body)
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// `GET path` from the admin endpoint at `addr`: the status code and body.
pub async fn get(addr: &str, path: &str) -> Result<(StatusCode, Bytes), AdminError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| AdminError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let http = |source| AdminError::Http {
        addr: addr.to_string(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(http::header::HOST, addr)
        .body(Full::new(Bytes::new()))
        .expect("a GET with a path and host is a valid request");
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    Ok((status, body))
}
