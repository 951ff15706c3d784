//! The mapped bytes of a segment: the one place that turns offsets into memory accesses.
//!
//! Everything here takes a byte offset, checks it against the mapping (bounds, alignment,
//! writability) and only then touches memory: by copy for plain bytes, or through a shared
//! reference for [`SharedView`] types (atomics). No reference to plain bytes a peer may write is
//! ever created.

use crate::sync::{AtomicU32, Ordering};
use std::io;
use std::mem::{align_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};

use memmap2::{MmapOptions, MmapRaw};

use crate::offset::{OffsetError, SharedView};

/// A shared mapping of a whole segment file.
#[derive(Debug)]
pub(crate) struct Mapping {
    raw: MmapRaw,
    writable: bool,
}

impl Mapping {
    /// Maps `len` bytes of `fd` shared, read-write or read-only.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: u64, writable: bool) -> io::Result<Mapping> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large to map"))?;
        let mut options = MmapOptions::new();
        options.len(len);
        let raw = if writable {
            options.map_raw(fd.as_raw_fd())?
        } else {
            options.map_raw_read_only(fd.as_raw_fd())?
        };
        Ok(Mapping { raw, writable })
    }

    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.raw.len() as u64
    }

    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    /// Faults every page in now, reporting failure (unlike `MAP_POPULATE`, which is best effort).
    pub(crate) fn populate(&self) -> io::Result<()> {
        use rustix::mm::Advice;
        let advice =
            if self.writable { Advice::LinuxPopulateWrite } else { Advice::LinuxPopulateRead };
        // SAFETY: the range is exactly our live mapping; populate advice does not change its
        // contents or protection, it only faults pages in.
        unsafe { rustix::mm::madvise(self.raw.as_mut_ptr().cast(), self.raw.len(), advice) }
            .map_err(io::Error::from)
    }

    /// Locks the pages in RAM (`mlock`).
    pub(crate) fn lock(&self) -> io::Result<()> {
        self.raw.lock()
    }

    /// Checks that `len` bytes at `offset` lie inside the mapping and are aligned to `align`,
    /// and returns the offset as a `usize`.
    #[inline]
    fn check(&self, offset: u64, len: u64, align: usize) -> Result<usize, OffsetError> {
        let segment_len = self.len();
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > segment_len) {
            return Err(OffsetError::OutOfBounds { offset, len, segment_len });
        }
        // The mapping is page aligned, so alignment of the offset is alignment of the address.
        if !offset.is_multiple_of(align as u64) {
            return Err(OffsetError::Misaligned { offset, align: align as u64 });
        }
        // In bounds of a mapping whose length is a usize, so it fits.
        Ok(offset as usize)
    }

    /// A pointer to `len` bytes at `offset`, in bounds and aligned to `align`.
    #[inline]
    pub(crate) fn ptr(
        &self,
        offset: u64,
        len: u64,
        align: usize,
    ) -> Result<std::ptr::NonNull<u8>, OffsetError> {
        let start = self.check(offset, len, align)?;
        // SAFETY: `check` proved `start` lies within the mapping (or at its end for `len` 0),
        // so the addition stays inside one allocation.
        let ptr = unsafe { self.raw.as_mut_ptr().add(start) };
        std::ptr::NonNull::new(ptr).ok_or(OffsetError::OutOfBounds {
            offset,
            len,
            segment_len: self.len(),
        })
    }

    /// The address of the byte at `offset`, for a prefetch hint: `None` past the mapping.
    #[inline]
    fn hint_target(&self, offset: u64) -> Option<*const u8> {
        if offset >= self.len() {
            return None;
        }
        // SAFETY: `offset` lies within the mapping (checked above), whose length is a usize.
        Some(unsafe { self.raw.as_ptr().add(offset as usize) })
    }

    /// Asks the CPU to start loading the cache line at `offset` (nothing if out of bounds).
    #[inline]
    pub(crate) fn prefetch(&self, offset: u64) {
        let Some(line) = self.hint_target(offset) else { return };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: PREFETCHT0 needs SSE, which every x86_64 CPU has; it is a hint that never
        // faults or changes memory, and its address lies in the live mapping.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(line.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = line;
    }

    /// Asks the CPU to fetch the cache line at `offset` for writing, so that a store to it soon
    /// after does not wait for the line to come back from another core that read it (nothing
    /// if out of bounds, or on a CPU without PREFETCHW).
    #[inline]
    pub(crate) fn prefetch_write(&self, offset: u64) {
        let Some(line) = self.hint_target(offset) else { return };
        crate::hint::prefetch_write(line);
    }

    /// Asks the CPU to move the cache line at `offset` out of this core's private caches to
    /// the shared one (nothing if out of bounds, or on a CPU without CLDEMOTE).
    #[inline]
    pub(crate) fn demote(&self, offset: u64) {
        let Some(line) = self.hint_target(offset) else { return };
        crate::hint::demote_line(line);
    }

    /// Copies bytes out of the segment.
    #[inline]
    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OffsetError> {
        let start = self.check(offset, buf.len() as u64, 1)?;
        // Concurrent writers in other processes can only change the copied values, which
        // callers validate afterwards: no reference to the shared bytes is ever created.
        // SAFETY: `check` proved `start..start + buf.len()` lies in the mapping, which stays
        // mapped while `self` lives; the copy goes through raw pointers.
        unsafe { volatile_copy(self.raw.as_ptr().add(start), buf) };
        Ok(())
    }

    /// Copies bytes into the segment.
    #[inline]
    pub(crate) fn write(&self, offset: u64, bytes: &[u8]) -> Result<(), OffsetError> {
        if !self.writable {
            return Err(OffsetError::ReadOnly);
        }
        let start = self.check(offset, bytes.len() as u64, 1)?;
        // SAFETY: in bounds of a live, writable mapping (checked above); raw-pointer copy, no
        // reference to shared bytes is formed.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.raw.as_mut_ptr().add(start),
                bytes.len(),
            );
        }
        Ok(())
    }

    /// A shared reference to a `T` at `offset`, on a writable mapping.
    pub(crate) fn view<T: SharedView>(&self, offset: u64) -> Result<&T, OffsetError> {
        if !self.writable {
            return Err(OffsetError::ReadOnly);
        }
        let start = self.check(offset, size_of::<T>() as u64, align_of::<T>())?;
        // SAFETY: in bounds and aligned for `T` (checked above) in a mapping that lives as long
        // as `&self`. `T: SharedView` accepts every bit pattern and tolerates concurrent writes
        // by other processes, so a shared reference to it is sound.
        Ok(unsafe { &*self.raw.as_ptr().add(start).cast::<T>() })
    }

    /// A shared slice of `count` values of `T` starting at `offset`, on a writable mapping.
    pub(crate) fn view_slice<T: SharedView>(
        &self,
        offset: u64,
        count: u64,
    ) -> Result<&[T], OffsetError> {
        if !self.writable {
            return Err(OffsetError::ReadOnly);
        }
        let bytes = (size_of::<T>() as u64).checked_mul(count).ok_or(OffsetError::OutOfBounds {
            offset,
            len: u64::MAX,
            segment_len: self.len(),
        })?;
        let start = self.check(offset, bytes, align_of::<T>())?;
        // SAFETY: `count` values of `T` lie in bounds and aligned (checked above; `count` fits in
        // usize because the bytes fit in the mapping). `T: SharedView` as in `view`.
        Ok(unsafe {
            std::slice::from_raw_parts(self.raw.as_ptr().add(start).cast::<T>(), count as usize)
        })
    }

    /// Atomically loads a `u32` at `offset`; allowed on read-only mappings.
    pub(crate) fn load_u32(&self, offset: u64, order: Ordering) -> Result<u32, OffsetError> {
        let start = self.check(offset, 4, align_of::<AtomicU32>())?;
        // SAFETY: in bounds and aligned (checked above). An atomic load on read-only memory is
        // permitted for lock-free types no larger than a pointer (std's atomic docs); a load
        // never writes, so the read-only protection is respected.
        let word = unsafe { &*self.raw.as_ptr().add(start).cast::<AtomicU32>() };
        Ok(word.load(order))
    }
}

/// Copies `buf.len()` bytes from `src` with volatile loads: each shared byte is read exactly
/// once, into the private `buf`, so the compiler cannot read a validated value again from the
/// shared source (a double fetch). Eight bytes per load where it can (`[u8; 8]` has
/// alignment 1, so any address will do), then byte by byte.
///
/// # Safety
/// `src..src + buf.len()` must be readable for the duration of the call.
#[inline]
pub(crate) unsafe fn volatile_copy(src: *const u8, buf: &mut [u8]) {
    let mut chunks = buf.chunks_exact_mut(8);
    let mut at = 0;
    for chunk in &mut chunks {
        // SAFETY: `at + 8 <= buf.len()`, inside the readable range (caller's contract); the
        // `[u8; 8]` read has alignment 1.
        let word = unsafe { src.add(at).cast::<[u8; 8]>().read_volatile() };
        chunk.copy_from_slice(&word);
        at += 8;
    }
    for byte in chunks.into_remainder() {
        // SAFETY: `at < buf.len()`, inside the readable range (caller's contract).
        *byte = unsafe { src.add(at).read_volatile() };
        at += 1;
    }
}
