//! A CRI client for tests: any path, any prost message, over a unix socket, sending
//! `:authority` localhost as the kubelet does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status, Streaming};
use tonic_prost::ProstCodec;
use tower::service_fn;

#[derive(Clone)]
pub struct CriClient {
    channel: Channel,
}

impl CriClient {
    pub fn new(socket: &Path) -> Self {
        let socket: PathBuf = socket.to_path_buf();
        let channel = Endpoint::from_static("http://localhost").connect_with_connector_lazy(
            service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move { UnixStream::connect(socket).await.map(TokioIo::new) }
            }),
        );
        CriClient { channel }
    }

    /// A unary call returning the whole tonic response (metadata included).
    pub async fn call_full<Q, R>(
        &self,
        path: &str,
        request: Request<Q>,
    ) -> Result<tonic::Response<R>, Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let path = PathAndQuery::try_from(path.to_string()).unwrap();
        grpc.unary(request, path, ProstCodec::<Q, R>::default())
            .await
    }

    pub async fn call<Q, R>(&self, path: &str, request: Q) -> Result<R, Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.call_full(path, Request::new(request))
            .await
            .map(|r| r.into_inner())
    }

    /// A unary call carrying a `grpc-timeout` (enforced by the server side only).
    pub async fn call_with_deadline<Q, R>(
        &self,
        path: &str,
        request: Q,
        deadline: Duration,
    ) -> Result<R, Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let mut request = Request::new(request);
        request.set_timeout(deadline);
        self.call_full(path, request).await.map(|r| r.into_inner())
    }

    pub async fn stream<Q, R>(
        &self,
        path: &str,
        request: Request<Q>,
    ) -> Result<tonic::Response<Streaming<R>>, Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let path = PathAndQuery::try_from(path.to_string()).unwrap();
        grpc.server_streaming(request, path, ProstCodec::<Q, R>::default())
            .await
    }

    /// PullImage without auth; the image ref on success.
    pub async fn pull(&self, image: &str) -> Result<String, Status> {
        let request = imageshim::cri::PullImageRequest {
            image: Some(imageshim::cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.call::<_, imageshim::cri::PullImageResponse>(
            imageshim::cri::paths::PULL_IMAGE,
            request,
        )
        .await
        .map(|r| r.image_ref)
    }

    /// ImageStatus of `image` (default handler): the image, when present.
    pub async fn image_status(&self, image: &str) -> Option<imageshim::cri::Image> {
        let request = imageshim::cri::ImageStatusRequest {
            image: Some(imageshim::cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: false,
        };
        self.call::<_, imageshim::cri::ImageStatusResponse>(
            imageshim::cri::paths::IMAGE_STATUS,
            request,
        )
        .await
        .expect("ImageStatus answers")
        .image
    }

    /// RemoveImage of `image` (default handler).
    pub async fn remove_image(&self, image: &str) -> Result<(), Status> {
        let request = imageshim::cri::RemoveImageRequest {
            image: Some(imageshim::cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
        };
        self.call::<_, imageshim::cri::RemoveImageResponse>(
            imageshim::cri::paths::REMOVE_IMAGE,
            request,
        )
        .await
        .map(|_| ())
    }

    /// Polls ImageStatus until `image` is present; how long that took. Panics, naming
    /// `what`, after 30 s.
    pub async fn until_present(&self, image: &str, what: &str) -> Duration {
        let started = std::time::Instant::now();
        while self.image_status(image).await.is_none() {
            assert!(started.elapsed() < Duration::from_secs(30), "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started.elapsed()
    }

    /// `callers` concurrent pulls of one image; every answer, in order.
    pub async fn pull_concurrently(
        &self,
        image: &str,
        callers: usize,
    ) -> Vec<Result<String, Status>> {
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (client, image) = (self.clone(), image.to_string());
                tokio::spawn(async move { client.pull(&image).await })
            })
            .collect();
        let mut results = Vec::with_capacity(callers);
        for task in tasks {
            results.push(task.await.expect("pull task"));
        }
        results
    }
}
