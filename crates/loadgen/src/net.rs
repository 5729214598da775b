//! Blocking sockets: splitting the received byte stream into FIX messages or fixed-size echo
//! chunks, and a FIX client connection that logs on and off.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use portcullis_fix::{frame, Decoder, Frame};

use crate::fix::{classify, Event, FixEncoder};

/// Largest FIX message accepted from the server.
const MAX_MESSAGE: usize = 1 << 20;

/// A receive buffer that hands out whole messages (FIX frames or fixed-size chunks) without
/// allocating once it has grown to the largest burst.
#[derive(Debug)]
pub struct RecvBuf {
    buf: Vec<u8>,
    head: usize,
    filled: usize,
}

impl Default for RecvBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBuf {
    /// An empty buffer of 256 KiB.
    pub fn new() -> Self {
        Self {
            buf: vec![0; 256 * 1024],
            head: 0,
            filled: 0,
        }
    }

    /// Bytes received and not yet handed out.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.head..self.filled]
    }

    /// Reads once from `r` into the buffer: the number of bytes read (0 = end of stream).
    pub fn fill_from<R: Read>(&mut self, r: &mut R) -> io::Result<usize> {
        if self.head == self.filled {
            self.head = 0;
            self.filled = 0;
        } else if self.filled == self.buf.len() {
            if self.head > 0 {
                self.buf.copy_within(self.head..self.filled, 0);
                self.filled -= self.head;
                self.head = 0;
            } else {
                let len = self.buf.len();
                self.buf.resize(len * 2, 0);
            }
        }
        let n = r.read(&mut self.buf[self.filled..])?;
        self.filled += n;
        Ok(n)
    }

    /// Reads once from the socket `fd` without blocking (`MSG_DONTWAIT`, leaving the socket's own
    /// blocking mode alone for the thread that writes to it): the bytes read, 0 at the end of the
    /// stream, or a `WouldBlock` error when nothing is there.
    pub fn fill_dontwait(&mut self, fd: RawFd) -> io::Result<usize> {
        self.fill_from(&mut DontWait(fd))
    }

    /// The next whole FIX message, as a range of [`RecvBuf::bytes`], or `None` if more bytes are
    /// needed. A garbled or oversized message is an error: a server must never send one.
    pub fn next_fix(&mut self) -> Result<Option<Range<usize>>> {
        match frame(self.pending(), MAX_MESSAGE) {
            Frame::Complete { len } => {
                let r = self.head..self.head + len;
                self.head += len;
                Ok(Some(r))
            }
            Frame::Incomplete => Ok(None),
            Frame::Garbled { reason, .. } => bail!("the server sent a garbled message: {reason}"),
            Frame::Oversized { len } => bail!("the server announced a {len}-byte message"),
        }
    }

    /// The next `size` bytes, as a range of [`RecvBuf::bytes`], or `None` if fewer are here.
    pub fn next_chunk(&mut self, size: usize) -> Option<Range<usize>> {
        if self.filled - self.head >= size {
            let r = self.head..self.head + size;
            self.head += size;
            Some(r)
        } else {
            None
        }
    }

    /// The bytes of a range returned by `next_fix` or `next_chunk` (valid until the next fill).
    pub fn bytes(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }
}

/// A socket read without blocking, whatever the socket's mode.
struct DontWait(RawFd);

impl Read for DontWait {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes and the kernel writes at most that many.
        let n = unsafe {
            libc::recv(
                self.0,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// Connects with TCP_NODELAY.
pub fn connect(addr: &str) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .with_context(|| format!("bad address {addr}"))?
        .collect();
    let s = TcpStream::connect(&addrs[..]).with_context(|| format!("cannot connect to {addr}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The read half of a FIX client connection: receives and classifies server messages.
#[derive(Debug)]
pub struct FixReader {
    stream: TcpStream,
    rx: RecvBuf,
    decoder: Decoder,
    prefix: Vec<u8>,
    last_len: usize,
}

impl FixReader {
    /// Reads from `stream`, matching ClOrdIDs that start with `prefix`.
    pub fn new(stream: TcpStream, prefix: &[u8]) -> Self {
        Self {
            stream,
            rx: RecvBuf::new(),
            decoder: Decoder::new(),
            prefix: prefix.to_vec(),
            last_len: 0,
        }
    }

    /// Length in bytes of the last message received.
    pub fn last_len(&self) -> usize {
        self.last_len
    }

    /// Sets how long one [`FixReader::recv`] waits (None: forever).
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<()> {
        self.stream.set_read_timeout(t)?;
        Ok(())
    }

    /// The socket.
    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// The next server message, classified; `None` if the read timeout passed first. The end
    /// of the connection is an error.
    pub fn recv(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(e) = self.buffered()? {
                return Ok(Some(e));
            }
            match self.rx.fill_from(&mut self.stream) {
                Ok(0) => bail!("the server closed the connection"),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading from the server"),
            }
        }
    }

    /// The next message among those already received, classified, or `None`.
    pub fn buffered(&mut self) -> Result<Option<Event>> {
        let Some(r) = self.rx.next_fix()? else {
            return Ok(None);
        };
        self.last_len = r.len();
        let msg = self
            .decoder
            .decode(self.rx.bytes(r))
            .context("the server sent an undecodable message")?;
        Ok(Some(classify(&msg, &self.prefix)))
    }

    /// Reads once without waiting: false if nothing was there. The end of the connection is
    /// an error.
    pub fn read_dontwait(&mut self) -> Result<bool> {
        read_result(self.rx.fill_dontwait(self.stream.as_raw_fd()), "the server")
    }
}

/// The outcome of a non-blocking read: true if bytes came (or the read was interrupted), false
/// if none were there; the end of the stream and other failures are errors naming `peer`.
pub fn read_result(r: io::Result<usize>, peer: &str) -> Result<bool> {
    match r {
        Ok(0) => bail!("{peer} closed the connection"),
        Ok(_) => Ok(true),
        Err(e) if is_timeout(&e) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading from {peer}")),
    }
}

/// True for the errors a read timeout gives.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A logged-on FIX client session over one TCP connection.
#[derive(Debug)]
pub struct FixClient {
    /// Encodes what we send.
    pub enc: FixEncoder,
    /// The write half.
    pub writer: TcpStream,
    /// The read half.
    pub reader: FixReader,
    out: Vec<u8>,
}

impl FixClient {
    /// Takes the client apart, to drive its halves from two threads.
    pub fn into_parts(self) -> (FixEncoder, TcpStream, FixReader) {
        (self.enc, self.writer, self.reader)
    }

    /// Puts a client taken apart by [`FixClient::into_parts`] back together.
    pub fn from_parts(enc: FixEncoder, writer: TcpStream, reader: FixReader) -> Self {
        Self {
            enc,
            writer,
            reader,
            out: Vec::with_capacity(4096),
        }
    }

    /// Connects to `addr` and logs on (waits up to 10 s for the Logon reply).
    pub fn logon(addr: &str, enc: FixEncoder) -> Result<Self> {
        let stream = connect(addr)?;
        let reader = FixReader::new(stream.try_clone()?, enc.prefix());
        let mut c = Self {
            enc,
            writer: stream,
            reader,
            out: Vec::with_capacity(4096),
        };
        c.out.clear();
        c.enc.logon(&mut c.out);
        c.writer.write_all(&c.out)?;
        c.reader.set_timeout(Some(Duration::from_secs(10)))?;
        let who = format!("{}->{}", c.enc.options().sender, c.enc.options().target);
        loop {
            match c.reader.recv()? {
                Some(Event::Logon) => break,
                Some(Event::TestRequest(id)) => c.heartbeat(Some(&id))?,
                Some(Event::Logout(text)) => bail!("logon of {who} refused: {text}"),
                Some(Event::SessionReject { text, .. }) => {
                    bail!("logon of {who} rejected: {text}")
                }
                Some(_) => {}
                None => bail!("no Logon reply for {who} within 10 s"),
            }
        }
        c.reader.set_timeout(None)?;
        Ok(c)
    }

    /// Sends a Heartbeat (answering a TestRequest if `test_req_id` is given).
    pub fn heartbeat(&mut self, test_req_id: Option<&[u8]>) -> Result<()> {
        self.out.clear();
        self.enc.heartbeat(test_req_id, &mut self.out);
        self.writer.write_all(&self.out)?;
        Ok(())
    }

    /// Logs out and waits (up to 5 s) for the server's Logout; answers still in flight are
    /// skipped.
    pub fn logout(mut self) -> Result<()> {
        self.out.clear();
        self.enc.logout(&mut self.out);
        self.writer.write_all(&self.out)?;
        self.reader.set_timeout(Some(Duration::from_millis(200)))?;
        let deadline = crate::hist::now_ns() + 5_000_000_000;
        while crate::hist::now_ns() < deadline {
            match self.reader.recv() {
                Ok(Some(Event::Logout(_))) => return Ok(()),
                Ok(Some(Event::TestRequest(id))) => self.heartbeat(Some(&id))?,
                Ok(_) => {}
                // The server may close right after its Logout.
                Err(_) => return Ok(()),
            }
        }
        bail!("no Logout reply within 5 s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its bytes a few at a time.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn fix_messages_come_out_whole_across_reads() {
        let mut enc = portcullis_fix::Encoder::new();
        let mut stream = Vec::new();
        for seq in 1..=50u64 {
            enc.start(b"FIX.4.4", b"0").uint(34, seq);
            stream.extend_from_slice(enc.finish());
        }
        let mut src = Trickle(stream, 7);
        let mut rx = RecvBuf::new();
        let mut seqs = Vec::new();
        while seqs.len() < 50 {
            match rx.next_fix().unwrap() {
                Some(r) => {
                    let mut d = Decoder::new();
                    seqs.push(d.decode(rx.bytes(r)).unwrap().seq_num().unwrap());
                }
                None => assert!(rx.fill_from(&mut src).unwrap() > 0),
            }
        }
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        assert!(rx.pending().is_empty());
    }

    #[test]
    fn garbage_from_the_server_is_an_error() {
        let mut rx = RecvBuf::new();
        rx.fill_from(&mut &b"9=5\x0135=0\x0110=000\x01"[..])
            .unwrap();
        assert!(rx.next_fix().is_err());
    }

    #[test]
    fn chunks_survive_compaction_and_growth() {
        // More than the buffer holds, in chunks that straddle its end.
        let size = 1000;
        let total = 700;
        let data: Vec<u8> = (0..size * total).map(|i| (i / size) as u8).collect();
        let mut src = Trickle(data, 4099);
        let mut rx = RecvBuf::new();
        let mut got = 0;
        while got < total {
            match rx.next_chunk(size) {
                Some(r) => {
                    assert!(rx.bytes(r).iter().all(|&b| b == got as u8));
                    got += 1;
                }
                None => assert!(rx.fill_from(&mut src).unwrap() > 0),
            }
        }
        // A chunk larger than the buffer makes it grow.
        let mut big = Trickle(vec![1; 600 * 1024], 64 * 1024);
        let mut rx = RecvBuf::new();
        while rx.next_chunk(600 * 1024).is_none() {
            assert!(rx.fill_from(&mut big).unwrap() > 0);
        }
    }
}
