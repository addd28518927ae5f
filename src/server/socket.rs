//! The CRI socket's life: parent directory, stale-socket check, mode and group, removal;
//! or a listening socket inherited through systemd socket activation (`LISTEN_FDS`),
//! which is served and never unlinked. Never follows or deletes anything but a socket.

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

/// The first fd systemd passes (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: RawFd = 3;

/// The listening socket imageshim serves.
pub struct CriSocket {
    pub listener: UnixListener,
    /// False for an inherited socket: its owner (systemd) keeps it across restarts.
    pub owned: bool,
}

/// An inherited listening socket when systemd passed one, else `path` bound afresh.
pub async fn open(path: &Path, group: Option<&str>) -> Result<CriSocket, SocketError> {
    if let Some(listener) = inherited()? {
        return Ok(CriSocket {
            listener,
            owned: false,
        });
    }
    Ok(CriSocket {
        listener: bind(path, group).await?,
        owned: true,
    })
}

/// The socket systemd passed (`LISTEN_PID` is this process and `LISTEN_FDS` ≥ 1), as a
/// listener; `None` when nothing was passed to this process.
pub fn inherited() -> Result<Option<UnixListener>, SocketError> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok());
    let (true, Some(count @ 1..)) = (for_us, count) else {
        return Ok(None);
    };
    if count > 1 {
        tracing::warn!(count, "systemd passed several sockets; serving the first");
    }
    // Children (credential plugins) must not inherit these variables or the fd.
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let fd = LISTEN_FDS_START;
    check_listening_unix_socket(fd)?;
    // SAFETY: systemd hands this fd to this process to own; it was checked to be a
    // listening unix socket, and nothing else in the process uses fd 3 this way.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    let inherited_err = |source| SocketError::Inherited { source };
    listener.set_nonblocking(true).map_err(inherited_err)?;
    UnixListener::from_std(listener)
        .map(Some)
        .map_err(inherited_err)
}

/// Refuses an inherited fd that is not a listening AF_UNIX stream socket.
fn check_listening_unix_socket(fd: RawFd) -> Result<(), SocketError> {
    let option = |name| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(value)
    };
    let unix_stream = option(libc::SO_DOMAIN) == Some(libc::AF_UNIX)
        && option(libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && option(libc::SO_ACCEPTCONN) == Some(1);
    if !unix_stream {
        return Err(SocketError::Inherited {
            source: std::io::Error::other("fd 3 is not a listening unix stream socket"),
        });
    }
    // SAFETY: fcntl on an fd this process owns; sets close-on-exec only.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(())
}

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("something is already serving on {0}; refusing to start")]
    InUse(PathBuf),
    #[error("cannot prepare socket {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket_group {0:?} is not a known group name or gid")]
    UnknownGroup(String),
    #[error("{path} exists and is a {kind}, not a socket; refusing to start (remove it or choose another socket path)")]
    NotASocket { path: PathBuf, kind: &'static str },
    #[error("cannot serve the socket systemd passed (LISTEN_FDS)")]
    Inherited {
        #[source]
        source: std::io::Error,
    },
}

/// Binds `path` with mode 0660, replacing a stale socket only when nothing answers on it.
pub async fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, SocketError> {
    let io = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(found) if !found.file_type().is_socket() => {
            return Err(SocketError::NotASocket {
                path: path.to_path_buf(),
                kind: file_kind(&found.file_type()),
            })
        }
        Ok(_) => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(SocketError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io(err)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    if let Some(group) = group {
        let gid = resolve_group(group)?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io)?;
    }
    Ok(listener)
}

fn file_kind(kind: &std::fs::FileType) -> &'static str {
    match kind {
        k if k.is_file() => "regular file",
        k if k.is_dir() => "directory",
        k if k.is_symlink() => "symbolic link",
        k if k.is_fifo() => "named pipe",
        k if k.is_block_device() => "block device",
        k if k.is_char_device() => "character device",
        _ => "file of another kind",
    }
}

/// Removes the socket file if it is still there, and only if it is a socket.
pub fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(found) if found.file_type().is_socket() => {}
        _ => return,
    }
    if let Err(err) = std::fs::remove_file(path) {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove socket");
        }
    }
}

/// A numeric gid, or a group name looked up in /etc/group.
fn resolve_group(group: &str) -> Result<u32, SocketError> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| SocketError::UnknownGroup(group.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_sockets_are_replaced_live_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/shim.sock");
        let live = bind(&path, None).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        assert!(matches!(
            bind(&path, None).await,
            Err(SocketError::InUse(_))
        ));
        drop(live);
        // Another test's fork may hold the listening fd until its exec; wait until
        // nothing answers.
        for _ in 0..100 {
            if UnixStream::connect(&path).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The file is still there but nothing answers: it is stale.
        assert!(path.exists());
        let _again = bind(&path, Some("root")).await.unwrap();
        remove(&path);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn anything_but_a_socket_at_the_path_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("regular");
        std::fs::write(&file, "keep me").unwrap();
        let target = dir.path().join("target.sock");
        let _listening = std::os::unix::net::UnixListener::bind(&target).unwrap();
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let cases = [
            (&file, "is a regular file, not a socket"),
            (&dir.path().to_path_buf(), "is a directory, not a socket"),
            (&link, "is a symbolic link, not a socket"),
        ];
        for (path, expected) in cases {
            let err = bind(path, None).await.expect_err("refused");
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(expected), "{message}");
            remove(path);
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        assert!(
            link.exists() && target.exists(),
            "nothing followed or deleted"
        );
    }

    #[test]
    fn nothing_inherited_without_listen_fds_for_this_process() {
        assert!(inherited().unwrap().is_none());
    }

    #[test]
    fn groups_resolve_by_name_or_number() {
        assert_eq!(resolve_group("0").unwrap(), 0);
        assert_eq!(resolve_group("root").unwrap(), 0);
        assert!(matches!(
            resolve_group("no-such-group-x"),
            Err(SocketError::UnknownGroup(_))
        ));
    }
}
