//! Verbatim HTTP/2 forwarding of a gRPC call to a backend: same path, body bytes,
//! metadata and deadline; the response (headers, every streamed message, trailers) is
//! handed back as it arrives. Dropping the returned future or body cancels the upstream
//! call. Must not decode messages.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use tonic::body::Body;

use super::answer::Answer;
use super::status::CallError;
use crate::backend::Backend;
use crate::transport::body::SendableBody;
use crate::transport::h2c::AnswerStream;

/// Sends `request` to `backend` and returns its response, streaming. The request is
/// handed to the backend's connection now; the future holds only what waits for the
/// answer (it owns its state, so a call's future stays small).
pub fn forward(
    backend: &Arc<Backend>,
    request: Request<Body>,
) -> impl Future<Output = Result<Response<Body>, CallError>> + Send + 'static {
    forward_streamed(backend, request).map(|answer| answer.map(|response| response.map(Body::new)))
}

/// `forward`, with the answer's body as the backend's h2 stream itself.
pub fn forward_streamed<B: SendableBody>(
    backend: &Arc<Backend>,
    request: Request<B>,
) -> impl Future<Output = Result<Response<AnswerStream>, CallError>> + Send + 'static {
    let deadline = grpc_timeout(request.headers());
    let started = tokio::time::Instant::now();
    let sending = backend.send(request);
    let backend = backend.clone();
    async move {
        let result = match deadline {
            Some(limit) => tokio::time::timeout(limit, sending)
                .await
                .map_err(|_| CallError::DeadlineExceeded)?,
            None => sending.await,
        };
        let response = result.map_err(|err| {
            // A connection torn down as the deadline passes is the deadline.
            if deadline.is_some_and(|limit| started.elapsed() >= limit) {
                return CallError::DeadlineExceeded;
            }
            CallError::Unavailable {
                backend: backend.name.clone(),
                endpoint: backend.endpoint.clone(),
                source: err.into(),
            }
        })?;
        Ok(response)
    }
}

/// A new request with the caller's method, URI, version and metadata and `body`.
pub fn rebuild_request(parts: &http::request::Parts, body: Bytes) -> Request<Body> {
    let mut request = Request::new(Body::new(Full::new(body)));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request
}

/// A unary response read to its end: status line, headers, message bytes, trailers.
/// Cloneable, so one backend answer can be handed to many callers.
#[derive(Clone, Debug)]
pub struct CollectedResponse {
    pub status: http::StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl CollectedResponse {
    /// Reads a whole response; a body that breaks off becomes a status.
    pub async fn read(response: Response<Body>) -> Result<Self, CallError> {
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.map_err(CallError::Status)?;
        let trailers = collected.trailers().cloned();
        Ok(CollectedResponse {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
        })
    }

    /// The grpc-status code, from the headers (trailers-only) or the trailers.
    pub fn grpc_code(&self) -> tonic::Code {
        let code_of = |h: &HeaderMap| {
            h.get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
        };
        code_of(&self.headers)
            .or_else(|| self.trailers.as_ref().and_then(code_of))
            .map(tonic::Code::from_i32)
            .unwrap_or(tonic::Code::Unknown)
    }

    /// True when the call succeeded.
    pub fn is_ok(&self) -> bool {
        self.grpc_code() == tonic::Code::Ok
    }

    /// The answer's status (code and message).
    pub fn status(&self) -> tonic::Status {
        super::status::of_answer(&self.headers, self.trailers.as_ref())
    }

    /// The answer when it succeeded, else its status as the error.
    pub fn ok_or_status(self) -> Result<Self, CallError> {
        match self.is_ok() {
            true => Ok(self),
            false => Err(CallError::Status(self.status())),
        }
    }

    /// A response carrying these headers and trailers with `body` as its message, in
    /// the frame shape of a gRPC server (see `answer`).
    pub fn to_response_with(&self, body: Bytes) -> Response<Body> {
        Answer {
            status: self.status,
            headers: self.headers.clone(),
            message: body,
            trailers: self.trailers.clone(),
        }
        .into_response()
    }

    /// The response as it was read.
    pub fn to_response(&self) -> Response<Body> {
        self.to_response_with(self.body.clone())
    }
}

/// The deadline's header, named once (a `&str` key is parsed on every look-up).
pub static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Parses a `grpc-timeout` header ("100m", "5S", …).
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(&GRPC_TIMEOUT)?.to_str().ok()?;
    if text.len() < 2 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        let parse = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(parse("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("300u"), Some(Duration::from_micros(300)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse("x"), None);
        assert_eq!(parse("10X"), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }
}
