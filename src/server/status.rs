//! The one place where errors become gRPC statuses. Messages name the field or the
//! backend at fault and never carry a secret.

use tonic::{Code, Status};

use crate::backend::RouteError;
use crate::credentials::ProviderFailure;
use crate::cri::wire::WireError;
use crate::reference::ReferenceError;

/// Any error, as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything an intercepted or forwarded call can fail with. Causes are `#[source]`s;
/// a status message is the whole chain (`chain`).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("invalid image reference {image:?}")]
    Reference {
        image: String,
        #[source]
        source: ReferenceError,
    },
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("cannot read request")]
    Wire(#[from] WireError),
    #[error("cannot decode request")]
    Decode(#[from] prost::DecodeError),
    #[error("cannot read request body")]
    Body(#[source] BoxError),
    #[error("backend {backend} ({endpoint}) is unavailable")]
    Unavailable {
        backend: String,
        endpoint: String,
        #[source]
        source: BoxError,
    },
    #[error("deadline exceeded")]
    DeadlineExceeded,
    #[error(transparent)]
    OverBudget(#[from] super::budget::OverBudget),
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
            CallError::OverBudget(_) => Code::ResourceExhausted,
            CallError::DeadlineExceeded => Code::DeadlineExceeded,
            CallError::Status(status) => status.code(),
        }
    }

    pub fn into_status(self) -> Status {
        match self {
            CallError::Status(status) => status,
            other => Status::new(other.code(), chain(&other)),
        }
    }
}

/// An error and its causes, joined with ": " (as anyhow's `{:#}` prints them).
pub fn chain(err: &dyn std::error::Error) -> String {
    crate::error_chain(err)
}

/// What every waiter of a pull gets when the pull task itself failed.
pub fn pull_task_failed(image: &str, why: &str) -> Status {
    Status::internal(format!(
        "pull of {image} failed inside imageshim ({why}); the next pull starts afresh"
    ))
}

/// A pull aborted because its bytes stopped moving (`pull.progress_timeout`).
pub fn pull_stalled(image: &str, timeout: std::time::Duration, bytes_done: u64) -> Status {
    Status::aborted(format!(
        "pull of {image} stalled: no progress for {} (pull.progress_timeout) after {bytes_done} bytes; cancelled by imageshim, the next pull starts afresh",
        humantime::format_duration(timeout)
    ))
}

/// A failed pull's status with the credential plugins that failed appended (the
/// backend's message comes first: the kubelet matches on its prefix).
pub fn with_plugin_failures(status: &Status, failures: &[ProviderFailure]) -> Status {
    let failures: Vec<String> = failures.iter().map(|f| chain(f)).collect();
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
