//! The datagram batch both link directions move through the kernel in one
//! call: one allocation, slots of the link's largest datagram.

/// Reusable storage for up to `capacity` datagrams of at most `max_len`
/// bytes each: one allocation, filled and drained without copying.
#[derive(Debug, Clone)]
pub struct DatagramBatch {
    buf: Vec<u8>,
    lens: Vec<usize>,
    capacity: usize,
    max_len: usize,
}

impl DatagramBatch {
    /// An empty batch.
    pub fn new(capacity: usize, max_len: usize) -> DatagramBatch {
        DatagramBatch {
            buf: vec![0; capacity.saturating_mul(max_len)],
            lens: Vec::with_capacity(capacity),
            capacity,
            max_len,
        }
    }

    /// Most datagrams the batch holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Largest datagram a slot holds.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// True when no datagram is held.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// True when no slot is free.
    pub fn is_full(&self) -> bool {
        self.lens.len() >= self.capacity
    }

    /// Forgets all datagrams (the storage stays).
    pub fn clear(&mut self) {
        self.lens.clear();
    }

    /// Bytes held in all datagrams.
    pub fn total_bytes(&self) -> usize {
        self.lens.iter().sum()
    }

    /// Lets `write` fill the next free slot (`max_len` bytes) and keeps the
    /// datagram if it returns a length above 0. Returns the length kept; 0
    /// when nothing was pushed (also when the batch is full, in which case
    /// `write` is not called, or when `write` claims more than the slot).
    pub fn push_with(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> usize {
        if self.is_full() {
            return 0;
        }
        let start = self.lens.len() * self.max_len;
        let n = write(&mut self.buf[start..start + self.max_len]);
        if n == 0 || n > self.max_len {
            debug_assert!(n <= self.max_len, "datagram writer overran its slot");
            return 0;
        }
        self.lens.push(n);
        n
    }

    /// Copies `data` into the next free slot. False when the batch is full,
    /// `data` is empty or longer than `max_len`.
    pub fn push(&mut self, data: &[u8]) -> bool {
        if data.len() > self.max_len {
            return false;
        }
        self.push_with(|slot| {
            slot[..data.len()].copy_from_slice(data);
            data.len()
        }) > 0
    }

    /// Datagram `i`.
    ///
    /// # Panics
    /// When `i >= len()`, like slice indexing.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = i * self.max_len;
        &self.buf[start..start + self.lens[i]]
    }

    /// The datagrams in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.lens
            .iter()
            .enumerate()
            .map(move |(i, &n)| &self.buf[i * self.max_len..i * self.max_len + n])
    }

    /// The free slots, for the kernel to fill.
    pub(crate) fn free_slots(&mut self) -> std::slice::ChunksMut<'_, u8> {
        let used = self.lens.len() * self.max_len;
        let end = self.capacity * self.max_len;
        self.buf[used..end].chunks_mut(self.max_len)
    }

    /// Keeps `received` datagrams the kernel wrote into the free slots,
    /// given as (length, keep); dropped ones are squeezed out so the
    /// batch stays contiguous.
    pub(crate) fn commit_received(&mut self, received: &[(usize, bool)]) {
        let first = self.lens.len();
        for (k, &(n, keep)) in received.iter().enumerate() {
            if !keep {
                continue;
            }
            let from = (first + k) * self.max_len;
            let to = self.lens.len() * self.max_len;
            if from != to {
                self.buf.copy_within(from..from + n, to);
            }
            self.lens.push(n);
        }
    }
}

impl<'a> IntoIterator for &'a DatagramBatch {
    type Item = &'a [u8];
    type IntoIter = Box<dyn ExactSizeIterator<Item = &'a [u8]> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}
