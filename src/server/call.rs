//! Generic buffering of one unary call: the caller's request read whole (parts and
//! framed body, refused early when over the message limit), decoded as a view, and
//! rebuilt byte for byte to forward again. Knows no method.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use prost::Message;
use tonic::body::Body;

use super::budget::{BudgetHold, RequestBudget};
use super::forward::rebuild_request;
use super::status::CallError;
use crate::cri::wire;

/// The caller's request, read whole: parts and the framed body bytes, held against
/// the connection's request budget while the call lives.
pub struct UnaryCall {
    pub parts: http::request::Parts,
    pub framed: Bytes,
    _hold: BudgetHold,
}

impl UnaryCall {
    pub async fn read<B>(request: Request<B>) -> Result<Self, CallError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let mut hold = BudgetHold::on(parts.extensions.get::<RequestBudget>().cloned());
        let framed = read_limited(body, &mut hold).await?;
        Ok(UnaryCall {
            parts,
            framed,
            _hold: hold,
        })
    }

    pub fn decode<M: Message + Default>(&self) -> Result<M, CallError> {
        Ok(M::decode(wire::unframe(&self.framed)?)?)
    }

    /// The caller's request, byte for byte, ready to forward again.
    pub fn to_request(&self) -> Request<Body> {
        rebuild_request(&self.parts, self.framed.clone())
    }

    /// The caller's request, byte for byte, for a call forwarded once (no copy).
    pub fn into_request(self) -> Request<Body> {
        Request::from_parts(self.parts, Body::new(Full::new(self.framed)))
    }
}

/// Reads a unary request body up to the message limit; a message whose declared length
/// is over the limit is refused as soon as its 5-byte prefix arrives, so an oversized
/// request is never buffered.
async fn read_limited<B>(body: B, hold: &mut BudgetHold) -> Result<Bytes, CallError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let limit = wire::MAX_MESSAGE_BYTES + 5;
    let mut body = std::pin::pin!(body);
    let mut framed = bytes::BytesMut::new();
    while let Some(frame) = body.as_mut().frame().await {
        let frame = frame.map_err(|err| CallError::Body(err.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        hold.take(data.len())?;
        framed.extend_from_slice(&data);
        let declared = framed
            .get(1..5)
            .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize);
        if framed.len() > limit || declared.is_some_and(|len| len > wire::MAX_MESSAGE_BYTES) {
            let size = declared
                .unwrap_or(framed.len())
                .max(wire::MAX_MESSAGE_BYTES + 1);
            return Err(CallError::Wire(wire::WireError::TooLarge(size)));
        }
    }
    Ok(framed.freeze())
}

impl UnaryCall {
    /// A call imageshim makes on its own behalf (pinned images): `message` to `path`,
    /// with the headers a gRPC client sends.
    pub fn own(path: &'static str, message: &[u8]) -> Self {
        let (parts, ()) = Request::post(path)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header(
                "user-agent",
                concat!("imageshim/", env!("CARGO_PKG_VERSION")),
            )
            .body(())
            .expect("a POST to a static path is a valid request")
            .into_parts();
        UnaryCall {
            parts,
            framed: wire::frame(message),
            _hold: BudgetHold::default(),
        }
    }
}
