//! Per-frame zlib (RFC 1950), as udphp.py does it.
//!
//! * A payload is compressed only when it is longer than [`MIN_GAIN`] bytes
//!   and the stream comes out shorter than `len − MIN_GAIN`; otherwise it
//!   goes as a `U` frame.
//! * Inflation writes into a caller buffer, never the heap, and refuses any
//!   stream that would produce more than the frame's declared length, so a
//!   small forged frame cannot make a receiver write past its buffer or spend
//!   long on a zip bomb.
//! * Deflation needs about 320 KB of compressor state, so it sits behind
//!   the `deflate` feature; a microcontroller sends `U` frames and still
//!   inflates its peer's `C` frames.

use core::fmt;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

/// Compression must save more than this many bytes to be used.
pub const MIN_GAIN: usize = 100;

/// Why a `C` frame's body did not inflate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The stream would inflate past the declared length (or the buffer).
    TooLong,
    /// The stream ends before its final block.
    Truncated,
    /// Not a valid zlib stream (bad header, bad code, Adler-32 mismatch).
    Corrupt,
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InflateError::TooLong => "zlib stream inflates past the declared length",
            InflateError::Truncated => "zlib stream is truncated",
            InflateError::Corrupt => "zlib stream is corrupt",
        })
    }
}

/// Reusable inflate state (about 11 KB); keep one per receiver rather than
/// one per frame, e.g. in a `static` on a microcontroller.
pub struct Inflater {
    state: DecompressorOxide,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// Fresh state.
    pub fn new() -> Self {
        Inflater {
            state: DecompressorOxide::new(),
        }
    }

    /// Inflates the whole zlib `stream` into `out` and returns the length
    /// produced. `out` should be exactly the declared payload length: a
    /// stream that produces more is refused with [`InflateError::TooLong`].
    pub fn inflate(&mut self, stream: &[u8], out: &mut [u8]) -> Result<usize, InflateError> {
        self.state.init();
        let flags = inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER
            | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        let (status, _consumed, written) = decompress(&mut self.state, stream, out, 0, flags);
        match status {
            TINFLStatus::Done => Ok(written),
            TINFLStatus::HasMoreOutput => Err(InflateError::TooLong),
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                Err(InflateError::Truncated)
            }
            // Adler32Mismatch, Failed, BadParam, and any status a later
            // miniz_oxide adds.
            _ => Err(InflateError::Corrupt),
        }
    }
}

#[cfg(feature = "deflate")]
mod deflate {
    use super::MIN_GAIN;
    extern crate alloc;
    use alloc::boxed::Box;
    use miniz_oxide::deflate::core::{
        CompressorOxide, TDEFLFlush, TDEFLStatus, compress, create_comp_flags_from_zip_params,
    };

    /// CPython's `zlib.compress` default level.
    pub const DEFAULT_LEVEL: u8 = 6;

    /// Reusable deflate state (heap, ~320 KB). Requires the `deflate` feature.
    pub struct Deflater {
        state: Box<CompressorOxide>,
    }

    impl Deflater {
        /// A zlib-wrapped compressor at `level` (0–10, as miniz).
        pub fn new(level: u8) -> Self {
            // Positive window bits ask for the zlib (RFC 1950) wrapper.
            let flags = create_comp_flags_from_zip_params(i32::from(level), 15, 0);
            Deflater {
                state: Box::new(CompressorOxide::new(flags)),
            }
        }

        /// Compresses `payload` into `out` when the MIN_GAIN rule says it
        /// pays: returns the stream length, or `None` to send it as `U`.
        pub fn compress_worthwhile(&mut self, payload: &[u8], out: &mut [u8]) -> Option<usize> {
            if payload.len() <= MIN_GAIN {
                return None;
            }
            // A stream that does not fit in len − MIN_GAIN − 1 bytes fails
            // the rule anyway, so stop the compressor there.
            let limit = (payload.len() - MIN_GAIN - 1).min(out.len());
            // reset() keeps the level and the zlib wrapper chosen in new().
            self.state.reset();
            let (status, consumed, written) = compress(
                &mut self.state,
                payload,
                &mut out[..limit],
                TDEFLFlush::Finish,
            );
            match status {
                TDEFLStatus::Done if consumed == payload.len() => Some(written),
                _ => None,
            }
        }
    }
}

#[cfg(feature = "deflate")]
pub use deflate::{DEFAULT_LEVEL, Deflater};

#[cfg(test)]
mod tests;
