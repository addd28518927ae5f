//! A tonic channel over a unix socket: connects lazily, reconnects on the next call
//! after the runtime comes back.

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

pub(super) fn unix_channel(path: PathBuf) -> Channel {
    // The URI is not used to connect; it gives the :authority ("localhost") the
    // runtimes expect.
    Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect_with_connector_lazy(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
}
