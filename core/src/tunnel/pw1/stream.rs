//! The per-stream state of a pw1 connection (one local TCP connection).

use super::pool::{List, NONE};

/// Why a stream was reset (the code in RESET_STREAM).
pub mod code {
    /// The local socket failed (read or write error).
    pub const LOCAL_ERROR: u16 = 1;
    /// The local service refused the connection.
    pub const REFUSED: u16 = 2;
    /// The tunnel is closing.
    pub const CLOSING: u16 = 3;
    /// The local side stopped reading and was given up.
    pub const STALLED: u16 = 4;
}

/// One stream slot. Storage for the connection's stream table; the
/// fields are the connection's business.
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    pub(super) state: SlotState,
    pub(super) id: u32,
    /// Opened by the peer (the other side connects a local service for it).
    pub(super) remote: bool,
    /// A peer-opened stream was handed out by `poll_opened`.
    pub(super) reported: bool,

    // ---- send half ----
    /// Offset of the next byte written into a chunk.
    pub(super) send_offset: u64,
    /// Chunks written, not yet sent (in order); the tail may still grow.
    pub(super) unsent: List,
    /// Chunks with data created (each costs one unit of the peer's credit).
    pub(super) chunks_created: u32,
    /// The peer's credit: chunks numbered below this may be created.
    pub(super) max_chunks: u32,
    /// Chunks allocated and not yet freed (acked or abandoned).
    pub(super) outstanding: u32,
    /// `stream_finish` was called: the FIN is in (or after) the last chunk.
    pub(super) fin_queued: bool,
    /// The chunk with FIN was acked.
    pub(super) fin_acked: bool,

    // ---- receive half ----
    /// Next stream offset to hand to the local side.
    pub(super) recv_offset: u64,
    /// Stored chunks, ascending offset.
    pub(super) reassembly: List,
    /// Chunks stored and not yet consumed.
    pub(super) stored: u32,
    /// Chunks handed out and freed.
    pub(super) consumed: u32,
    /// Credit given to the peer (absolute), and the value last sent.
    pub(super) granted: u32,
    pub(super) advertised: u32,
    /// A MAX_STREAM_CHUNKS with `granted` must be sent.
    pub(super) credit_dirty: bool,
    /// Offset where the peer's data ends, once its FIN arrived.
    pub(super) final_offset: Option<u64>,

    // ---- reset ----
    /// We must send RESET_STREAM (with `reset_code`).
    pub(super) reset_pending: bool,
    /// We sent it and it was acked, or the peer reset the stream.
    pub(super) reset_done: bool,
    pub(super) reset_code: u16,
}

/// Life of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlotState {
    Free,
    Open,
    /// Reset (by either side); released once the reset is settled.
    Reset,
    /// Done; the event is waiting for `poll_event`, then the slot is free.
    Closing {
        reset: bool,
    },
}

impl Stream {
    /// An unused slot (for `static` tables and `vec![Stream::EMPTY; n]`).
    pub const EMPTY: Stream = Stream {
        state: SlotState::Free,
        id: 0,
        remote: false,
        reported: true,
        send_offset: 0,
        unsent: List::EMPTY,
        chunks_created: 0,
        max_chunks: 0,
        outstanding: 0,
        fin_queued: false,
        fin_acked: false,
        recv_offset: 0,
        reassembly: List::EMPTY,
        stored: 0,
        consumed: 0,
        granted: 0,
        advertised: 0,
        credit_dirty: false,
        final_offset: None,
        reset_pending: false,
        reset_done: false,
        reset_code: 0,
    };

    pub(super) fn open(id: u32, remote: bool, send_credit: u32, recv_credit: u32) -> Stream {
        Stream {
            state: SlotState::Open,
            id,
            remote,
            max_chunks: send_credit,
            granted: recv_credit,
            advertised: recv_credit,
            ..Stream::EMPTY
        }
    }

    pub(super) fn is_live(&self) -> bool {
        matches!(self.state, SlotState::Open | SlotState::Reset)
    }

    /// Every byte we wrote was acked, FIN included.
    pub(super) fn send_done(&self) -> bool {
        self.fin_acked && self.outstanding == 0
    }

    /// The peer's FIN arrived and every byte before it was handed out.
    pub(super) fn recv_done(&self) -> bool {
        self.final_offset == Some(self.recv_offset) && self.reassembly.head == NONE
    }
}
