//! Publishers and their loans.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::time::Duration;

use shmlane::{RawLoan, RawPublisher};

use crate::error::{Failure, guard, shmlane_error};
use crate::handle::{self, Handle, clear_out, hand_out};
use crate::slots::{Refused, Slots};
use crate::topic::shmlane_topic;

/// A topic's sending end. Used by one thread at a time (it may move between threads, with its
/// loans); not shared by threads at once.
#[derive(Debug)]
pub struct shmlane_publisher {
    magic: u64,
    /// Loans out, each borrowing `*inner`: emptied before `inner` is freed.
    loans: Slots<RawLoan<'static>>,
    /// From `Box::into_raw`, freed in `Drop`.
    inner: NonNull<RawPublisher>,
}

handle::handle!(shmlane_publisher, "publisher", 0x5348_4c4e_5055_424c);

impl shmlane_publisher {
    fn inner(&self) -> &'static RawPublisher {
        // SAFETY: `inner` lives until `Drop`, which first drops every loan (the only holders
        // of this `'static` borrow besides calls that end before it).
        unsafe { self.inner.as_ref() }
    }
}

impl Drop for shmlane_publisher {
    fn drop(&mut self) {
        self.loans.clear();
        // SAFETY: from `Box::into_raw`; nothing borrows it any more (loans cleared above).
        drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
    }
}

/// Room for `len` elements in shared memory, lent by a publisher: write `bytes` bytes at
/// `data`, then `shmlane_publisher_send` it, or `shmlane_publisher_drop_loan` it. Its bytes
/// hold whatever the block last held. `token` and `owner` name it to its publisher: do not
/// change them. Sending or dropping it zeroes the struct.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmlane_loan {
    /// The bytes to write, aligned for the topic's type (NULL once sent or dropped).
    pub data: *mut c_void,
    /// `len` × the type's size.
    pub bytes: usize,
    /// Elements loaned.
    pub len: usize,
    /// Which loan of its publisher this is (0 once sent or dropped).
    pub token: u64,
    /// Which publisher lent it.
    pub owner: u64,
}

impl shmlane_loan {
    const NONE: shmlane_loan =
        shmlane_loan { data: std::ptr::null_mut(), bytes: 0, len: 0, token: 0, owner: 0 };
}

/// Makes a publisher of `topic` (taking a free publisher slot). On success `*out` is the
/// publisher; on failure NULL.
///
/// # Safety
///
/// `topic` is a live topic; `out` valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_create(
    topic: *const shmlane_topic,
    out: *mut *mut shmlane_publisher,
) -> shmlane_error {
    guard(|| {
        // SAFETY: `out` is NULL or valid by the caller's promise.
        unsafe { clear_out(out) };
        let out = handle::out(out, "out")?;
        // SAFETY: a live topic by the caller's promise.
        let topic = unsafe { handle::get(topic, "topic")? };
        let loans = Slots::new(topic.topic.config().max_loans);
        let inner = NonNull::from(Box::leak(Box::new(topic.topic.publisher()?)));
        let publisher = shmlane_publisher { magic: shmlane_publisher::MAGIC, loans, inner };
        // SAFETY: checked non-NULL; valid by the caller's promise.
        unsafe { hand_out(publisher, out.as_ptr()) };
        Ok(())
    })
}

/// Destroys a publisher (NULL: nothing), giving its slot back. Refused with
/// `SHMLANE_ERROR_BUSY` while loans are out: send or drop them first.
///
/// # Safety
///
/// `publisher` is NULL or a publisher not yet destroyed, not in use by another thread, and
/// not used after this returns `SHMLANE_OK`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_destroy(
    publisher: *mut shmlane_publisher,
) -> shmlane_error {
    guard(|| {
        // SAFETY: the caller's promise.
        unsafe {
            handle::destroy(publisher, "publisher", |publisher| match publisher.loans.out() {
                0 => Ok(()),
                n => Err(Failure::new(
                    shmlane_error::SHMLANE_ERROR_BUSY,
                    format!("the publisher has {n} loans out: send or drop them first"),
                )),
            })
        }
    })
}

/// Loans room for `len` elements (1 to 2^32 - 1; more than the topic's `max_slice_len` come
/// from a payload segment added for their size) and describes it in `*loan`. Fails with
/// `SHMLANE_ERROR_OUT_OF_BLOCKS` when `max_loans` loans are out or every block is in use.
///
/// # Safety
///
/// `publisher` is a live publisher used by this thread alone; `loan` valid for a write of a
/// `shmlane_loan`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_loan(
    publisher: *mut shmlane_publisher,
    len: usize,
    loan: *mut shmlane_loan,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(loan, "loan")?;
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(shmlane_loan::NONE) };
        // SAFETY: a live publisher, this thread's alone, by the caller's promise.
        let publisher = unsafe { handle::get_mut(publisher, "publisher")? };
        if !publisher.loans.has_room() {
            return Err(Failure::new(
                shmlane_error::SHMLANE_ERROR_OUT_OF_BLOCKS,
                format!(
                    "the publisher has {} loans out, the topic's max_loans: send or drop some",
                    publisher.loans.out()
                ),
            ));
        }
        let inner = publisher.inner();
        let owner = publisher.loans.owner();
        // The loan is made in its entry of the table (a move there would copy it).
        let filled = publisher.loans.insert_with(|slot| inner.loan_into(len, slot).map(|()| true));
        let (token, raw) = filled?.ok_or_else(unreachable_full)?;
        let len = raw.len();
        let bytes: &mut [u8] = raw;
        let filled =
            shmlane_loan { data: bytes.as_mut_ptr().cast(), bytes: bytes.len(), len, token, owner };
        // SAFETY: as above.
        unsafe { out.write(filled) };
        Ok(())
    })
}

/// The table was checked for room just before.
fn unreachable_full() -> Failure {
    Failure::new(shmlane_error::SHMLANE_ERROR_PANIC, "a loan table filled unexpectedly (a bug)")
}

/// Takes the loan `*loan` names out of the publisher's table and zeroes `*loan`.
fn take_loan(
    publisher: &mut shmlane_publisher,
    loan: NonNull<shmlane_loan>,
) -> Result<RawLoan<'static>, Failure> {
    // SAFETY: the callers checked `loan` non-NULL and have it valid for reads and writes.
    let given = unsafe { loan.read() };
    let raw = publisher.loans.take(given.owner, given.token).map_err(refused_loan)?;
    // SAFETY: as above.
    unsafe { loan.write(shmlane_loan::NONE) };
    Ok(raw)
}

/// The error of a loan `Slots` refused (off the hot path).
#[cold]
fn refused_loan(refused: Refused) -> Failure {
    match refused {
        Refused::Foreign => Failure::new(
            shmlane_error::SHMLANE_ERROR_FOREIGN,
            "the loan came from another publisher: send or drop it with that one",
        ),
        Refused::Released => Failure::new(
            shmlane_error::SHMLANE_ERROR_RELEASED,
            "the loan was sent or dropped already (or never filled in by shmlane_publisher_loan)",
        ),
    }
}

/// Publishes a loan to every subscriber and zeroes `*loan`; `*delivered` (if not NULL) is
/// how many subscribers it was queued for. The loan is gone afterwards whether the send
/// succeeded or not.
///
/// # Safety
///
/// `publisher` is a live publisher used by this thread alone; `loan` valid for reads and
/// writes of a `shmlane_loan`; `delivered` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_send(
    publisher: *mut shmlane_publisher,
    loan: *mut shmlane_loan,
    delivered: *mut usize,
) -> shmlane_error {
    guard(|| {
        let loan = handle::out(loan, "loan")?;
        // SAFETY: a live publisher, this thread's alone, by the caller's promise.
        let publisher = unsafe { handle::get_mut(publisher, "publisher")? };
        // SAFETY: `loan` is readable and writable by the caller's promise; `token` and `owner`
        // are plain words.
        let (token, owner) = unsafe { ((*loan.as_ptr()).token, (*loan.as_ptr()).owner) };
        let inner = publisher.inner();
        let sent = publisher.loans.take_with(owner, token, |raw| inner.send(raw));
        let count = sent.map_err(refused_loan)?;
        // SAFETY: as above.
        unsafe { loan.write(shmlane_loan::NONE) };
        let count = count?;
        if !delivered.is_null() {
            // SAFETY: non-NULL, valid by the caller's promise.
            unsafe { delivered.write(count) };
        }
        Ok(())
    })
}

/// Gives a loan back unsent and zeroes `*loan`.
///
/// # Safety
///
/// `publisher` is a live publisher used by this thread alone; `loan` valid for reads and
/// writes of a `shmlane_loan`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_drop_loan(
    publisher: *mut shmlane_publisher,
    loan: *mut shmlane_loan,
) -> shmlane_error {
    guard(|| {
        let loan = handle::out(loan, "loan")?;
        // SAFETY: a live publisher, this thread's alone, by the caller's promise.
        let publisher = unsafe { handle::get_mut(publisher, "publisher")? };
        drop(take_loan(publisher, loan)?);
        Ok(())
    })
}

/// Sends `bytes` bytes from `data` by copy: a whole number of elements, 1 to 2^32 - 1 of them
/// (`SHMLANE_ERROR_BAD_LENGTH` otherwise). `*delivered` (if not NULL) is how many subscribers
/// it was queued for.
///
/// # Safety
///
/// `publisher` is a live publisher used by this thread alone; `data` valid for reads of
/// `bytes` bytes; `delivered` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_send_copy(
    publisher: *mut shmlane_publisher,
    data: *const c_void,
    bytes: usize,
    delivered: *mut usize,
) -> shmlane_error {
    guard(|| {
        if data.is_null() {
            return Err(Failure::null("data"));
        }
        // SAFETY: a live publisher, this thread's alone, by the caller's promise.
        let publisher = unsafe { handle::get_mut(publisher, "publisher")? };
        // SAFETY: non-NULL and readable for `bytes` bytes by the caller's promise.
        let data = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), bytes) };
        let count = publisher.inner().send_copy(data)?;
        if !delivered.is_null() {
            // SAFETY: non-NULL, valid by the caller's promise.
            unsafe { delivered.write(count) };
        }
        Ok(())
    })
}

/// Sets how long a send waits for a full subscriber under `SHMLANE_OVERFLOW_BLOCK`.
///
/// # Safety
///
/// `publisher` is a live publisher used by this thread alone.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_set_block_timeout(
    publisher: *mut shmlane_publisher,
    timeout_ns: u64,
) -> shmlane_error {
    guard(|| {
        // SAFETY: a live publisher, this thread's alone, by the caller's promise.
        let publisher = unsafe { handle::get_mut(publisher, "publisher")? };
        publisher.inner().set_block_timeout(Duration::from_nanos(timeout_ns));
        Ok(())
    })
}

/// Writes to `*out` how many subscribers the topic has now.
///
/// # Safety
///
/// `publisher` is a live publisher used by this thread alone; `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_subscribers(
    publisher: *mut shmlane_publisher,
    out: *mut usize,
) -> shmlane_error {
    guard(|| {
        let out = handle::out(out, "out")?;
        // SAFETY: a live publisher, this thread's alone, by the caller's promise.
        let publisher = unsafe { handle::get_mut(publisher, "publisher")? };
        // SAFETY: non-NULL, valid by the caller's promise.
        unsafe { out.write(publisher.inner().subscribers()) };
        Ok(())
    })
}
