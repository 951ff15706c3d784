//! Handing a memfd segment to another process over a Unix socket (`SCM_RIGHTS`).
//!
//! The receiver trusts nothing it is given: it checks the sender's uid (`SO_PEERCRED`), that
//! the descriptor is sealed against shrinking and growing (so no peer can ever make its mapping
//! `SIGBUS`), and then validates the segment header as `open` does.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::SealFlags;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::segment::Location;
use crate::{OpenError, Segment, SegmentBuilder, SegmentName, os};

/// The one data byte that carries the descriptor (a stream needs at least one byte).
const TAG: u8 = b'S';

/// Errors from [`Segment::send_fd`] and [`SegmentBuilder::receive`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Only sealed memfd segments may be passed: their size cannot change under the receiver.
    #[error("only memfd segments can be sent: create the segment with Backing::Memfd")]
    NotMemfd,
    /// The peer closed the socket or sent no descriptor.
    #[error("the peer sent no segment descriptor (socket closed or wrong protocol)")]
    NoDescriptor,
    /// The sender runs as another user than allowed.
    #[error("the sender runs as uid {found}, expected uid {expected}: refusing its segment")]
    UntrustedPeer {
        /// Allowed uid.
        expected: u32,
        /// The sender's uid.
        found: u32,
    },
    /// The descriptor lacks the seals that fix its size.
    #[error(
        "the received descriptor has seals {found:?}, missing shrink/grow/seal: a peer could \
         resize it and crash us with SIGBUS; refusing it"
    )]
    NotSealed {
        /// Seals found.
        found: SealFlags,
    },
    /// The received segment failed validation.
    #[error("the received segment is invalid: {0}")]
    Open(#[from] OpenError),
    /// A socket call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}

impl Segment {
    /// Sends this memfd segment's descriptor over a connected Unix socket.
    pub fn send_fd(&self, socket: impl AsFd) -> Result<(), TransferError> {
        if self.path().is_some() {
            return Err(TransferError::NotMemfd);
        }
        let fds = [self.fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(TransferError::Io {
                op: "sendmsg",
                source: std::io::Error::other("control buffer too small"),
            });
        }
        // NOSIGNAL: a receiver that died must give us EPIPE, not a SIGPIPE that kills us.
        rustix::net::sendmsg(socket, &[IoSlice::new(&[TAG])], &mut control, SendFlags::NOSIGNAL)
            .map_err(|errno| TransferError::Io { op: "sendmsg", source: errno.into() })?;
        Ok(())
    }
}

impl SegmentBuilder {
    /// Receives a memfd segment sent with [`Segment::send_fd`], checks the sender, the seals
    /// and the header (the builder's fingerprint, owner, size limit, `open_timeout`, read-only
    /// choice via `writable`), and maps it. The builder's name labels the segment locally.
    pub fn receive(self, socket: impl AsFd, writable: bool) -> Result<Segment, TransferError> {
        let name = SegmentName::new(&self.name).map_err(OpenError::from)?;
        let peer = rustix::net::sockopt::socket_peercred(&socket).map_err(|errno| {
            TransferError::Io { op: "getsockopt(SO_PEERCRED)", source: errno.into() }
        })?;
        let fd = receive_fd(&socket)?;
        let found = peer.uid.as_raw();
        if let Some(expected) = self.allowed_uid().filter(|&uid| uid != found) {
            return Err(TransferError::UntrustedPeer { expected, found });
        }
        let seals = os::seals(&fd);
        if !seals.contains(os::REQUIRED_SEALS) {
            return Err(TransferError::NotSealed { found: seals });
        }
        Ok(self.attach_fd(fd, name, Location::Memfd, writable)?)
    }
}

/// Receives one message and takes the first descriptor it carries; any others are closed.
fn receive_fd(socket: impl AsFd) -> Result<OwnedFd, TransferError> {
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|errno| TransferError::Io { op: "recvmsg", source: errno.into() })?;
    let mut first = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for fd in fds {
                first.get_or_insert(fd);
            }
        }
    }
    match first {
        Some(fd) if received.bytes == 1 && byte[0] == TAG => Ok(fd),
        _ => Err(TransferError::NoDescriptor),
    }
}
