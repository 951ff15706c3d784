//! The kernel's byte streams: `pipe` (the echo process's stdin and stdout), `uds` (a Unix
//! stream socket) and `tcp` (loopback, `TCP_NODELAY`). Every message is the whole payload,
//! written with `write` and read with `read` (two copies each way, as any by-copy IPC).

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout};
use std::thread;
use std::time::{Duration, Instant};

use super::Transport;
use super::link::{HANG, Link, LinkError, expect_seq};

/// One process's end of a stream transport for one payload size.
pub struct Stream {
    reader: File,
    writer: File,
    /// The message, stamped with its sequence number in its first 8 bytes.
    message: Vec<u8>,
}

impl Link for Stream {
    fn send(&mut self, seq: u64) -> Result<(), LinkError> {
        self.message[..8].copy_from_slice(&seq.to_ne_bytes());
        self.writer.write_all(&self.message).map_err(stream_error)
    }

    fn receive(&mut self, seq: u64) -> Result<(), LinkError> {
        self.reader.read_exact(&mut self.message).map_err(stream_error)?;
        let mut stamp = [0; 8];
        stamp.copy_from_slice(&self.message[..8]);
        expect_seq(seq, u64::from_ne_bytes(stamp))
    }
}

/// A stream's I/O error as a link error: the peer closed, hung, or the call failed.
fn stream_error(error: io::Error) -> LinkError {
    match error.kind() {
        ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => {
            LinkError::Closed
        }
        ErrorKind::WouldBlock | ErrorKind::TimedOut => LinkError::Hung("a stream message"),
        _ => LinkError::Io(error),
    }
}

/// The open connections of one process, kept for the whole run; each payload size gets its
/// own [`Stream`] over duplicates of them.
#[derive(Debug, Default)]
pub struct Connections {
    /// (read end, write end).
    pipe: Option<(File, File)>,
    uds: Option<File>,
    tcp: Option<File>,
}

impl Connections {
    /// An end of `transport` (one of the stream transports) for `payload`-byte messages.
    pub fn link(&self, transport: Transport, payload: u64) -> Result<Stream, LinkError> {
        let (reader, writer) = match transport {
            Transport::Pipe => self.pipe.as_ref().map(|(reader, writer)| (reader, writer)),
            Transport::Uds => self.uds.as_ref().map(|socket| (socket, socket)),
            Transport::Tcp => self.tcp.as_ref().map(|socket| (socket, socket)),
            _ => None,
        }
        .ok_or(LinkError::Shmlane(format!("{transport} is not connected")))?;
        Ok(Stream {
            reader: reader.try_clone()?,
            writer: writer.try_clone()?,
            message: vec![0; payload as usize],
        })
    }

    /// The echo side's connections: the pipe is its stdin and stdout, the sockets are
    /// connected to the initiator's listeners.
    pub fn connect(
        pipe: bool,
        uds: Option<&Path>,
        tcp_port: Option<u16>,
    ) -> Result<Connections, LinkError> {
        let mut connections = Connections::default();
        if pipe {
            let stdin = io::stdin().as_fd().try_clone_to_owned()?;
            let stdout = io::stdout().as_fd().try_clone_to_owned()?;
            connections.pipe = Some((File::from(stdin), File::from(stdout)));
        }
        if let Some(path) = uds {
            let stream = UnixStream::connect(path)?;
            stream.set_read_timeout(Some(HANG))?;
            connections.uds = Some(File::from(OwnedFd::from(stream)));
        }
        if let Some(port) = tcp_port {
            let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(HANG))?;
            connections.tcp = Some(File::from(OwnedFd::from(stream)));
        }
        Ok(connections)
    }
}

/// The initiator's listening sockets, bound before the echo process starts. The socket file
/// is removed on drop.
#[derive(Debug)]
pub struct Listeners {
    uds: Option<(UnixListener, PathBuf)>,
    tcp: Option<TcpListener>,
}

impl Listeners {
    /// Binds a Unix socket (in the temporary directory) and a loopback TCP port, as asked.
    pub fn bind(uds: bool, tcp: bool) -> io::Result<Listeners> {
        let uds = if uds {
            let path =
                std::env::temp_dir().join(format!("shmlane-bench-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path)?;
            listener.set_nonblocking(true)?;
            Some((listener, path))
        } else {
            None
        };
        let tcp = if tcp {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            listener.set_nonblocking(true)?;
            Some(listener)
        } else {
            None
        };
        Ok(Listeners { uds, tcp })
    }

    /// The Unix socket's path, for the echo process.
    pub fn uds_path(&self) -> Option<&Path> {
        self.uds.as_ref().map(|(_, path)| path.as_path())
    }

    /// The TCP port, for the echo process.
    pub fn tcp_port(&self) -> io::Result<Option<u16>> {
        self.tcp
            .as_ref()
            .map(|listener| listener.local_addr().map(|address| address.port()))
            .transpose()
    }

    /// Accepts the echo process's connections (giving up if it exits or after [`HANG`]) and
    /// takes its stdin and stdout as the pipe.
    pub fn accept(
        &self,
        child: &mut Child,
        pipe: Option<(ChildStdin, ChildStdout)>,
    ) -> Result<Connections, LinkError> {
        let deadline = Instant::now() + HANG;
        let mut connections = Connections {
            pipe: pipe.map(|(stdin, stdout)| {
                (File::from(OwnedFd::from(stdout)), File::from(OwnedFd::from(stdin)))
            }),
            ..Connections::default()
        };
        if let Some((listener, _)) = &self.uds {
            let stream =
                accept_until(child, deadline, || listener.accept().map(|(stream, _)| stream))?;
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(Some(HANG))?;
            connections.uds = Some(File::from(OwnedFd::from(stream)));
        }
        if let Some(listener) = &self.tcp {
            let stream =
                accept_until(child, deadline, || listener.accept().map(|(stream, _)| stream))?;
            stream.set_nonblocking(false)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(HANG))?;
            connections.tcp = Some(File::from(OwnedFd::from(stream)));
        }
        Ok(connections)
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        if let Some((_, path)) = &self.uds {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Polls a non-blocking `accept` until it yields a connection, the child exits, or `deadline`.
fn accept_until<S>(
    child: &mut Child,
    deadline: Instant,
    mut accept: impl FnMut() -> io::Result<S>,
) -> Result<S, LinkError> {
    loop {
        match accept() {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        if child.try_wait()?.is_some() {
            return Err(LinkError::Closed);
        }
        if Instant::now() >= deadline {
            return Err(LinkError::Hung("the echo process to connect"));
        }
        thread::sleep(Duration::from_millis(1));
    }
}
