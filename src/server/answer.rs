//! The one place that builds the answers imageshim emits itself (its own errors, and
//! backend answers it read whole and hands on: merged pulls, credential retries,
//! handler-marked and merged image lists) in the frame shapes a gRPC server uses:
//!
//! - an error without a message is *trailers-only*: one HEADERS frame with END_STREAM
//!   that carries `grpc-status` (grpc-go and gRPC C-core read a HEADERS frame without
//!   END_STREAM as initial metadata, whatever it carries);
//! - an answer with a message is HEADERS, DATA, then the trailers in a HEADERS frame with
//!   END_STREAM.
//!
//! Bodies never advertise an exact size, so no `content-length` is added that the runtime
//! would not have sent. Must not decide what an answer says, only its shape.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::Status;

/// An answer as a gRPC server sends it: status line, response headers, the message
/// (already framed; empty for none) and trailers.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub message: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Answer {
    /// The HTTP response in the frame shape this answer calls for.
    pub fn into_response(self) -> Response<Body> {
        let mut headers = self.headers;
        headers.remove(http::header::CONTENT_LENGTH);
        let body = if self.message.is_empty() && self.trailers.is_none() {
            // Trailers-only: the empty body is at its end, so the server sends the headers
            // as one HEADERS frame with END_STREAM.
            Body::empty()
        } else {
            Body::new(MessageThenTrailers {
                message: Some(self.message).filter(|m| !m.is_empty()),
                trailers: self.trailers,
            })
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        response
    }
}

/// A status imageshim answers itself, as a trailers-only response.
pub fn status_response(status: &Status) -> Response<Body> {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    if status.add_header(&mut headers).is_err() {
        // Only a metadata value that cannot be a header fails; say so without it.
        let plain = Status::new(status.code(), status.message());
        let _ = plain.add_header(&mut headers);
    }
    Answer {
        status: StatusCode::OK,
        headers,
        message: Bytes::new(),
        trailers: None,
    }
    .into_response()
}

/// One DATA frame (when there is a message) then trailers; no exact size.
struct MessageThenTrailers {
    message: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl HttpBody for MessageThenTrailers {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(message) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn trailers(code: &str) -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", code.parse().unwrap());
        t
    }

    #[tokio::test]
    async fn an_error_without_a_message_is_trailers_only() {
        let mut headers = trailers("5");
        headers.insert("content-length", "0".parse().unwrap());
        let answer = Answer {
            status: StatusCode::OK,
            headers,
            message: Bytes::new(),
            trailers: None,
        };
        let response = answer.into_response();
        assert!(response.body().is_end_stream());
        assert_eq!(response.headers().get("grpc-status").unwrap(), "5");
        assert!(response.headers().get("content-length").is_none());
    }

    #[tokio::test]
    async fn a_message_answer_has_data_then_trailers_and_no_exact_size() {
        let answer = Answer {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            message: Bytes::from_static(b"\0\0\0\0\x01x"),
            trailers: Some(trailers("0")),
        };
        let body = answer.into_response().into_body();
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), None);
        let collected = body.collect().await.unwrap();
        assert_eq!(
            collected.trailers().unwrap().get("grpc-status").unwrap(),
            "0"
        );
        assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x01x");
    }

    #[test]
    fn own_statuses_are_trailers_only_with_code_and_message() {
        let response = status_response(&Status::invalid_argument("bad ref"));
        assert!(response.body().is_end_stream());
        assert_eq!(response.headers().get("grpc-status").unwrap(), "3");
        assert_eq!(response.headers().get("grpc-message").unwrap(), "bad%20ref");
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            "application/grpc"
        );
    }
}
