//! From a body downloading on the async side to the store's blocking `Read`: a bounded channel
//! (so a slow unpack slows the download instead of buffering the layer in memory) whose reader
//! ends cleanly only on an explicit end mark. A sender dropped without it (the download failed or
//! was cancelled) is an error for the reader, so a truncated stream never looks complete.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

/// Chunks in flight between the download and the reader.
pub const CHANNEL_CHUNKS: usize = 16;

#[derive(Debug)]
pub enum Msg {
    Data(Bytes),
    /// The whole blob was sent.
    End,
}

pub type Sender = mpsc::Sender<Msg>;

/// The blocking end. Must not be read from inside the async runtime (it blocks the thread).
pub struct ChannelReader {
    rx: mpsc::Receiver<Msg>,
    buf: Bytes,
    ended: bool,
}

pub fn channel() -> (Sender, ChannelReader) {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    (tx, ChannelReader { rx, buf: Bytes::new(), ended: false })
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            if self.ended || out.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(b)) => self.buf = b,
                Some(Msg::End) => self.ended = true,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the download was interrupted before the end of the blob",
                    ))
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_only_on_the_end_mark() {
        let (tx, mut reader) = channel();
        let t = std::thread::spawn(move || {
            let mut s = Vec::new();
            let r = reader.read_to_end(&mut s);
            (r.is_ok(), s)
        });
        tx.blocking_send(Msg::Data(Bytes::from_static(b"hello "))).unwrap();
        tx.blocking_send(Msg::Data(Bytes::from_static(b"world"))).unwrap();
        tx.blocking_send(Msg::End).unwrap();
        assert_eq!(t.join().unwrap(), (true, b"hello world".to_vec()));

        let (tx, mut reader) = channel();
        tx.blocking_send(Msg::Data(Bytes::from_static(b"partial"))).unwrap();
        drop(tx);
        let mut s = Vec::new();
        let err = reader.read_to_end(&mut s).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(s, b"partial");
    }
}
