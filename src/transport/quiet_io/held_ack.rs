//! A lone PING ACK to the backend, held briefly. containerd (grpc-go's BDP estimator)
//! pings imageshim with nearly every answer; h2 writes the acknowledgement as it reads
//! the answer, before the answer's way back to the caller has run, which put one write —
//! and a wake-up of containerd — on every call's critical path. Held here, it goes out
//! ahead of the next write on the connection (usually the next call, in the same
//! write), or after [`ACK_DELAY`] when none comes. Only a write that is exactly one PING
//! ACK frame is held, never more than one, and bytes never reorder within a frame; the
//! ack and the next write share one `writev(2)`. One
//! flush task per connection, ended with it. Must not hold anything else.

use std::io::{self, IoSlice, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

/// The longest a held ack waits for a write to carry it (grpc-go's keepalive waits
/// 20 s for one; its BDP estimator only learns a longer round trip).
pub(super) const ACK_DELAY: Duration = Duration::from_millis(1);

/// A PING frame with the ACK flag: 9 bytes of head and 8 of opaque data.
pub(super) const PING_ACK_LEN: usize = 17;
const PING_ACK_HEAD: [u8; 9] = [0, 0, 8, 6, 1, 0, 0, 0, 0];

/// At most one held PING ACK and how much of it is already written.
#[derive(Debug, Default)]
pub(super) struct HeldAck {
    frame: [u8; PING_ACK_LEN],
    written: usize,
    held: bool,
}

impl HeldAck {
    /// Holds `slices` when together they are exactly one PING ACK frame and nothing is
    /// held yet; true when held.
    pub(super) fn hold_if_lone_ack(&mut self, slices: &[IoSlice<'_>]) -> bool {
        let total: usize = slices.iter().map(|slice| slice.len()).sum();
        if self.held || total != PING_ACK_LEN {
            return false;
        }
        let mut frame = [0u8; PING_ACK_LEN];
        let mut at = 0;
        for slice in slices {
            frame[at..at + slice.len()].copy_from_slice(slice);
            at += slice.len();
        }
        if frame[..PING_ACK_HEAD.len()] != PING_ACK_HEAD {
            return false;
        }
        *self = HeldAck {
            frame,
            written: 0,
            held: true,
        };
        true
    }

    /// Writes what is held; `Ok` once nothing is (a would-block keeps the rest held).
    pub(super) fn write_to(&mut self, socket: &UnixStream) -> io::Result<()> {
        while self.held {
            match self.write_ahead_of(socket, &[]) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Writes `slices` with what is held ahead of them, in one `writev(2)`: the held
    /// ack costs no write of its own. Returns how much of `slices` went out. When the
    /// write took exactly the ack, `slices` are written alone; when it took part of it,
    /// the socket is full (would-block). So a non-empty write never reports 0.
    pub(super) fn write_ahead_of(
        &mut self,
        socket: &UnixStream,
        slices: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        let mut socket = socket;
        if !self.held {
            return socket.write_vectored(slices);
        }
        let pending = &self.frame[self.written..];
        let mut gathered = [IoSlice::new(&[]); MAX_GATHERED];
        gathered[0] = IoSlice::new(pending);
        let carried = slices.len().min(MAX_GATHERED - 1);
        gathered[1..=carried].copy_from_slice(&slices[..carried]);
        let written = socket.write_vectored(&gathered[..=carried])?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let of_ack = written.min(pending.len());
        self.written += of_ack;
        self.held = self.written < PING_ACK_LEN;
        let wants_more = slices.iter().any(|slice| !slice.is_empty());
        match written - of_ack {
            // Part of the ack went out: the socket is full.
            0 if self.held => Err(io::ErrorKind::WouldBlock.into()),
            0 if wants_more => socket.write_vectored(slices),
            of_slices => Ok(of_slices),
        }
    }
}

/// The most slices one gathered write carries (the held ack's and the caller's).
const MAX_GATHERED: usize = 64;

/// A connection's held ack and the task that flushes it when no write comes.
#[derive(Debug, Default)]
pub(super) struct AckHolder {
    pub(super) held: Mutex<HeldAck>,
    wake: Notify,
    closed: AtomicBool,
}

impl AckHolder {
    /// A holder for `socket` and its flush task (which ends once the holder is closed).
    pub(super) fn start(socket: Weak<AsyncFd<UnixStream>>) -> Arc<AckHolder> {
        let holder = Arc::new(AckHolder::default());
        tokio::spawn(flush_when_idle(socket, holder.clone()));
        holder
    }

    /// An ack was just held: flush it after `ACK_DELAY` unless a write carries it.
    pub(super) fn held_one(&self) {
        self.wake.notify_one();
    }

    /// The connection is gone: the flush task ends.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// Writes a held ack that no write carried within `ACK_DELAY`. A failure is left for
/// the connection's next read or write to meet; a would-block leaves the ack to the
/// next write.
async fn flush_when_idle(socket: Weak<AsyncFd<UnixStream>>, holder: Arc<AckHolder>) {
    loop {
        holder.wake.notified().await;
        if holder.closed.load(Ordering::Acquire) {
            return;
        }
        tokio::time::sleep(ACK_DELAY).await;
        let Some(socket) = socket.upgrade() else {
            return;
        };
        let _ = holder.held.lock().write_to(socket.get_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACK: [u8; PING_ACK_LEN] = [0, 0, 8, 6, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];

    #[test]
    fn only_one_whole_ping_ack_is_held() {
        let mut held = HeldAck::default();
        let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        assert!(
            !held.hold_if_lone_ack(&[IoSlice::new(&ping)]),
            "a ping, not an ack"
        );
        assert!(
            !held.hold_if_lone_ack(&[IoSlice::new(&ACK[..16])]),
            "part of a frame"
        );
        let mut longer = ACK.to_vec();
        longer.push(0);
        assert!(
            !held.hold_if_lone_ack(&[IoSlice::new(&longer)]),
            "an ack and more"
        );
        let split = [IoSlice::new(&ACK[..9]), IoSlice::new(&ACK[9..])];
        assert!(held.hold_if_lone_ack(&split), "an ack in two slices");
        assert!(
            !held.hold_if_lone_ack(&[IoSlice::new(&ACK)]),
            "never a second"
        );
    }

    #[test]
    fn a_held_ack_is_written_whole_once() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut held = HeldAck::default();
        assert!(held.hold_if_lone_ack(&[IoSlice::new(&ACK)]));
        held.write_to(&ours).unwrap();
        held.write_to(&ours).unwrap();
        drop(ours);
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut theirs, &mut got).unwrap();
        assert_eq!(got, ACK);
    }

    #[test]
    fn a_held_ack_rides_ahead_of_the_next_write_and_counts_only_its_bytes() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut held = HeldAck::default();
        assert!(held.hold_if_lone_ack(&[IoSlice::new(&ACK)]));
        let slices = [IoSlice::new(b"next "), IoSlice::new(b"frame")];
        assert_eq!(held.write_ahead_of(&ours, &slices).unwrap(), 10);
        assert!(!held.held, "the ack went out with them");
        drop(ours);
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut theirs, &mut got).unwrap();
        assert_eq!(&got[..PING_ACK_LEN], &ACK);
        assert_eq!(&got[PING_ACK_LEN..], b"next frame");
    }

    #[test]
    fn a_full_socket_keeps_the_ack_held_and_says_would_block() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let filler = [7u8; 4096];
        let mut queued = 0;
        while let Ok(written) = (&ours).write(&filler) {
            queued += written;
        }
        let mut held = HeldAck::default();
        assert!(held.hold_if_lone_ack(&[IoSlice::new(&ACK)]));
        let err = held
            .write_ahead_of(&ours, &[IoSlice::new(b"more")])
            .expect_err("nothing fits");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let mut drained = vec![0u8; queued];
        std::io::Read::read_exact(&mut theirs, &mut drained).unwrap();
        assert_eq!(
            held.write_ahead_of(&ours, &[IoSlice::new(b"more")])
                .unwrap(),
            4
        );
        drop(ours);
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut theirs, &mut got).unwrap();
        assert_eq!(&got[..PING_ACK_LEN], &ACK, "the whole ack, then the write");
        assert_eq!(&got[PING_ACK_LEN..], b"more");
    }
}
