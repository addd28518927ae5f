//! Per-call metrics: `imageshim_grpc_requests_total{method,code}` and
//! `imageshim_grpc_request_duration_seconds{method}`. The `method` label only takes
//! names from the CRI v1 set (anything else is `other`) and `code` the 17 gRPC code
//! names, so the label sets stay bounded whatever clients send.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Every CRI v1 method (RuntimeService and ImageService).
const CRI_METHODS: &[&str] = &[
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "ContainerStats",
    "ListContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "UpdateRuntimeConfig",
    "Status",
    "CheckpointContainer",
    "GetContainerEvents",
    "ListMetricDescriptors",
    "ListPodSandboxMetrics",
    "RuntimeConfig",
    "UpdatePodSandboxResources",
    "ListImages",
    "ImageStatus",
    "PullImage",
    "RemoveImage",
    "ImageFsInfo",
];

/// The gRPC code names, indexed by code number.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// A CRI v1 method (by its place in the list) or `other`: the `method` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method(usize);

impl Method {
    /// The method of a request path.
    pub fn of(path: &str) -> Method {
        let name = path
            .strip_prefix("/runtime.v1.RuntimeService/")
            .or_else(|| path.strip_prefix("/runtime.v1.ImageService/"));
        let index = name.and_then(|name| CRI_METHODS.iter().position(|known| *known == name));
        Method(index.unwrap_or(CRI_METHODS.len()))
    }

    pub fn label(self) -> &'static str {
        CRI_METHODS.get(self.0).copied().unwrap_or("other")
    }
}

/// The `method` label for a request path: a CRI v1 method name, or `other`.
pub fn method_label(path: &str) -> &'static str {
    Method::of(path).label()
}

/// The code number of a `grpc-status` value (2, Unknown, when it is not one).
fn code_index(grpc_status: Option<&[u8]>) -> usize {
    let code = grpc_status
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<usize>().ok());
    code.filter(|c| *c < CODE_NAMES.len()).unwrap_or(2)
}

/// The `code` label for a `grpc-status` value.
pub fn code_label(grpc_status: Option<&[u8]>) -> &'static str {
    CODE_NAMES[code_index(grpc_status)]
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

/// The per-call metric families, and a handle per (method, code) resolved once so a
/// call pays no label hashing or lock. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GrpcMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requests: Family<RequestLabels, Counter>,
    durations: Family<MethodLabels, Histogram, fn() -> Histogram>,
    /// One per CRI method, then one for `other`.
    handles: Vec<MethodHandles>,
}

#[derive(Debug, Default)]
struct MethodHandles {
    codes: [OnceLock<Counter>; 17],
    duration: OnceLock<Histogram>,
}

fn duration_histogram() -> Histogram {
    // 50 µs .. ~200 s.
    Histogram::new(exponential_buckets(0.00005, 3.0, 15))
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        GrpcMetrics {
            inner: Arc::new(Inner {
                requests: Family::default(),
                durations: Family::new_with_constructor(duration_histogram),
                handles: (0..=CRI_METHODS.len())
                    .map(|_| MethodHandles::default())
                    .collect(),
            }),
        }
    }
}

impl GrpcMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "grpc_requests",
            "CRI calls served, by method and gRPC code",
            self.inner.requests.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "CRI call duration, from request to the answer's end",
            self.inner.durations.clone(),
        );
    }

    /// Records one finished call.
    pub fn record(&self, method: Method, code: usize, started: Instant) {
        let inner = &*self.inner;
        let handles = &inner.handles[method.0];
        let name = method.label();
        let code = code.min(CODE_NAMES.len() - 1);
        handles.codes[code]
            .get_or_init(|| {
                let labels = RequestLabels {
                    method: name,
                    code: CODE_NAMES[code],
                };
                inner.requests.get_or_create_owned(&labels)
            })
            .inc();
        handles
            .duration
            .get_or_init(|| {
                inner
                    .durations
                    .get_or_create_owned(&MethodLabels { method: name })
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Records the call when its answer ends: at once for a trailers-only answer,
    /// else when the body's trailers pass (a body dropped before them is `Canceled`).
    pub fn observe<B>(
        &self,
        method: Method,
        started: Instant,
        response: Response<B>,
    ) -> Response<ObservedBody<B>> {
        let record = match response.headers().get("grpc-status") {
            Some(status) => {
                self.record(method, code_index(Some(status.as_bytes())), started);
                None
            }
            None => Some(Recorder {
                metrics: self.clone(),
                method,
                started,
            }),
        };
        response.map(|inner| ObservedBody { inner, record })
    }
}

struct Recorder {
    metrics: GrpcMetrics,
    method: Method,
    started: Instant,
}

/// A response body that records its call when the trailers pass or it is dropped
/// (nothing is left to record when the answer was trailers-only).
pub struct ObservedBody<B> {
    inner: B,
    record: Option<Recorder>,
}

impl<B> ObservedBody<B> {
    fn finish(&mut self, code: usize) {
        if let Some(r) = self.record.take() {
            r.metrics.record(r.method, code, r.started);
        }
    }
}

impl<B> Drop for ObservedBody<B> {
    fn drop(&mut self) {
        self.finish(1);
    }
}

impl<B> HttpBody for ObservedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    self.finish(code_of(trailers));
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.finish(2),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn code_of(trailers: &HeaderMap) -> usize {
    code_index(trailers.get("grpc-status").map(|v| v.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_the_cri_set_or_other() {
        assert_eq!(
            method_label("/runtime.v1.ImageService/PullImage"),
            "PullImage"
        );
        assert_eq!(
            method_label("/runtime.v1.RuntimeService/Version"),
            "Version"
        );
        assert_eq!(
            method_label("/runtime.v1.RuntimeService/NoSuchMethod"),
            "other"
        );
        assert_eq!(
            method_label("/runtime.v1alpha2.RuntimeService/Version"),
            "other"
        );
        assert_eq!(method_label("/x/PullImage"), "other");
        assert_eq!(
            method_label(&format!("/runtime.v1.ImageService/{}", "a".repeat(10_000))),
            "other"
        );
    }

    #[test]
    fn code_labels_are_the_seventeen_names() {
        assert_eq!(code_label(Some(b"0")), "OK");
        assert_eq!(code_label(Some(b"16")), "Unauthenticated");
        assert_eq!(code_label(Some(b"17")), "Unknown");
        assert_eq!(code_label(Some(b"-1")), "Unknown");
        assert_eq!(code_label(Some(b"\xff")), "Unknown");
        assert_eq!(code_label(None), "Unknown");
    }

    #[test]
    fn label_sets_stay_bounded_whatever_the_paths() {
        let metrics = GrpcMetrics::default();
        for i in 0..1000 {
            let path = format!("/runtime.v1.RuntimeService/Method{i}");
            let status = format!("{}", i % 40);
            metrics.record(
                Method::of(&path),
                code_index(Some(status.as_bytes())),
                Instant::now(),
            );
        }
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("grpc_requests_total{"))
            .count();
        assert_eq!(series, 17, "one series per code for method=other:\n{text}");
    }
}
