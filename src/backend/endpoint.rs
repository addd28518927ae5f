//! Backend endpoints: the filesystem path of a `unix://` endpoint. Pure; used by the
//! config check and by the backend connections.

use std::path::PathBuf;

/// The filesystem path of a `unix://` endpoint.
pub fn unix_socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let path = endpoint
        .strip_prefix("unix://")
        .ok_or_else(|| format!("{endpoint:?} must be a unix:///absolute/path endpoint"))?;
    if !path.starts_with('/') {
        return Err(format!("{endpoint:?} must name an absolute socket path"));
    }
    Ok(PathBuf::from(path))
}
