//! Chunks: the unit of pw1 stream data and of its memory.
//!
//! A chunk holds the bytes of one STREAM frame (at most [`CHUNK_CAP`]).
//! The sender keeps each chunk, unchanged, from the moment it is filled
//! until the peer acks a packet that carried it, so a retransmission sends
//! the very same frame again in a new packet. The receiver stores each
//! chunk it accepts until the local side has read it. Both sides take
//! chunks from a caller-provided pool (`&mut [Chunk]`), so a router sizes
//! its windows at run time and a microcontroller uses a small static
//! array; flow control counts chunks, so a receiver can always store what
//! it granted.
//!
//! Chunks link into singly linked lists through their `next` index (no
//! extra memory): the free list, each stream's queue, the retransmit
//! queue.

/// Most data bytes in one chunk: a STREAM frame of this size leaves room
/// for an ACK with a few ranges and a credit update in a 1400-byte
/// datagram (header, frames, check and tag room included).
pub const CHUNK_CAP: usize = 1310;

/// No chunk (end of a list).
pub const NONE: u32 = u32::MAX;

/// Where a chunk is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkState {
    /// In the free list.
    Free,
    /// Sender: in its stream's queue, never sent (may still grow).
    Queued,
    /// Sender: sent, waiting for an ack.
    InFlight,
    /// Sender: declared lost, in the retransmit queue.
    Lost,
    /// Sender: in the retransmit queue but acked or abandoned since:
    /// freed when the queue reaches it.
    Dead,
    /// Receiver: accepted, waiting in its stream's reassembly list.
    Stored,
}

/// One chunk of stream data and its bookkeeping.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// The bytes (first `len` used).
    pub data: [u8; CHUNK_CAP],
    /// Bytes used.
    pub len: u16,
    /// Bytes the receiver has handed out already.
    pub read: u16,
    /// Stream id.
    pub stream: u32,
    /// Stream offset of `data[0]`.
    pub offset: u64,
    /// The stream ends after this chunk.
    pub fin: bool,
    /// Life stage.
    pub state: ChunkState,
    /// Bumped on every free: a sent-packet record names a chunk by index
    /// and generation, so a record of a chunk freed since is ignored.
    pub generation: u16,
    /// Next chunk in whatever list this one is in.
    pub next: u32,
}

impl Chunk {
    /// A free chunk (for `static` pools and `vec![Chunk::EMPTY; n]`).
    pub const EMPTY: Chunk = Chunk {
        data: [0; CHUNK_CAP],
        len: 0,
        read: 0,
        stream: 0,
        offset: 0,
        fin: false,
        state: ChunkState::Free,
        generation: 0,
        next: NONE,
    };

    /// The used bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }

    /// Stream offset just past this chunk.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// A FIFO list of chunks by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct List {
    /// First chunk.
    pub head: u32,
    /// Last chunk.
    pub tail: u32,
}

impl List {
    /// The empty list.
    pub const EMPTY: List = List {
        head: NONE,
        tail: NONE,
    };
}

/// A pool of chunks over caller storage.
pub struct Pool<'a> {
    chunks: &'a mut [Chunk],
    free: List,
    free_count: usize,
}

impl<'a> Pool<'a> {
    /// Takes over `chunks` (all become free). At most `u32::MAX − 1`.
    pub fn new(chunks: &'a mut [Chunk]) -> Self {
        let mut p = Pool {
            chunks,
            free: List::EMPTY,
            free_count: 0,
        };
        p.reset();
        p
    }

    /// Gives the storage back.
    pub fn into_inner(self) -> &'a mut [Chunk] {
        self.chunks
    }

    /// Frees every chunk.
    pub fn reset(&mut self) {
        let n = self.chunks.len().min(NONE as usize - 1);
        self.free = List::EMPTY;
        self.free_count = 0;
        for i in 0..n {
            let c = &mut self.chunks[i];
            c.state = ChunkState::Free;
            c.generation = c.generation.wrapping_add(1);
            c.next = NONE;
            self.push_back_raw(i as u32);
        }
        self.free_count = n;
    }

    fn push_back_raw(&mut self, i: u32) {
        let mut l = self.free;
        self.push(&mut l, i);
        self.free = l;
    }

    /// Chunks in the pool.
    pub fn capacity(&self) -> usize {
        self.chunks.len().min(NONE as usize - 1)
    }

    /// Free chunks.
    pub fn free(&self) -> usize {
        self.free_count
    }

    /// Takes a free chunk, set up for `stream` at `offset`, empty.
    pub fn alloc(&mut self, stream: u32, offset: u64, state: ChunkState) -> Option<u32> {
        let mut l = self.free;
        let i = self.pop(&mut l)?;
        self.free = l;
        self.free_count -= 1;
        let c = &mut self.chunks[i as usize];
        c.len = 0;
        c.read = 0;
        c.stream = stream;
        c.offset = offset;
        c.fin = false;
        c.state = state;
        c.next = NONE;
        Some(i)
    }

    /// Returns a chunk to the free list (it must be in no other list).
    pub fn release(&mut self, i: u32) {
        let c = &mut self.chunks[i as usize];
        debug_assert!(c.state != ChunkState::Free, "chunk {i} freed twice");
        if c.state == ChunkState::Free {
            return;
        }
        c.state = ChunkState::Free;
        c.generation = c.generation.wrapping_add(1);
        c.next = NONE;
        self.push_back_raw(i);
        self.free_count += 1;
    }

    /// The chunk at `i`.
    pub fn get(&self, i: u32) -> &Chunk {
        &self.chunks[i as usize]
    }

    /// The chunk at `i`, mutable.
    pub fn get_mut(&mut self, i: u32) -> &mut Chunk {
        &mut self.chunks[i as usize]
    }

    /// Appends `i` to `list`.
    pub fn push(&mut self, list: &mut List, i: u32) {
        self.chunks[i as usize].next = NONE;
        if list.tail == NONE {
            list.head = i;
        } else {
            self.chunks[list.tail as usize].next = i;
        }
        list.tail = i;
    }

    /// Takes the first chunk of `list`.
    pub fn pop(&mut self, list: &mut List) -> Option<u32> {
        let i = list.head;
        if i == NONE {
            return None;
        }
        list.head = self.chunks[i as usize].next;
        if list.head == NONE {
            list.tail = NONE;
        }
        self.chunks[i as usize].next = NONE;
        Some(i)
    }

    /// Inserts `i` after `prev` in `list` (`NONE`: at the front).
    pub fn insert_after(&mut self, list: &mut List, prev: u32, i: u32) {
        if prev == NONE {
            self.chunks[i as usize].next = list.head;
            list.head = i;
            if list.tail == NONE {
                list.tail = i;
            }
        } else {
            let next = self.chunks[prev as usize].next;
            self.chunks[i as usize].next = next;
            self.chunks[prev as usize].next = i;
            if list.tail == prev {
                list.tail = i;
            }
        }
    }

    /// Frees every chunk of `list`; returns how many.
    pub fn release_list(&mut self, list: &mut List) -> usize {
        let mut n = 0;
        while let Some(i) = self.pop(list) {
            self.release(i);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn alloc_release_and_lists() {
        let mut store = vec![Chunk::EMPTY; 4];
        let mut p = Pool::new(&mut store);
        assert_eq!((p.capacity(), p.free()), (4, 4));
        let a = p.alloc(1, 0, ChunkState::Queued).unwrap();
        let b = p.alloc(1, 10, ChunkState::Queued).unwrap();
        let g = p.get(a).generation;
        let mut l = List::EMPTY;
        p.push(&mut l, a);
        p.push(&mut l, b);
        let c = p.alloc(1, 5, ChunkState::Queued).unwrap();
        p.insert_after(&mut l, a, c);
        assert_eq!(p.pop(&mut l), Some(a));
        assert_eq!(p.pop(&mut l), Some(c));
        p.insert_after(&mut l, NONE, a);
        assert_eq!(p.pop(&mut l), Some(a));
        assert_eq!(p.pop(&mut l), Some(b));
        assert_eq!(l, List::EMPTY);
        p.release(a);
        assert_ne!(p.get(a).generation, g);
        assert_eq!(p.free(), 2);
        p.alloc(2, 0, ChunkState::Stored).unwrap();
        p.alloc(2, 0, ChunkState::Stored).unwrap();
        assert_eq!(p.alloc(2, 0, ChunkState::Stored), None);
        p.reset();
        assert_eq!(p.free(), 4);
    }
}
