//! A whole h2c connection fed by a hostile backend: a call is in flight while the
//! backend writes arbitrary bytes and closes. imageshim must answer the call (or fail
//! it) without a panic or a hang.
#![no_main]
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use imageshim::transport::h2c::Connection;
use imageshim::transport::quiet_io::QuietUnixStream;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // libFuzzer's main is not Rust's: ignore SIGPIPE as a Rust program (imageshim)
        // does, so a write to a peer that has gone is an error, not the end.
        // SAFETY: setting a signal disposition once, before any thread is started here.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        let (connection, driver) = Connection::start(QuietUnixStream::from_tokio(ours).unwrap());
        let driver = tokio::spawn(driver);
        let mut request = http::Request::new(Full::new(Bytes::from_static(b"\0\0\0\0\0")));
        *request.uri_mut() = "/runtime.v1.RuntimeService/Version".parse().unwrap();
        let answer = connection.send(request).ok().unwrap();
        let mut preface = [0u8; 24];
        theirs.read_exact(&mut preface).await.unwrap();
        let _ = theirs.write_all(data).await;
        drop(theirs);
        let answered = tokio::time::timeout(Duration::from_secs(5), async {
            if let Ok(response) = answer.await {
                use http_body_util::BodyExt;
                let _ = response.into_body().collect().await;
            }
        })
        .await;
        assert!(answered.is_ok(), "the call hung on a closed connection");
        drop(connection);
        let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
        assert!(ended.is_ok(), "the driver outlived its peer");
    });
});
