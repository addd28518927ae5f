//! Backend endpoints: the filesystem path of a `unix://` endpoint. Pure; used by the
//! config check and by the backend connections.

use std::path::PathBuf;

/// An endpoint imageshim cannot connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{0:?} must be a unix:///absolute/path endpoint")]
    NotUnix(String),
    #[error("{0:?} must name an absolute socket path")]
    NotAbsolute(String),
}

/// The filesystem path of a `unix://` endpoint.
pub fn unix_socket_path(endpoint: &str) -> Result<PathBuf, EndpointError> {
    let path = endpoint
        .strip_prefix("unix://")
        .ok_or_else(|| EndpointError::NotUnix(endpoint.to_string()))?;
    if !path.starts_with('/') {
        return Err(EndpointError::NotAbsolute(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}
