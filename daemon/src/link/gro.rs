//! UDP GRO on the egress sockets: the kernel hands a GSO super-packet of
//! the ingress side (or datagrams of one flow a device's GRO merged) to
//! the socket as one message with its segment size, instead of cutting it
//! into one socket buffer per datagram first. One message then carries up
//! to the ingress side's `udp_gso_segments` datagrams, so the receive thread makes one
//! trip through the socket layer per super-packet.
//!
//! The messages land here, in slots large enough for the largest UDP
//! payload, and are cut back into the link's datagrams (every segment but
//! the last has the segment size, the kernel's rule) as the caller's batch
//! has room. What does not fit waits here for the next batch: nothing is
//! dropped for want of room.

use crate::link::batch::DatagramBatch;

/// Largest UDP payload one message can carry, and so a slot's size.
pub const MESSAGE_BYTES: usize = 65_535;
/// Messages read per `recvmmsg`. 16 super-packets of 8 datagrams fill two
/// batches of 64; the rest waits for the next.
pub const MESSAGES: usize = 16;

/// One message the kernel wrote into a slot.
#[derive(Debug, Clone, Copy)]
struct Held {
    slot: usize,
    len: usize,
    segment: usize,
}

/// The slots GRO messages are received into, and what of them is still to
/// be cut into datagrams.
#[derive(Debug)]
pub struct GroBuffer {
    buf: Vec<u8>,
    held: Vec<Held>,
    /// The message being cut, and the offset in it.
    next: usize,
    offset: usize,
}

/// What [`GroBuffer::split_into`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Split {
    /// Datagrams put into the batch.
    pub datagrams: u64,
    /// Segments longer than the link's datagrams, dropped.
    pub oversize: u64,
}

impl Default for GroBuffer {
    fn default() -> Self {
        GroBuffer {
            buf: vec![0; MESSAGES * MESSAGE_BYTES],
            held: Vec::with_capacity(MESSAGES),
            next: 0,
            offset: 0,
        }
    }
}

impl GroBuffer {
    /// True when every held message was cut into datagrams.
    pub fn is_empty(&self) -> bool {
        self.next >= self.held.len()
    }

    /// The slots for the kernel to fill. Only when empty: held messages
    /// would be overwritten, so `None` then.
    pub fn slots(&mut self) -> Option<std::slice::ChunksMut<'_, u8>> {
        if !self.is_empty() {
            return None;
        }
        self.held.clear();
        self.next = 0;
        self.offset = 0;
        Some(self.buf.chunks_mut(MESSAGE_BYTES))
    }

    /// Keeps the `len` bytes the kernel wrote into `slot`, carrying
    /// datagrams of `segment` bytes (the last one may be shorter; 0 or
    /// none: one datagram). Ignored when `slot` or `len` is out of range.
    pub fn hold(&mut self, slot: usize, len: usize, segment: Option<usize>) {
        if slot >= MESSAGES || len == 0 || len > MESSAGE_BYTES {
            return;
        }
        let segment = segment.filter(|&s| s > 0).unwrap_or(len).min(len);
        self.held.push(Held { slot, len, segment });
    }

    /// Cuts held messages into `batch` until it holds `limit` datagrams
    /// or nothing is held. Segments over `max_len` are dropped and counted.
    pub fn split_into(&mut self, batch: &mut DatagramBatch, limit: usize, max_len: usize) -> Split {
        let mut split = Split::default();
        while let Some(h) = self.held.get(self.next).copied() {
            while self.offset < h.len {
                if batch.len() >= limit.min(batch.capacity()) {
                    return split;
                }
                let start = h.slot * MESSAGE_BYTES + self.offset;
                let n = h.segment.min(h.len - self.offset);
                self.offset += n;
                if n > max_len || !batch.push(&self.buf[start..start + n]) {
                    split.oversize += 1;
                } else {
                    split.datagrams += 1;
                }
            }
            self.next += 1;
            self.offset = 0;
        }
        split
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(slot: &mut [u8], datagrams: &[(u8, usize)]) -> usize {
        let mut at = 0;
        for &(tag, len) in datagrams {
            slot[at..at + len].fill(tag);
            at += len;
        }
        at
    }

    #[test]
    fn messages_are_cut_at_the_segment_size_and_what_does_not_fit_waits() {
        let mut g = GroBuffer::default();
        {
            let mut slots = g.slots().expect("empty");
            let a = slots.next().expect("slot 0");
            // Three datagrams of 100 bytes and a short last one of 40.
            let n0 = fill(a, &[(1, 100), (2, 100), (3, 100), (4, 40)]);
            let b = slots.next().expect("slot 1");
            // One datagram, no segment size given.
            let n1 = fill(b, &[(5, 70)]);
            drop(slots);
            g.hold(0, n0, Some(100));
            g.hold(1, n1, None);
        }
        assert!(!g.is_empty());
        // Room for three only: the fourth and fifth wait.
        let mut batch = DatagramBatch::new(8, 128);
        let s = g.split_into(&mut batch, 3, 128);
        assert_eq!(
            s,
            Split {
                datagrams: 3,
                oversize: 0
            }
        );
        assert!(
            g.slots().is_none(),
            "held messages are not handed out again"
        );
        let got: Vec<(u8, usize)> = batch.iter().map(|d| (d[0], d.len())).collect();
        assert_eq!(got, vec![(1, 100), (2, 100), (3, 100)]);
        assert!(batch.iter().all(|d| d.iter().all(|&b| b == d[0])));

        batch.clear();
        let s = g.split_into(&mut batch, 8, 128);
        assert_eq!(
            s,
            Split {
                datagrams: 2,
                oversize: 0
            }
        );
        let got: Vec<(u8, usize)> = batch.iter().map(|d| (d[0], d.len())).collect();
        assert_eq!(got, vec![(4, 40), (5, 70)]);
        assert!(g.is_empty());
        assert!(g.slots().is_some());
    }

    #[test]
    fn segments_longer_than_a_datagram_are_dropped_and_counted() {
        let mut g = GroBuffer::default();
        let n = {
            let mut slots = g.slots().expect("empty");
            fill(slots.next().expect("slot"), &[(9, 200), (8, 200)])
        };
        g.hold(0, n, Some(200));
        // Out-of-range reports from a confused caller are ignored.
        g.hold(MESSAGES, 10, None);
        g.hold(1, MESSAGE_BYTES + 1, None);
        g.hold(2, 0, None);
        let mut batch = DatagramBatch::new(8, 128);
        let s = g.split_into(&mut batch, 8, 128);
        assert_eq!(
            s,
            Split {
                datagrams: 0,
                oversize: 2
            }
        );
        assert!(batch.is_empty());
        assert!(g.is_empty());
    }
}
