//! The one place where errors become gRPC statuses. Messages name the field or the
//! backend at fault and never carry a secret.

use tonic::{Code, Status};

use crate::backend::RouteError;
use crate::cri::wire::WireError;
use crate::reference::ReferenceError;

/// Everything an intercepted or forwarded call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("invalid image reference {image:?}: {source}")]
    Reference {
        image: String,
        source: ReferenceError,
    },
    #[error("{0}")]
    Route(#[from] RouteError),
    #[error("cannot read request: {0}")]
    Wire(#[from] WireError),
    #[error("cannot decode request: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("cannot read request body: {0}")]
    Body(String),
    #[error("backend {backend} ({endpoint}) is unavailable: {reason}")]
    Unavailable {
        backend: String,
        endpoint: String,
        reason: String,
    },
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// A status to hand to the caller as it is (usually the backend's own).
    #[error("{}", .0.message())]
    Status(Status),
}

impl CallError {
    pub fn code(&self) -> Code {
        match self {
            CallError::Reference { .. } | CallError::Route(_) | CallError::Decode(_) => {
                Code::InvalidArgument
            }
            CallError::Wire(WireError::TooLarge(_)) => Code::ResourceExhausted,
            CallError::Wire(WireError::Compressed) => Code::Unimplemented,
            CallError::Wire(_) | CallError::Body(_) => Code::InvalidArgument,
            CallError::Unavailable { .. } => Code::Unavailable,
            CallError::DeadlineExceeded => Code::DeadlineExceeded,
            CallError::Status(status) => status.code(),
        }
    }

    pub fn into_status(self) -> Status {
        match self {
            CallError::Status(status) => status,
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

/// What every waiter of a pull gets when the pull task itself failed.
pub fn pull_task_failed(image: &str, why: &str) -> Status {
    Status::internal(format!(
        "pull of {image} failed inside imageshim ({why}); the next pull starts afresh"
    ))
}

/// A failed pull's status with the credential plugins that failed appended (the
/// backend's message comes first: the kubelet matches on its prefix).
pub fn with_plugin_failures(status: &Status, failures: &[String]) -> Status {
    Status::new(
        status.code(),
        format!("{}; {}", status.message(), failures.join("; ")),
    )
}

/// The status a collected backend answer carries (trailers-only or in trailers).
pub fn of_answer(headers: &http::HeaderMap, trailers: Option<&http::HeaderMap>) -> Status {
    Status::from_header_map(headers)
        .or_else(|| trailers.and_then(Status::from_header_map))
        .unwrap_or_else(|| Status::unknown("backend answered without a grpc-status"))
}

impl From<Status> for CallError {
    fn from(status: Status) -> Self {
        CallError::Status(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_errors_are_invalid_argument_naming_the_reference() {
        let err = CallError::Reference {
            image: "Foo:bar".into(),
            source: ReferenceError::NotLowercase("Foo".into()),
        };
        let status = err.into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid image reference \"Foo:bar\": repository name (Foo) must be lowercase"
        );
    }

    #[test]
    fn backend_statuses_pass_through_verbatim() {
        let original = Status::new(Code::NotFound, "RegistryUnavailable: no such host");
        let status = CallError::from(original).into_status();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "RegistryUnavailable: no such host");
    }
}
