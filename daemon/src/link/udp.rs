//! Batched UDP for the one-way link: `sendmmsg`/`recvmmsg` over reusable
//! buffers.
//!
//! One syscall per datagram caps a link at a few hundred MB/s, so datagrams
//! move in batches. A one-way link has no retransmission and no one to tell
//! about a failed send: a send error is just loss, which the forward error
//! correction repairs, so the sender counts errors and goes on instead of
//! failing. The receiver drops datagrams longer than the link's MTU allows.

pub use crate::link::batch::DatagramBatch;
use crate::link::gro::{GroBuffer, MESSAGES};
use nix::cmsg_space;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    getsockopt, recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned,
    MsgFlags, MultiHeaders, SockaddrStorage,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

/// Retries of a send that failed with EINTR, EAGAIN or ENOBUFS before its
/// datagram is dropped. Small: a sender that stalls here falls behind its
/// pacing, and a dropped datagram costs only FEC repair.
pub const SEND_RETRIES: u32 = 3;
/// Longest pause between two such retries.
const SEND_BACKOFF_MAX: Duration = Duration::from_millis(1);
/// The kernel keeps buffer sizes in an `int` and doubles what it is given.
const SOCKET_BUFFER_MAX_REQUEST: usize = (i32::MAX / 2) as usize;

/// Why a UDP operation failed. Send errors never appear here (see
/// [`BatchSender::send`]).
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    /// The socket could not be created or bound.
    #[error("cannot bind a UDP socket to {addr}: {source}; check that the address is configured on this host (`ip addr`), that no other process holds the port, and for ports below 1024 that ferryd may bind them")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A socket option could not be set or read.
    #[error("cannot set {option} on the UDP socket {addr}: {source}; check the kernel's net.core sysctls and ferryd's capabilities")]
    SocketOption {
        /// The socket's address.
        addr: SocketAddr,
        /// Which option.
        option: &'static str,
        /// The OS error.
        source: Errno,
    },
    /// Waiting for datagrams failed.
    #[error("waiting for datagrams failed: {source}; restart ferryd, and report it if it recurs")]
    Poll {
        /// The OS error.
        source: Errno,
    },
    /// A socket became unusable for receiving.
    #[error("receiving on {addr} failed: {source}; the socket is unusable, restart ferryd")]
    Receive {
        /// The socket's address (or "unknown").
        addr: String,
        /// The OS error.
        source: Errno,
    },
    /// The caller passed arguments that cannot work.
    #[error("UDP receiver misconfigured: {what}; this is a ferryd bug, please report it")]
    Invalid {
        /// What is wrong.
        what: String,
    },
}

/// Socket buffer sizes after [`bind_socket`], in the units of the request
/// (the kernel's doubling taken out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferReport {
    /// Bytes asked for.
    pub requested: usize,
    /// SO_RCVBUF granted.
    pub rcvbuf: usize,
    /// SO_SNDBUF granted.
    pub sndbuf: usize,
    /// The kernel granted less than asked: raise `net.core.rmem_max` /
    /// `net.core.wmem_max`, or run with CAP_NET_ADMIN, or expect loss at
    /// high rates.
    pub capped: bool,
}

impl BufferReport {
    fn from_kernel(requested: usize, rcv_reported: usize, snd_reported: usize) -> BufferReport {
        let rcvbuf = rcv_reported / 2;
        let sndbuf = snd_reported / 2;
        BufferReport {
            requested,
            rcvbuf,
            sndbuf,
            capped: rcvbuf < requested || sndbuf < requested,
        }
    }
}

/// Binds a UDP socket on `addr` and sizes its buffers to `buffer_bytes`.
///
/// The privileged SO_*BUFFORCE options are tried first because the usual
/// `net.core.rmem_max` (a few hundred KiB) is far too small for a link that
/// cannot ask for anything to be sent again; without CAP_NET_ADMIN the plain
/// options apply and the report says when the kernel capped them.
pub fn bind_socket(
    addr: SocketAddr,
    buffer_bytes: usize,
) -> Result<(UdpSocket, BufferReport), UdpError> {
    let socket = UdpSocket::bind(addr).map_err(|source| UdpError::Bind { addr, source })?;
    let local = socket.local_addr().unwrap_or(addr);
    let request = buffer_bytes.min(SOCKET_BUFFER_MAX_REQUEST);
    let opt_err = |option, source| UdpError::SocketOption {
        addr: local,
        option,
        source,
    };
    if setsockopt(&socket, sockopt::RcvBufForce, &request).is_err() {
        setsockopt(&socket, sockopt::RcvBuf, &request).map_err(|e| opt_err("SO_RCVBUF", e))?;
    }
    if setsockopt(&socket, sockopt::SndBufForce, &request).is_err() {
        setsockopt(&socket, sockopt::SndBuf, &request).map_err(|e| opt_err("SO_SNDBUF", e))?;
    }
    let rcv = getsockopt(&socket, sockopt::RcvBuf).map_err(|e| opt_err("SO_RCVBUF", e))?;
    let snd = getsockopt(&socket, sockopt::SndBuf).map_err(|e| opt_err("SO_SNDBUF", e))?;
    Ok((socket, BufferReport::from_kernel(buffer_bytes, rcv, snd)))
}

/// Reads how many datagrams the kernel dropped on a set of sockets
/// because their receive buffers were full: loss on this host, before
/// ferryd read them, which no other counter sees (the FEC repairs some,
/// the rest fail packages). From the `drops` column of
/// `/proc/self/net/udp` and `udp6`, matched by socket inode.
///
/// It holds a duplicate of each socket, so the sockets (and their rows)
/// live as long as the probe: the last reading, after the receive thread
/// closed its side, still counts every drop.
#[derive(Debug, Default)]
pub struct KernelDropProbe {
    inodes: Vec<u64>,
    sockets: Vec<std::fs::File>,
}

impl KernelDropProbe {
    /// Datagrams dropped since the sockets were opened, summed; `None`
    /// when the kernel's tables cannot be read (no procfs).
    pub fn dropped(&self) -> Option<u64> {
        let mut total = 0u64;
        let mut read_any = false;
        for table in ["/proc/self/net/udp", "/proc/self/net/udp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            read_any = true;
            total += drops_of(&text, &self.inodes);
        }
        read_any.then_some(total)
    }
}

/// Sums the `drops` column (the last) of the rows whose inode (the
/// tenth column) is one of `inodes`; the header and odd rows are skipped.
fn drops_of(table: &str, inodes: &[u64]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let inode: u64 = cols.get(9)?.parse().ok()?;
            let drops: u64 = cols.last()?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .sum()
}

/// The outcome of one [`BatchSender::send`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams given up after an error.
    pub dropped: usize,
    /// Failed send calls (each retry counts).
    pub transient_errors: u64,
    /// UDP messages the kernel took: one per datagram without GSO, one per
    /// super-packet with it.
    pub messages: usize,
}

/// Cumulative send figures, errors by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendCounters {
    /// Datagrams the kernel took.
    pub sent: u64,
    /// Datagrams given up.
    pub dropped: u64,
    /// UDP messages the kernel took (fewer than `sent` with GSO).
    pub messages: u64,
    /// Times the kernel refused GSO (after the first, GSO is off).
    pub gso_refused: u64,
    /// EINTR (retried).
    pub interrupted: u64,
    /// EAGAIN / EWOULDBLOCK (retried).
    pub would_block: u64,
    /// ENOBUFS: a device queue was full (retried).
    pub no_buffers: u64,
    /// EPERM / EACCES: a firewall rule dropped it in the output path, or the
    /// destination is a broadcast address.
    pub permission: u64,
    /// ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ENETDOWN, EHOSTDOWN: an ICMP
    /// error or a missing route; the link or the peer's interface is down.
    pub unreachable: u64,
    /// Anything else (EMSGSIZE, EINVAL, ...): likely a configuration or
    /// programming error; see the log for the first one.
    pub other: u64,
}

impl SendCounters {
    /// All failed send calls.
    pub fn errors(&self) -> u64 {
        self.interrupted
            + self.would_block
            + self.no_buffers
            + self.permission
            + self.unreachable
            + self.other
    }

    /// Counts `e` in its class; returns whether it is worth retrying and
    /// whether it is the first of its class (worth a log line).
    fn count(&mut self, e: Errno) -> (bool, bool) {
        let (slot, retry) = match e {
            Errno::EINTR => (&mut self.interrupted, true),
            Errno::EAGAIN => (&mut self.would_block, true),
            Errno::ENOBUFS => (&mut self.no_buffers, true),
            Errno::EPERM | Errno::EACCES => (&mut self.permission, false),
            Errno::ECONNREFUSED
            | Errno::EHOSTUNREACH
            | Errno::ENETUNREACH
            | Errno::ENETDOWN
            | Errno::EHOSTDOWN => (&mut self.unreachable, false),
            _ => (&mut self.other, false),
        };
        *slot += 1;
        (retry, *slot == 1)
    }
}

/// Most bytes one GSO message may carry: the UDP payload of an IPv4
/// packet (65 535 − 20 − 8), less slack for IP options.
const GSO_MAX_BYTES: usize = 65_000;
/// Most segments the kernel accepts in one GSO message (`UDP_MAX_SEGMENTS`
/// of Linux 4.18 to 6.x).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// One UDP message of a send: datagrams `first..end` of the batch. Several
/// datagrams travel as one GSO super-packet, cut back into datagrams of
/// `segment` bytes by the kernel (or the NIC) on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Message {
    first: usize,
    end: usize,
    /// Length of the first datagram: every one but the last has it.
    segment: usize,
}

impl Message {
    fn datagrams(&self) -> usize {
        self.end - self.first
    }
}

/// Cuts datagrams `from..` of `batch` into messages of at most `segments`
/// consecutive datagrams. The kernel's GSO rule: every segment but the last
/// has the first one's length, the last may be shorter; so a message ends
/// after a shorter datagram, before a longer one, and within
/// [`GSO_MAX_BYTES`].
fn messages(batch: &DatagramBatch, from: usize, segments: usize) -> Vec<Message> {
    let segments = segments.clamp(1, GSO_MAX_SEGMENTS);
    let mut out = Vec::with_capacity((batch.len() - from).div_ceil(segments));
    let mut i = from;
    while i < batch.len() {
        let segment = batch.get(i).len();
        let mut end = i + 1;
        let mut bytes = segment;
        while end < batch.len()
            && end - i < segments
            && batch.get(end - 1).len() == segment
            && batch.get(end).len() <= segment
            && bytes + batch.get(end).len() <= GSO_MAX_BYTES
        {
            bytes += batch.get(end).len();
            end += 1;
        }
        out.push(Message {
            first: i,
            end,
            segment,
        });
        i = end;
    }
    out
}

/// Sends batches of datagrams round-robin over the link's destinations.
#[derive(Debug)]
pub struct BatchSender {
    socket: UdpSocket,
    destinations: Vec<SockaddrStorage>,
    /// Index of the destination the next message goes to.
    next_destination: usize,
    /// Datagrams per GSO message (1: GSO off).
    gso_segments: usize,
    counters: SendCounters,
}

/// How one round of `sendmmsg` calls over a batch ended.
enum Round {
    /// Every datagram was sent or given up.
    Done,
    /// The kernel refused GSO (EIO: the route's device has no UDP checksum
    /// offload; EMSGSIZE, or EINVAL before Linux 6.x: a segment does not fit
    /// the route's MTU, which plain datagrams survive by IP fragmentation)
    /// at this datagram, with this error: send the rest without it.
    GsoRefused(usize, Errno),
}

impl BatchSender {
    /// A sender on `socket`. Message `k` goes to destination `k mod n`,
    /// continuing across calls, so several egress ports share the load.
    /// With no destinations the socket must be connected; datagrams go to
    /// its peer. GSO is off until [`BatchSender::set_gso_segments`].
    pub fn new(socket: UdpSocket, destinations: Vec<SocketAddr>) -> BatchSender {
        BatchSender {
            socket,
            destinations: destinations
                .into_iter()
                .map(SockaddrStorage::from)
                .collect(),
            next_destination: 0,
            gso_segments: 1,
            counters: SendCounters::default(),
        }
    }

    /// Sends up to `segments` consecutive datagrams of a batch as one UDP
    /// GSO message (`UDP_SEGMENT`): one trip through the kernel's UDP and IP
    /// output paths instead of one per datagram. On the wire they are
    /// separate datagrams, but a device that passes GSO packets whole (veth,
    /// loopback) may lose them together, so the caller keeps `segments`
    /// within the loss budget's burst, which the sender's interleaving
    /// already spreads over the blocks. 1 switches GSO off; at most
    /// [`GSO_MAX_SEGMENTS`].
    pub fn set_gso_segments(&mut self, segments: usize) {
        self.gso_segments = segments.clamp(1, GSO_MAX_SEGMENTS);
    }

    /// Datagrams per GSO message now (1: off, or the kernel refused it).
    pub fn gso_segments(&self) -> usize {
        self.gso_segments
    }

    /// The socket, e.g. for its local address.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Cumulative figures since creation.
    pub fn counters(&self) -> SendCounters {
        self.counters
    }

    /// Sends every datagram of `batch` with as few `sendmmsg` calls as the
    /// kernel allows. Never fails: on a one-way link a datagram that cannot
    /// be sent is loss like any other, repaired by FEC or a resend. EINTR,
    /// EAGAIN and ENOBUFS are retried [`SEND_RETRIES`] times with a short
    /// back-off, then the message is dropped; other errors drop it at once.
    /// If the kernel refuses GSO, GSO is switched off for good (logged
    /// once) and the rest goes one datagram per message.
    pub fn send(&mut self, batch: &DatagramBatch) -> SendReport {
        let mut report = SendReport::default();
        let mut from = 0;
        while from < batch.len() {
            let plan = messages(batch, from, self.gso_segments);
            match self.send_messages(batch, &plan, &mut report) {
                Round::Done => break,
                Round::GsoRefused(at, e) => {
                    tracing::warn!(
                        error = %e,
                        segments = self.gso_segments,
                        "the kernel refused UDP GSO on the link socket; sending one datagram per message from now on (slower, nothing lost); a device on the route without UDP checksum offload, or with an MTU below the link's `mtu`, does this"
                    );
                    self.gso_segments = 1;
                    self.counters.gso_refused += 1;
                    from = at;
                }
            }
        }
        self.counters.sent += report.sent as u64;
        self.counters.dropped += report.dropped as u64;
        self.counters.messages += report.messages as u64;
        report
    }

    /// One round over `plan`: `sendmmsg` calls, each over a run of
    /// messages with one segment length (the `UDP_SEGMENT` value is shared
    /// by the messages of a call).
    fn send_messages(
        &mut self,
        batch: &DatagramBatch,
        plan: &[Message],
        report: &mut SendReport,
    ) -> Round {
        let gso = self.gso_segments > 1;
        // One vector of iovecs for the batch, each message a slice of it:
        // two allocations per batch, not one per message.
        let from = plan.first().map_or(0, |m| m.first);
        let iovecs: Vec<IoSlice<'_>> = (from..batch.len())
            .map(|i| IoSlice::new(batch.get(i)))
            .collect();
        let slices: Vec<&[IoSlice<'_>]> = plan
            .iter()
            .map(|m| &iovecs[m.first - from..m.end - from])
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = if self.destinations.is_empty() {
            vec![None; plan.len()]
        } else {
            let d = self.destinations.len();
            let a = (0..plan.len())
                .map(|k| Some(self.destinations[(self.next_destination + k) % d]))
                .collect();
            self.next_destination = (self.next_destination + plan.len()) % d;
            a
        };
        let fd = self.socket.as_raw_fd();
        let mut i = 0;
        let mut retries = 0;
        while i < plan.len() {
            // With GSO, the run of messages sharing this one's segment
            // length (`UDP_SEGMENT` is one value per call); without, the rest.
            let segment = plan[i].segment;
            let run = if gso {
                plan[i..]
                    .iter()
                    .take_while(|m| m.segment == segment)
                    .count()
            } else {
                plan.len() - i
            };
            let size = u16::try_from(segment).unwrap_or(u16::MAX);
            let segments = [ControlMessage::UdpGsoSegments(&size)];
            let cmsgs: &[ControlMessage<'_>] = if gso { &segments } else { &[] };
            let mut headers =
                MultiHeaders::<SockaddrStorage>::preallocate(run, gso.then(|| cmsg_space!(u16)));
            let result = sendmmsg(
                fd,
                &mut headers,
                &slices[i..i + run],
                &addrs[i..i + run],
                cmsgs,
                MsgFlags::empty(),
            )
            .map(|r| r.count());
            match result {
                Ok(k) if k > 0 => {
                    let k = k.min(run);
                    report.messages += k;
                    report.sent += plan[i..i + k].iter().map(Message::datagrams).sum::<usize>();
                    i += k;
                    retries = 0;
                }
                // The kernel took nothing without an error; count it as loss
                // rather than spin.
                Ok(_) => {
                    report.dropped += plan[i].datagrams();
                    i += 1;
                    retries = 0;
                }
                Err(e @ (Errno::EIO | Errno::EINVAL | Errno::EMSGSIZE)) if gso => {
                    report.transient_errors += 1;
                    return Round::GsoRefused(plan[i].first, e);
                }
                Err(e) => {
                    report.transient_errors += 1;
                    let (retry, first) = self.counters.count(e);
                    if first {
                        tracing::warn!(
                            error = %e,
                            destination = %destination_name(addrs[i].as_ref(), &self.socket),
                            "UDP send failed; counting it as loss and going on (the first error of this kind is logged, the rest are counted in the status)"
                        );
                    }
                    if retry && retries < SEND_RETRIES {
                        retries += 1;
                        back_off(retries);
                        continue;
                    }
                    report.dropped += plan[i].datagrams();
                    i += 1;
                    retries = 0;
                }
            }
        }
        Round::Done
    }
}

/// Where a datagram went, for a log line: the address, or the connected
/// peer when there is none.
fn destination_name(destination: Option<&SockaddrStorage>, socket: &UdpSocket) -> String {
    let addr = match destination {
        Some(d) => d
            .as_sockaddr_in()
            .map(|a| SocketAddr::V4((*a).into()))
            .or_else(|| d.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))),
        None => socket.peer_addr().ok(),
    };
    addr.map_or_else(|| "unknown".to_string(), |a| a.to_string())
}

fn back_off(attempt: u32) {
    match attempt {
        1 => std::thread::yield_now(),
        n => std::thread::sleep((SEND_BACKOFF_MAX / 10 * 10u32.pow(n - 2)).min(SEND_BACKOFF_MAX)),
    }
}

/// Cumulative receive figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvCounters {
    /// Datagrams handed to the caller.
    pub received: u64,
    /// Datagrams longer than the slot, dropped.
    pub oversize: u64,
    /// Receive errors that did not stop the socket (pending ICMP errors,
    /// ENOMEM, ...).
    pub errors: u64,
    /// With GRO: messages that carried more than one datagram.
    pub coalesced: u64,
}

/// Receives batches of datagrams from one or more bound sockets.
#[derive(Debug)]
pub struct BatchReceiver {
    sockets: Vec<UdpSocket>,
    capacity: usize,
    max_len: usize,
    /// Socket read first next time, so a busy socket cannot starve others.
    next_socket: usize,
    counters: RecvCounters,
    /// With GRO on ([`BatchReceiver::enable_gro`]): where messages land
    /// before they are cut into datagrams.
    gro: Option<Box<GroBuffer>>,
}

/// What draining one socket found.
enum Drained {
    /// Nothing more waiting (or the batch is full).
    Empty,
    /// A fatal error.
    Failed(Errno),
}

impl BatchReceiver {
    /// A receiver over `sockets` filling at most `capacity` datagrams per
    /// call; datagrams over `max_len` bytes are dropped.
    pub fn new(
        sockets: Vec<UdpSocket>,
        capacity: usize,
        max_len: usize,
    ) -> Result<BatchReceiver, UdpError> {
        if sockets.is_empty() || capacity == 0 || max_len == 0 {
            return Err(UdpError::Invalid {
                what: format!(
                    "{} sockets, capacity {capacity}, max_len {max_len} (each must be above 0)",
                    sockets.len()
                ),
            });
        }
        Ok(BatchReceiver {
            sockets,
            capacity,
            max_len,
            next_socket: 0,
            counters: RecvCounters::default(),
            gro: None,
        })
    }

    /// Turns UDP GRO on for every socket: a super-packet then arrives as
    /// one message (see [`crate::link::gro`]). All or none: a socket with
    /// GRO on must be read into large slots, so when one socket refuses,
    /// the ones already switched are switched back and the error returned
    /// (receiving goes on as before).
    pub fn enable_gro(&mut self) -> Result<(), UdpError> {
        for (i, s) in self.sockets.iter().enumerate() {
            if let Err(source) = setsockopt(s, sockopt::UdpGroSegment, &true) {
                for earlier in &self.sockets[..i] {
                    // Back to the state this receiver reads correctly; a
                    // socket that refuses even this is not one that took GRO.
                    let _ = setsockopt(earlier, sockopt::UdpGroSegment, &false);
                }
                return Err(UdpError::SocketOption {
                    addr: s
                        .local_addr()
                        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                    option: "UDP_GRO",
                    source,
                });
            }
        }
        self.gro = Some(Box::default());
        Ok(())
    }

    /// Whether GRO is on.
    pub fn gro(&self) -> bool {
        self.gro.is_some()
    }

    /// The sockets' local addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// What reads the kernel's drop counts of these sockets.
    pub fn drop_probe(&self) -> KernelDropProbe {
        let mut probe = KernelDropProbe::default();
        for s in &self.sockets {
            let Ok(fd) = s.as_fd().try_clone_to_owned() else {
                continue;
            };
            let file = std::fs::File::from(fd);
            if let Ok(m) = file.metadata() {
                probe.inodes.push(std::os::unix::fs::MetadataExt::ino(&m));
                probe.sockets.push(file);
            }
        }
        probe
    }

    /// Cumulative figures since creation.
    pub fn counters(&self) -> RecvCounters {
        self.counters
    }

    /// Clears `batch` and fills it with waiting datagrams, waiting up to
    /// `timeout` for the first. Returns how many arrived (0 on timeout or
    /// when a signal interrupted the wait, so the caller can look at its
    /// shutdown flag).
    pub fn recv(
        &mut self,
        batch: &mut DatagramBatch,
        timeout: Duration,
    ) -> Result<usize, UdpError> {
        batch.clear();
        if batch.max_len() < self.max_len || batch.capacity() == 0 {
            return Err(UdpError::Invalid {
                what: format!(
                    "batch slots of {} bytes for datagrams up to {} bytes",
                    batch.max_len(),
                    self.max_len
                ),
            });
        }
        // Under load datagrams are already waiting: read first and only
        // poll when there was nothing, one syscall per batch instead of two.
        self.fill(batch)?;
        if !batch.is_empty() || timeout.is_zero() {
            return Ok(batch.len());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Round up so a sub-millisecond wait does not become a busy loop.
            let ms = left.as_micros().div_ceil(1000);
            let wait = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            let mut fds: Vec<PollFd<'_>> = self
                .sockets
                .iter()
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, wait) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(Errno::EINTR) => return Ok(0),
                Err(source) => return Err(UdpError::Poll { source }),
            }
            if let Some(i) = fds
                .iter()
                .position(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLNVAL)))
            {
                return Err(UdpError::Receive {
                    addr: self.addr_name(i),
                    source: Errno::EBADF,
                });
            }
            drop(fds);
            self.fill(batch)?;
            // Readable but nothing kept (an oversize datagram, an ICMP
            // error): wait on for the rest of the timeout.
            if !batch.is_empty() || Instant::now() >= deadline {
                return Ok(batch.len());
            }
        }
    }

    /// Reads waiting datagrams from every socket, starting at a rotating
    /// one, until the batch is full or all are drained.
    fn fill(&mut self, batch: &mut DatagramBatch) -> Result<(), UdpError> {
        let limit = self.capacity.min(batch.capacity());
        if let Some(gro) = self.gro.as_mut() {
            // Datagrams of messages read last time first.
            let split = gro.split_into(batch, limit, self.max_len);
            self.counters.received += split.datagrams;
            self.counters.oversize += split.oversize;
        }
        let n = self.sockets.len();
        let start = self.next_socket;
        self.next_socket = (self.next_socket + 1) % n;
        for k in 0..n {
            let i = (start + k) % n;
            if batch.len() >= self.capacity.min(batch.capacity()) {
                break;
            }
            if let Drained::Failed(source) = self.drain(i, batch) {
                return Err(UdpError::Receive {
                    addr: self.addr_name(i),
                    source,
                });
            }
        }
        Ok(())
    }

    fn drain(&mut self, i: usize, batch: &mut DatagramBatch) -> Drained {
        if self.gro.is_some() {
            return self.drain_gro(i, batch);
        }
        let fd = self.sockets[i].as_raw_fd();
        loop {
            let room = self
                .capacity
                .min(batch.capacity())
                .saturating_sub(batch.len());
            if room == 0 {
                return Drained::Empty;
            }
            let mut results: Vec<(usize, bool)> = Vec::with_capacity(room);
            let outcome = {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> = batch
                    .free_slots()
                    .take(room)
                    .map(|s| [IoSliceMut::new(s)])
                    .collect();
                let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(room, None);
                recvmmsg(
                    fd,
                    &mut headers,
                    slices.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                )
                .map(|msgs| {
                    for m in msgs {
                        let truncated = m.flags.contains(MsgFlags::MSG_TRUNC);
                        results.push((m.bytes, !truncated && m.bytes <= self.max_len));
                    }
                })
            };
            match outcome {
                Ok(()) => {
                    let kept = results.iter().filter(|(_, keep)| *keep).count();
                    self.counters.received += kept as u64;
                    self.counters.oversize += (results.len() - kept) as u64;
                    batch.commit_received(&results);
                    // A short read means the queue is empty: save the
                    // EAGAIN round trip.
                    if results.len() < room {
                        return Drained::Empty;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return self.receive_error(i, e),
            }
        }
    }

    /// What a failed `recvmmsg` means.
    fn receive_error(&mut self, i: usize, e: Errno) -> Drained {
        match e {
            Errno::EAGAIN => Drained::Empty,
            Errno::EBADF | Errno::ENOTSOCK | Errno::EFAULT | Errno::EINVAL => Drained::Failed(e),
            // A pending ICMP error or a memory shortage: reading it cleared
            // it; the next datagrams are fine.
            _ => {
                self.counters.errors += 1;
                if self.counters.errors == 1 {
                    tracing::warn!(error = %e, socket = %self.addr_name(i), "UDP receive error; counted, receiving goes on");
                }
                Drained::Empty
            }
        }
    }

    /// [`BatchReceiver::drain`] with GRO: messages into the GRO slots,
    /// then cut into the batch; what does not fit waits for the next call.
    fn drain_gro(&mut self, i: usize, batch: &mut DatagramBatch) -> Drained {
        let fd = self.sockets[i].as_raw_fd();
        let limit = self.capacity.min(batch.capacity());
        let Some(mut gro) = self.gro.take() else {
            return Drained::Empty;
        };
        let drained = loop {
            if batch.len() >= limit {
                break Drained::Empty;
            }
            let Some(slots) = gro.slots() else {
                // Still holding datagrams the batch had no room for.
                break Drained::Empty;
            };
            let mut got: Vec<(usize, bool, Option<usize>)> = Vec::with_capacity(MESSAGES);
            let outcome = {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                    slots.map(|s| [IoSliceMut::new(s)]).collect();
                let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
                    slices.len(),
                    Some(cmsg_space!(libc::c_int)),
                );
                recvmmsg(
                    fd,
                    &mut headers,
                    slices.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                )
                .map(|msgs| {
                    for m in msgs {
                        let segment = m.cmsgs().ok().and_then(|mut c| {
                            c.find_map(|c| match c {
                                ControlMessageOwned::UdpGroSegments(s) => usize::try_from(s).ok(),
                                _ => None,
                            })
                        });
                        let whole = !m.flags.contains(MsgFlags::MSG_TRUNC);
                        got.push((m.bytes, whole, segment));
                    }
                })
            };
            match outcome {
                Ok(()) => {
                    for (slot, &(len, whole, segment)) in got.iter().enumerate() {
                        if !whole {
                            self.counters.oversize += 1;
                            continue;
                        }
                        if segment.is_some_and(|s| s < len) {
                            self.counters.coalesced += 1;
                        }
                        gro.hold(slot, len, segment);
                    }
                    let split = gro.split_into(batch, limit, self.max_len);
                    self.counters.received += split.datagrams;
                    self.counters.oversize += split.oversize;
                    if got.len() < MESSAGES {
                        break Drained::Empty;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => break self.receive_error(i, e),
            }
        };
        self.gro = Some(gro);
        drained
    }

    fn addr_name(&self, i: usize) -> String {
        self.sockets
            .get(i)
            .and_then(|s| s.local_addr().ok())
            .map_or_else(|| "unknown".to_string(), |a| a.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn loopback(buffer: usize) -> UdpSocket {
        bind_socket("127.0.0.1:0".parse().unwrap(), buffer)
            .unwrap()
            .0
    }

    #[test]
    fn datagrams_the_kernel_dropped_on_a_full_socket_are_counted() {
        // A socket with the smallest buffer the kernel grants, never read:
        // most of a burst on loopback is dropped at the socket.
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Connected to the sender: datagrams other tests of this process
        // send to a port that was theirs and is now this socket's do not
        // reach it (they made this test count up to twice its 200).
        rx.connect(tx.local_addr().unwrap()).unwrap();
        setsockopt(&rx, sockopt::RcvBuf, &4096).unwrap();
        let to = rx.local_addr().unwrap();
        let receiver = BatchReceiver::new(vec![rx], 8, 2048).unwrap();
        let probe = receiver.drop_probe();
        assert_eq!(probe.dropped(), Some(0), "a new socket has dropped nothing");
        for _ in 0..200 {
            tx.send_to(&[7u8; 1000], to).unwrap();
        }
        let dropped = probe.dropped().expect("procfs");
        assert!(dropped > 100 && dropped <= 200, "{dropped}");
        // Another socket's drops are not ours.
        assert_eq!(KernelDropProbe::default().dropped(), Some(0));
    }

    #[test]
    fn the_drops_column_is_read_by_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            \x20 1: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
            \x20 2: 0100007F:A1B3 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 5\n\
            garbage\n";
        assert_eq!(drops_of(table, &[4242]), 17);
        assert_eq!(drops_of(table, &[4242, 4343]), 22);
        assert_eq!(drops_of(table, &[1]), 0);
    }

    /// Datagram `i`: its index then a pattern, length varying with `i`.
    fn datagram(i: u32, max_len: usize) -> Vec<u8> {
        let len = 4 + (i as usize * 37) % (max_len - 4);
        let mut d = i.to_be_bytes().to_vec();
        d.extend((0..len - 4).map(|k| (k as u32 ^ i) as u8));
        d
    }

    /// Receives until `want` datagrams arrived or `WAIT` passed.
    fn receive_all(rx: &mut BatchReceiver, want: usize, max_len: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut batch = DatagramBatch::new(64, max_len);
        let deadline = Instant::now() + WAIT;
        while got.len() < want && Instant::now() < deadline {
            rx.recv(&mut batch, Duration::from_millis(100)).unwrap();
            got.extend(batch.iter().map(<[u8]>::to_vec));
        }
        got
    }

    #[test]
    fn sender_and_receiver_can_move_to_another_thread() {
        fn is_send<T: Send>() {}
        is_send::<BatchSender>();
        is_send::<BatchReceiver>();
        is_send::<DatagramBatch>();
    }

    #[test]
    fn batch_push_get_iter_clear() {
        let mut b = DatagramBatch::new(3, 8);
        assert!(b.is_empty());
        assert_eq!(b.push_with(|_| 0), 0, "0 means nothing pushed");
        assert!(b.is_empty());
        assert_eq!(
            b.push_with(|s| {
                assert_eq!(s.len(), 8);
                s[..3].copy_from_slice(b"abc");
                3
            }),
            3
        );
        assert!(b.push(b"12345678"));
        assert!(!b.push(b"123456789"), "longer than a slot");
        assert!(!b.push(b""), "empty");
        assert!(b.push(b"z"));
        assert!(b.is_full());
        assert_eq!(b.push_with(|_| panic!("not called when full")), 0);
        assert_eq!(b.len(), 3);
        assert_eq!(b.get(0), b"abc");
        assert_eq!(b.get(1), b"12345678");
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![&b"abc"[..], b"12345678", b"z"]
        );
        assert_eq!((&b).into_iter().len(), 3);
        assert_eq!(b.total_bytes(), 12);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.capacity(), 3);
        assert!(b.push(b"again"));
        assert_eq!(b.get(0), b"again");
    }

    #[test]
    fn commit_received_squeezes_out_dropped_datagrams() {
        let mut b = DatagramBatch::new(4, 4);
        assert!(b.push(b"a"));
        for (slot, fill) in b.free_slots().zip([b"bbbb", b"xxxx", b"cc\0\0"]) {
            slot.copy_from_slice(fill);
        }
        b.commit_received(&[(4, true), (4, false), (2, true)]);
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![&b"a"[..], b"bbbb", b"cc"]
        );
    }

    #[test]
    fn buffer_report_takes_out_the_kernel_doubling() {
        let r = BufferReport::from_kernel(1 << 20, 2 << 20, 2 << 20);
        assert_eq!((r.rcvbuf, r.sndbuf, r.capped), (1 << 20, 1 << 20, false));
        let r = BufferReport::from_kernel(8 << 20, 425_984, 2 << 20);
        assert_eq!(r.rcvbuf, 212_992);
        assert!(r.capped);
    }

    #[test]
    fn bind_socket_sizes_buffers() {
        let (s, report) = bind_socket("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert_eq!(report.requested, 1 << 20);
        // Root gets the FORCE options; others get up to rmem_max. Either way
        // the report and the capped flag must agree.
        assert_eq!(
            report.capped,
            report.rcvbuf < 1 << 20 || report.sndbuf < 1 << 20
        );
        assert!(report.rcvbuf > 0 && report.sndbuf > 0);
        assert_ne!(s.local_addr().unwrap().port(), 0);
    }

    #[test]
    fn bind_error_names_the_address() {
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind_socket(addr, 1 << 16).unwrap_err();
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }

    #[test]
    fn thousand_datagrams_arrive_intact_in_batches_of_64() {
        let max_len = 1472;
        let rx_sock = loopback(4 << 20);
        let dest = rx_sock.local_addr().unwrap();
        let mut rx = BatchReceiver::new(vec![rx_sock], 64, max_len).unwrap();
        let mut tx = BatchSender::new(loopback(4 << 20), vec![dest]);
        let mut batch = DatagramBatch::new(64, max_len);
        let mut got = Vec::new();
        let mut i = 0u32;
        while i < 1000 {
            batch.clear();
            while !batch.is_full() && i < 1000 {
                assert!(batch.push(&datagram(i, max_len)));
                i += 1;
            }
            let report = tx.send(&batch);
            assert_eq!(
                report,
                SendReport {
                    sent: batch.len(),
                    dropped: 0,
                    transient_errors: 0,
                    messages: batch.len(),
                }
            );
            // Drain as we go so the test never depends on buffer sizes.
            got.extend(receive_all(&mut rx, i as usize - got.len(), max_len));
        }
        assert_eq!(got.len(), 1000);
        for (k, d) in got.iter().enumerate() {
            assert_eq!(d, &datagram(k as u32, max_len), "datagram {k}");
        }
        assert_eq!(tx.counters().sent, 1000);
        assert_eq!(
            rx.counters(),
            RecvCounters {
                received: 1000,
                oversize: 0,
                errors: 0,
                coalesced: 0
            }
        );
    }

    /// Lengths of the messages `messages` cuts a batch of these lengths into.
    fn cut(lens: &[usize], segments: usize) -> Vec<Vec<usize>> {
        let mut batch = DatagramBatch::new(lens.len(), 1500);
        for &n in lens {
            assert!(batch.push(&vec![0u8; n]));
        }
        messages(&batch, 0, segments)
            .iter()
            .map(|m| {
                assert_eq!(m.segment, lens[m.first], "segment is the first length");
                lens[m.first..m.end].to_vec()
            })
            .collect()
    }

    #[test]
    fn gso_messages_keep_the_kernels_segment_rule() {
        // Only a message's last datagram may be shorter than its first, none
        // longer; at most `segments` each.
        assert_eq!(
            cut(
                &[100, 100, 100, 60, 100, 100, 120, 100, 100, 100, 100, 100],
                4
            ),
            vec![
                vec![100, 100, 100, 60],
                vec![100, 100],
                vec![120, 100],
                vec![100, 100, 100, 100],
            ]
        );
        // 1: one datagram per message, whatever the lengths.
        assert_eq!(cut(&[5, 5, 5], 1), vec![vec![5], vec![5], vec![5]]);
        // A long run stops at GSO_MAX_BYTES (44 datagrams of 1472 bytes),
        // whatever was asked.
        let run = cut(&[1472; 64], 64);
        assert_eq!(
            run.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![GSO_MAX_BYTES / 1472, 64 - GSO_MAX_BYTES / 1472]
        );
        // Asking for more than the kernel's limit is clamped.
        let mut tx = BatchSender::new(loopback(1 << 20), Vec::new());
        tx.set_gso_segments(1000);
        assert_eq!(tx.gso_segments(), GSO_MAX_SEGMENTS);
        tx.set_gso_segments(0);
        assert_eq!(tx.gso_segments(), 1);
    }

    /// 60 datagrams: full ones, a shorter one in the middle (it ends its
    /// GSO message) and a short tail; each carries its index.
    fn indexed_batch(max_len: usize) -> (Vec<usize>, DatagramBatch) {
        let lens: Vec<usize> = (0..60)
            .map(|i| match i {
                21 => 300,
                57.. => 40,
                _ => 1000,
            })
            .collect();
        let mut batch = DatagramBatch::new(64, max_len);
        for (i, &n) in lens.iter().enumerate() {
            let mut d = vec![i as u8; n];
            d[..4].copy_from_slice(&(i as u32).to_be_bytes());
            assert!(batch.push(&d));
        }
        (lens, batch)
    }

    /// Datagram `i` of [`indexed_batch`], whole.
    fn assert_indexed(d: &[u8], i: usize, len: usize) {
        assert_eq!(d.len(), len, "datagram {i}");
        assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]), i as u32);
        assert!(d[4..].iter().all(|&b| b == i as u8), "datagram {i} body");
    }

    #[test]
    fn gso_super_packets_arrive_as_the_datagrams_they_carry() {
        let max_len = 1200;
        let mut receivers: Vec<BatchReceiver> = (0..2)
            .map(|_| BatchReceiver::new(vec![loopback(4 << 20)], 64, max_len).unwrap())
            .collect();
        let dests: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addrs()[0]).collect();
        let mut tx = BatchSender::new(loopback(4 << 20), dests);
        tx.set_gso_segments(8);
        let (lens, batch) = indexed_batch(max_len);
        let report = tx.send(&batch);
        assert_eq!(report.sent, 60);
        assert_eq!(report.dropped, 0);
        assert_eq!(tx.gso_segments(), 8, "the kernel refused GSO on loopback");
        let plan = messages(&batch, 0, 8);
        assert_eq!(report.messages, plan.len());
        assert!(plan.len() < 15, "{} messages for 60 datagrams", plan.len());
        assert_eq!(tx.counters().messages, plan.len() as u64);
        // Message k went to receiver k mod 2, cut back into its datagrams,
        // each whole and in order.
        for (r, rx) in receivers.iter_mut().enumerate() {
            let want: Vec<usize> = plan
                .iter()
                .enumerate()
                .filter(|(k, _)| k % 2 == r)
                .flat_map(|(_, m)| m.first..m.end)
                .collect();
            let got = receive_all(rx, want.len(), max_len);
            assert_eq!(got.len(), want.len(), "receiver {r}");
            for (d, &i) in got.iter().zip(&want) {
                assert_indexed(d, i, lens[i]);
            }
        }
    }

    #[test]
    fn gro_receives_super_packets_whole_and_cuts_them_into_their_datagrams() {
        let max_len = 1200;
        // A batch of 12 is smaller than two super-packets: the rest of a
        // message waits in the receiver for the next batch.
        let mut rx = BatchReceiver::new(vec![loopback(4 << 20)], 12, max_len).unwrap();
        rx.enable_gro().expect("this kernel has UDP_GRO");
        assert!(rx.gro());
        let mut tx = BatchSender::new(loopback(4 << 20), rx.local_addrs());
        tx.set_gso_segments(8);
        let (lens, mut batch) = indexed_batch(max_len);
        assert_eq!(tx.send(&batch).sent, 60);
        let plan = messages(&batch, 0, 8);
        // And one datagram sent plainly: a message without a segment size.
        tx.set_gso_segments(1);
        batch.clear();
        let mut last = vec![60u8; 500];
        last[..4].copy_from_slice(&60u32.to_be_bytes());
        assert!(batch.push(&last));
        assert_eq!(tx.send(&batch).sent, 1);

        let mut got = Vec::new();
        let mut small = DatagramBatch::new(64, max_len);
        let deadline = Instant::now() + WAIT;
        while got.len() < 61 && Instant::now() < deadline {
            rx.recv(&mut small, Duration::from_millis(100)).unwrap();
            assert!(small.len() <= 12, "the receiver's capacity holds");
            got.extend(small.iter().map(<[u8]>::to_vec));
        }
        assert_eq!(got.len(), 61);
        for (i, d) in got.iter().enumerate() {
            assert_indexed(d, i, lens.get(i).copied().unwrap_or(500));
        }
        let c = rx.counters();
        assert_eq!(c.received, 61);
        assert_eq!(c.oversize, 0);
        // Every planned message of more than one datagram came as one.
        let multi = plan.iter().filter(|m| m.end - m.first > 1).count() as u64;
        assert_eq!(c.coalesced, multi, "{c:?}");
        assert!(multi >= 7);
    }

    #[test]
    fn gro_segments_longer_than_the_link_allows_are_dropped_and_counted() {
        // The receiver takes 600-byte datagrams; a super-packet of 1000-byte
        // segments is dropped whole, counted per segment, and the next
        // datagram still arrives.
        let mut rx = BatchReceiver::new(vec![loopback(1 << 20)], 64, 600).unwrap();
        rx.enable_gro().expect("this kernel has UDP_GRO");
        let mut tx = BatchSender::new(loopback(1 << 20), rx.local_addrs());
        tx.set_gso_segments(4);
        let mut batch = DatagramBatch::new(8, 1000);
        for _ in 0..4 {
            assert!(batch.push(&[1u8; 1000]));
        }
        assert_eq!(tx.send(&batch).sent, 4);
        batch.clear();
        assert!(batch.push(&[2u8; 100]));
        assert_eq!(tx.send(&batch).sent, 1);
        let got = receive_all(&mut rx, 1, 600);
        assert_eq!(got, vec![vec![2u8; 100]]);
        let c = rx.counters();
        assert_eq!((c.received, c.oversize), (1, 4), "{c:?}");
    }

    #[test]
    fn destinations_are_used_round_robin() {
        let max_len = 64;
        let mut receivers: Vec<BatchReceiver> = (0..3)
            .map(|_| BatchReceiver::new(vec![loopback(1 << 20)], 64, max_len).unwrap())
            .collect();
        let dests: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addrs()[0]).collect();
        let mut tx = BatchSender::new(loopback(1 << 20), dests);
        // Two sends of odd sizes: the rotation continues across calls.
        let mut batch = DatagramBatch::new(64, max_len);
        for i in 0..7u32 {
            assert!(batch.push(&i.to_be_bytes()));
        }
        assert_eq!(tx.send(&batch).sent, 7);
        batch.clear();
        for i in 7..30u32 {
            assert!(batch.push(&i.to_be_bytes()));
        }
        assert_eq!(tx.send(&batch).sent, 23);
        for (r, rx) in receivers.iter_mut().enumerate() {
            let got = receive_all(rx, 10, max_len);
            let ids: Vec<u32> = got
                .iter()
                .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
                .collect();
            let want: Vec<u32> = (0..30).filter(|i| i % 3 == r as u32).collect();
            assert_eq!(ids, want, "receiver {r}");
        }
    }

    #[test]
    fn one_receiver_over_several_sockets() {
        let max_len = 64;
        let socks = vec![loopback(1 << 20), loopback(1 << 20)];
        let addrs: Vec<SocketAddr> = socks.iter().map(|s| s.local_addr().unwrap()).collect();
        let mut rx = BatchReceiver::new(socks, 64, max_len).unwrap();
        let mut tx = BatchSender::new(loopback(1 << 20), addrs);
        let mut batch = DatagramBatch::new(64, max_len);
        for i in 0..40u32 {
            assert!(batch.push(&i.to_be_bytes()));
        }
        assert_eq!(tx.send(&batch).sent, 40);
        let mut ids: Vec<u32> = receive_all(&mut rx, 40, max_len)
            .iter()
            .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn send_errors_are_counted_not_fatal() {
        // 127.255.255.255 is the broadcast address of the loopback network:
        // without SO_BROADCAST the kernel refuses every datagram to it with
        // EACCES, reproducibly and without privileges or firewall rules.
        // That stands in for EPERM from an nftables drop in the output path,
        // which the same "permission" class counts.
        let max_len = 64;
        let mut rx = BatchReceiver::new(vec![loopback(1 << 20)], 64, max_len).unwrap();
        let good = rx.local_addrs()[0];
        let refused: SocketAddr = "127.255.255.255:9".parse().unwrap();
        let mut tx = BatchSender::new(loopback(1 << 20), vec![refused, good]);
        let mut batch = DatagramBatch::new(64, max_len);
        for i in 0..10u32 {
            assert!(batch.push(&i.to_be_bytes()));
        }
        let report = tx.send(&batch);
        assert_eq!(
            report,
            SendReport {
                sent: 5,
                dropped: 5,
                transient_errors: 5,
                messages: 5,
            }
        );
        let c = tx.counters();
        assert_eq!((c.sent, c.dropped, c.permission, c.errors()), (5, 5, 5, 5));
        let ids: Vec<u32> = receive_all(&mut rx, 5, max_len)
            .iter()
            .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
            .collect();
        assert_eq!(ids, vec![1, 3, 5, 7, 9]);
    }

    #[test]
    fn icmp_refusals_on_a_connected_socket_are_counted_not_fatal() {
        // A connected UDP socket reports the ICMP "port unreachable" of an
        // earlier datagram as ECONNREFUSED on a later send. Bind a port,
        // close it, and send to it until that shows up.
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let sock = loopback(1 << 20);
        sock.connect(closed).unwrap();
        let mut tx = BatchSender::new(sock, Vec::new());
        let mut batch = DatagramBatch::new(8, 16);
        for _ in 0..8 {
            assert!(batch.push(b"x"));
        }
        let deadline = Instant::now() + WAIT;
        while tx.counters().unreachable == 0 && Instant::now() < deadline {
            let report = tx.send(&batch);
            assert_eq!(report.sent + report.dropped, 8);
            std::thread::sleep(Duration::from_millis(1));
        }
        let c = tx.counters();
        assert!(c.unreachable > 0, "{c:?}");
        assert_eq!(c.dropped, c.unreachable);
    }

    #[test]
    fn oversize_datagrams_are_dropped_and_counted() {
        let max_len = 100;
        let mut rx = BatchReceiver::new(vec![loopback(1 << 20)], 8, max_len).unwrap();
        let dest = rx.local_addrs()[0];
        let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
        raw.send_to(&[1u8; 100], dest).unwrap();
        raw.send_to(&[2u8; 101], dest).unwrap();
        raw.send_to(&[3u8; 1000], dest).unwrap();
        raw.send_to(&[4u8; 7], dest).unwrap();
        let got = receive_all(&mut rx, 2, max_len);
        assert_eq!(got, vec![vec![1u8; 100], vec![4u8; 7]]);
        assert_eq!(
            rx.counters(),
            RecvCounters {
                received: 2,
                oversize: 2,
                errors: 0,
                coalesced: 0
            }
        );
    }

    #[test]
    fn send_errors_name_the_destination_address() {
        let socket = loopback(1 << 16);
        let v4 = SockaddrStorage::from("169.254.77.2:47001".parse::<SocketAddr>().unwrap());
        assert_eq!(destination_name(Some(&v4), &socket), "169.254.77.2:47001");
        let v6 = SockaddrStorage::from("[fe80::1]:9".parse::<SocketAddr>().unwrap());
        assert_eq!(destination_name(Some(&v6), &socket), "[fe80::1]:9");
        assert_eq!(destination_name(None, &socket), "unknown");
    }

    #[test]
    fn recv_times_out_with_zero() {
        let mut rx = BatchReceiver::new(vec![loopback(1 << 16)], 8, 64).unwrap();
        let mut batch = DatagramBatch::new(8, 64);
        assert!(batch.push(b"stale"));
        let start = Instant::now();
        assert_eq!(rx.recv(&mut batch, Duration::from_millis(30)).unwrap(), 0);
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(batch.is_empty(), "recv clears the batch");
        assert_eq!(rx.recv(&mut batch, Duration::ZERO).unwrap(), 0);
    }

    #[test]
    fn receiver_refuses_unusable_arguments() {
        assert!(matches!(
            BatchReceiver::new(Vec::new(), 8, 64),
            Err(UdpError::Invalid { .. })
        ));
        let mut rx = BatchReceiver::new(vec![loopback(1 << 16)], 8, 64).unwrap();
        let mut small = DatagramBatch::new(8, 32);
        assert!(matches!(
            rx.recv(&mut small, Duration::ZERO),
            Err(UdpError::Invalid { .. })
        ));
    }
}
