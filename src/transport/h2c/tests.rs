//! The client against an independent HTTP/2 server (the `h2` crate's), over a socket
//! pair: round trips, flow control both ways, resets both ways, the stream limit,
//! GOAWAY and a peer that sends garbage.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::net::UnixStream;

use super::*;

const PATIENCE: Duration = Duration::from_secs(10);

/// A client connection whose driver runs, and the server's end of the socket.
fn pair() -> (Arc<Connection>, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let io = QuietUnixStream::from_tokio(ours).unwrap();
    let (connection, driver) = Connection::start(io);
    tokio::spawn(driver);
    (Arc::new(connection), theirs)
}

fn request(path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(body.into()));
    *request.uri_mut() = path.parse().unwrap();
    request
        .headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    request
}

async fn server(io: UnixStream) -> h2::server::Connection<UnixStream, Bytes> {
    h2::server::Builder::new()
        .max_concurrent_streams(1)
        .handshake(io)
        .await
        .unwrap()
}

/// Answers every call with its request body echoed back `times` times, then trailers.
async fn echo_server(io: UnixStream, times: usize) {
    let mut connection = server(io).await;
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        tokio::spawn(async move {
            let (parts, mut body) = request.into_parts();
            let mut received = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                body.flow_control().release_capacity(chunk.len()).unwrap();
                received.extend_from_slice(&chunk);
            }
            let mut head = Response::new(());
            head.headers_mut()
                .insert("x-path", parts.uri.path().parse().unwrap());
            let mut send = respond.send_response(head, false).unwrap();
            for _ in 0..times {
                send.send_data(Bytes::from(received.clone()), false)
                    .unwrap();
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            send.send_trailers(trailers).unwrap();
            // Keep the stream's sender until the client has read it all.
            std::future::poll_fn(|cx| send.poll_reset(cx)).await.ok();
        });
    }
}

/// As a raw peer: reads the client's connection preface.
async fn read_preface(server_io: &mut UnixStream) {
    use tokio::io::AsyncReadExt;
    let mut preface = [0u8; 24];
    server_io.read_exact(&mut preface).await.unwrap();
    assert_eq!(&preface, frame::PREFACE);
}

async fn collect(answer: Response<AnswerStream>) -> (Bytes, Option<HeaderMap>) {
    let collected = answer.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (collected.to_bytes(), trailers)
}

#[tokio::test]
async fn a_call_round_trips_with_its_head_body_and_trailers() {
    let (client, server_io) = pair();
    tokio::spawn(echo_server(server_io, 1));
    let answer = client.send(request("/svc/Method", "hello")).ok().unwrap();
    let answer = tokio::time::timeout(PATIENCE, answer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["x-path"], "/svc/Method");
    let (body, trailers) = collect(answer).await;
    assert_eq!(body, "hello");
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
}

#[tokio::test]
async fn big_bodies_cross_both_ways_within_the_windows() {
    let (client, server_io) = pair();
    tokio::spawn(echo_server(server_io, 8));
    // 1 MiB out: 16 times the peer's initial window, sent as it grants more.
    let big = Bytes::from(vec![7u8; 1024 * 1024]);
    let chunks = big
        .chunks(100_000)
        .map(Bytes::copy_from_slice)
        .collect::<Vec<_>>();
    let stream = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|chunk| Ok::<_, std::convert::Infallible>(http_body::Frame::data(chunk))),
    );
    let mut call = Request::new(StreamBody::new(stream));
    *call.uri_mut() = "/svc/Big".parse().unwrap();
    let answer = client.send(call).ok().unwrap();
    let answer = tokio::time::timeout(PATIENCE, answer)
        .await
        .unwrap()
        .unwrap();
    // 8 MiB back: more than both windows imageshim gives, so it must give them back.
    let (body, trailers) = tokio::time::timeout(PATIENCE, collect(answer))
        .await
        .unwrap();
    assert_eq!(body.len(), 8 * big.len());
    assert!(body.iter().all(|byte| *byte == 7));
    assert!(trailers.is_some());
}

#[tokio::test]
async fn a_reset_from_the_backend_fails_the_call_with_its_code() {
    let (client, server_io) = pair();
    tokio::spawn(async move {
        let mut connection = server(server_io).await;
        while let Some(Ok((_, mut respond))) = connection.accept().await {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
        }
    });
    let answer = client.send(request("/svc/Reset", "x")).ok().unwrap();
    let err = tokio::time::timeout(PATIENCE, answer)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err, Error::Reset(0x7));
}

#[tokio::test]
async fn dropping_the_answer_resets_the_stream_and_frees_its_slot() {
    let (client, server_io) = pair();
    let (reset_tx, reset_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut connection = server(server_io).await;
        let (_, mut respond) = connection.accept().await.unwrap().unwrap();
        let mut send = respond.send_response(Response::new(()), false).unwrap();
        send.send_data(Bytes::from_static(b"partial"), false)
            .unwrap();
        tokio::spawn(async move {
            let reason = std::future::poll_fn(|cx| send.poll_reset(cx))
                .await
                .unwrap();
            let _ = reset_tx.send(reason);
        });
        // The second call is accepted only once the first stream's slot is free.
        let (_, mut respond) = connection.accept().await.unwrap().unwrap();
        let mut send = respond.send_response(Response::new(()), false).unwrap();
        send.send_trailers(HeaderMap::new()).unwrap();
        while connection.accept().await.is_some() {}
    });
    let first = client.send(request("/svc/First", "")).ok().unwrap();
    let first = tokio::time::timeout(PATIENCE, first)
        .await
        .unwrap()
        .unwrap();
    let second = client
        .clone()
        .send_when_below_limit(request("/svc/Second", ""));
    let second = tokio::spawn(async move { second.await.unwrap().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !second.is_finished(),
        "waits for a slot (the server allows one stream)"
    );
    drop(first);
    let reason = tokio::time::timeout(PATIENCE, reset_rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, h2::Reason::CANCEL);
    let second = tokio::time::timeout(PATIENCE, second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn goaway_refuses_unprocessed_calls_and_closes_the_connection_to_new_ones() {
    use tokio::io::AsyncWriteExt;
    let (client, mut server_io) = pair();
    let answer = client.send(request("/svc/Late", "")).ok().unwrap();
    read_preface(&mut server_io).await;
    // GOAWAY: the last stream processed is 0, so stream 1 was not.
    let goaway = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    server_io.write_all(&goaway).await.unwrap();
    let result = tokio::time::timeout(PATIENCE, answer).await.unwrap();
    assert_eq!(result.unwrap_err(), Error::Refused(0));
    assert!(client.is_closed());
    assert!(matches!(
        client.send(request("/svc/After", "")),
        Err(SendError::Closed(_))
    ));
}

#[tokio::test]
async fn garbage_from_the_peer_fails_every_call_without_a_panic() {
    use tokio::io::AsyncWriteExt;
    let (client, mut server_io) = pair();
    let answer = client.send(request("/svc/Any", "x")).ok().unwrap();
    read_preface(&mut server_io).await;
    // A HEADERS frame whose block does not decode (index 0).
    server_io
        .write_all(&[0, 0, 1, 1, 4, 0, 0, 0, 1, 0x80])
        .await
        .unwrap();
    let result = tokio::time::timeout(PATIENCE, answer).await.unwrap();
    assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");
    assert!(client.is_closed());
}

#[tokio::test]
async fn a_backend_that_stops_reading_fails_its_calls_instead_of_queueing_forever() {
    let (client, _server_io) = pair();
    let first = client
        .send(request("/svc/Big", vec![1u8; 60_000]))
        .ok()
        .unwrap();
    // Heads pile up in the queue while nobody reads the socket.
    let big_value = "v".repeat(8 * 1024);
    let mut refused = None;
    let mut waiting = Vec::new();
    for _ in 0..2_000 {
        let mut call = request("/svc/Many", "");
        call.headers_mut()
            .insert("x-padding", big_value.parse().unwrap());
        match client.send(call) {
            Ok(answer) => waiting.push(answer),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    assert!(matches!(refused, Some(SendError::Closed(_))));
    let result = tokio::time::timeout(PATIENCE, first).await.unwrap();
    assert!(matches!(result, Err(Error::NotReading(_))), "{result:?}");
    assert!(client.is_closed());
}

/// As a raw peer: reads frames until one of `kind` with all of `flags` arrives; its
/// stream id.
async fn next_frame_of(server_io: &mut UnixStream, kind: u8, flags: u8) -> u32 {
    use tokio::io::AsyncReadExt;
    loop {
        let mut head = [0u8; 9];
        server_io.read_exact(&mut head).await.unwrap();
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; length];
        server_io.read_exact(&mut payload).await.unwrap();
        if head[3] == kind && head[4] & flags == flags {
            return u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        }
    }
}

#[tokio::test]
async fn a_raised_stream_limit_wakes_the_calls_waiting_for_a_slot() {
    use tokio::io::AsyncWriteExt;
    let (client, mut server_io) = pair();
    read_preface(&mut server_io).await;
    let limit = |n: u8| [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, n];
    server_io.write_all(&limit(0)).await.unwrap();
    // The client acknowledges the limit of 0 before the call is made.
    let ack = next_frame_of(&mut server_io, frame::SETTINGS, frame::ACK);
    assert_eq!(ack.await, 0);
    let waiting = client
        .clone()
        .send_when_below_limit(request("/svc/Waits", ""));
    let waiting = tokio::spawn(waiting);
    let early = tokio::time::timeout(
        Duration::from_millis(100),
        next_frame_of(&mut server_io, frame::HEADERS, 0),
    )
    .await;
    assert!(early.is_err(), "no stream may open under a limit of 0");
    server_io.write_all(&limit(100)).await.unwrap();
    let opened = tokio::time::timeout(PATIENCE, next_frame_of(&mut server_io, frame::HEADERS, 0))
        .await
        .expect("the raised limit woke the waiting call");
    assert_eq!(opened, 1);
    drop(waiting);
}

/// As a raw peer: writes `block` on `stream` as HEADERS plus CONTINUATION frames of at
/// most 16 KiB, with `end_stream`.
async fn write_block(server_io: &mut UnixStream, stream: u32, block: &[u8], end_stream: bool) {
    use tokio::io::AsyncWriteExt;
    let chunks: Vec<&[u8]> = block.chunks(16_384).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let kind = if i == 0 {
            frame::HEADERS
        } else {
            frame::CONTINUATION
        };
        let mut flags = 0;
        if i == 0 && end_stream {
            flags |= frame::END_STREAM;
        }
        if i == chunks.len() - 1 {
            flags |= frame::END_HEADERS;
        }
        let len = chunk.len() as u32;
        let mut head = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        head.extend_from_slice(&stream.to_be_bytes());
        server_io.write_all(&head).await.unwrap();
        server_io.write_all(chunk).await.unwrap();
    }
}

/// Header blocks a backend may send that imageshim cannot hold — more distinct names
/// than a `HeaderMap` takes (it used to panic in the driver), or one entry indexed
/// until the list decodes past 1 MiB (it used to take a GiB) — fail their stream with a
/// protocol error; the connection goes on serving.
#[tokio::test]
async fn header_blocks_past_the_limits_fail_their_stream_not_the_connection() {
    let (client, mut server_io) = pair();
    read_preface(&mut server_io).await;
    let mut many_names = vec![0x88]; // :status 200
    for n in 0..24_577 {
        let name = format!("x-{n:05}");
        many_names.extend_from_slice(&[0x00, name.len() as u8]);
        many_names.extend_from_slice(name.as_bytes());
        many_names.push(0x00);
    }
    // One entry added to the table ("x-a": ""), then referenced 100,000 times.
    let mut indexed = vec![0x88, 0x40, 0x03, b'x', b'-', b'a', 0x00];
    indexed.extend(std::iter::repeat_n(0xbe, 100_000));
    for (stream, block) in [(1u32, many_names), (3, indexed)] {
        let answer = client.send(request("/svc/Big", "")).ok().unwrap();
        write_block(&mut server_io, stream, &block, true).await;
        let result = tokio::time::timeout(PATIENCE, answer).await.unwrap();
        assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");
        assert!(!client.is_closed(), "only the stream failed");
    }
    let answer = client.send(request("/svc/Fine", "")).ok().unwrap();
    write_block(&mut server_io, 5, &[0x88], true).await;
    let answer = tokio::time::timeout(PATIENCE, answer).await.unwrap();
    assert_eq!(answer.unwrap().status(), StatusCode::OK);
}

/// A backend that sends PINGs without reading the ACKs ends its connection once the
/// unread replies pass the limit; before, they queued without bound.
#[tokio::test]
async fn pings_whose_acks_are_never_read_end_the_connection() {
    use tokio::io::AsyncWriteExt;
    let (client, mut server_io) = pair();
    let answer = client.send(request("/svc/Any", "")).ok().unwrap();
    read_preface(&mut server_io).await;
    let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let pings: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 60_000)
        .collect();
    // The peer writes 1 MB of PINGs and reads nothing back.
    let _ = tokio::time::timeout(PATIENCE, server_io.write_all(&pings)).await;
    let result = tokio::time::timeout(PATIENCE, answer).await.unwrap();
    assert!(matches!(result, Err(Error::NotReading(_))), "{result:?}");
    assert!(client.is_closed());
}
