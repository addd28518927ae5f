//! A frame-level HTTP/2 client for tests that must see frames, not a library's view of
//! them: it sends any header list (a `:authority` no URI allows included) and records
//! every frame of the answer, so a test can tell one HEADERS frame with END_STREAM
//! (trailers-only) from HEADERS + an empty DATA frame, which hyper and tonic both accept
//! but grpc-go and gRPC C-core do not. HPACK via loona-hpack.

use std::path::Path;

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// One frame of the answer.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub payload: Vec<u8>,
}

/// Everything the server sent on one stream.
#[derive(Debug, Default)]
pub struct Exchange {
    pub frames: Vec<Frame>,
    /// Decoded header blocks, in order (response headers, then trailers).
    pub header_blocks: Vec<Vec<(String, String)>>,
    /// Set when the server closed the connection (GOAWAY or EOF) instead.
    pub closed: bool,
}

impl Exchange {
    /// The frame sequence: "HEADERS+END_STREAM", "DATA", "RST_STREAM", …
    pub fn shape(&self) -> Vec<String> {
        self.frames
            .iter()
            .map(|f| {
                let name = match f.kind {
                    DATA => "DATA",
                    HEADERS => "HEADERS",
                    RST_STREAM => "RST_STREAM",
                    CONTINUATION => "CONTINUATION",
                    _ => "OTHER",
                };
                let end = f.flags & END_STREAM != 0 && matches!(f.kind, DATA | HEADERS);
                format!("{name}{}", if end { "+END_STREAM" } else { "" })
            })
            .collect()
    }

    /// A header from any block (grpc-status sits in the first or the last).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_blocks
            .iter()
            .flatten()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct FrameClient {
    stream: UnixStream,
    encoder: Encoder<'static>,
    decoder: Decoder<'static>,
    next_stream: u32,
}

/// One HTTP/2 frame: 9-byte header and payload.
pub fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

impl FrameClient {
    pub async fn connect(socket: &Path) -> FrameClient {
        let mut stream = UnixStream::connect(socket).await.unwrap();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame_bytes(SETTINGS, 0, 0, &[]));
        stream.write_all(&hello).await.unwrap();
        FrameClient {
            stream,
            encoder: Encoder::new(),
            decoder: Decoder::new(),
            next_stream: 1,
        }
    }

    /// A gRPC POST to `path` with `:authority` `authority` (None: not sent) and
    /// `extra` headers, carrying `framed`; returns the answer's frames.
    pub async fn call(
        &mut self,
        path: &str,
        authority: Option<&str>,
        extra: &[(&str, &str)],
        framed: &[u8],
    ) -> Exchange {
        let mut headers = vec![(":method", "POST"), (":scheme", "http"), (":path", path)];
        if let Some(authority) = authority {
            headers.push((":authority", authority));
        }
        headers.extend([("content-type", "application/grpc"), ("te", "trailers")]);
        headers.extend_from_slice(extra);
        self.send(&headers, framed).await
    }

    /// Sends a request with exactly these header fields, in this order.
    pub async fn send(&mut self, headers: &[(&str, &str)], body: &[u8]) -> Exchange {
        let id = self.next_stream;
        self.next_stream += 2;
        let block = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        let mut out = frame_bytes(HEADERS, END_HEADERS, id, &block);
        out.extend(frame_bytes(DATA, END_STREAM, id, body));
        // A server that refuses the headers may close before the DATA frame arrives.
        let _ = self.stream.write_all(&out).await;
        self.read_answer(id).await
    }

    async fn read_frame(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        let mut head = [0u8; 9];
        self.stream.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload).await.ok()?;
        Some((head[3], head[4], stream, payload))
    }

    async fn read_answer(&mut self, id: u32) -> Exchange {
        let mut exchange = Exchange::default();
        let mut block = Vec::new();
        while let Some((kind, flags, stream, payload)) = self.read_frame().await {
            match kind {
                SETTINGS if flags & 1 == 0 => {
                    let ack = frame_bytes(SETTINGS, 1, 0, &[]);
                    let _ = self.stream.write_all(&ack).await;
                }
                PING if flags & 1 == 0 => {
                    let pong = frame_bytes(PING, 1, 0, &payload);
                    let _ = self.stream.write_all(&pong).await;
                }
                GOAWAY => {
                    exchange.closed = true;
                    return exchange;
                }
                _ => {}
            }
            if stream != id {
                continue;
            }
            if kind == HEADERS || kind == CONTINUATION {
                block.extend_from_slice(&payload);
                if flags & END_HEADERS != 0 {
                    let fields = self.decoder.decode(&block).expect("valid HPACK");
                    block.clear();
                    exchange.header_blocks.push(
                        fields
                            .into_iter()
                            .map(|(n, v)| {
                                (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())
                            })
                            .collect(),
                    );
                }
            }
            let done = kind == RST_STREAM || (flags & END_STREAM != 0 && kind != SETTINGS);
            exchange.frames.push(Frame {
                kind,
                flags,
                payload,
            });
            if done {
                return exchange;
            }
        }
        exchange.closed = true;
        exchange
    }
}
