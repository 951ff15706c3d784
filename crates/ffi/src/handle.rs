//! Handles: boxes whose first checked word is a magic number of their kind, and the checks of
//! the pointers and strings every entry point is given.

use std::ffi::{CStr, c_char};
use std::ptr::{self, NonNull};

use crate::error::{Failure, shmlane_error};

/// A value handed to C as a pointer to its box.
pub(crate) trait Handle: Sized {
    /// The magic word of a live handle of this kind.
    const MAGIC: u64;
    /// What the handle is, for messages ("subscriber").
    const KIND: &'static str;
    /// Where the magic word lies.
    ///
    /// # Safety
    ///
    /// `this` points to a live, properly aligned `Self`.
    unsafe fn magic(this: *const Self) -> *const u64;
}

/// Magic words are clear of this when a handle is destroyed.
const DEAD: u64 = 0xdead_dead_dead_dead;

/// Boxes `value` and writes its pointer to `out`.
///
/// # Safety
///
/// `out` is valid for a write of a pointer.
pub(crate) unsafe fn hand_out<T: Handle>(value: T, out: *mut *mut T) {
    // SAFETY: the caller's promise.
    unsafe { out.write(Box::into_raw(Box::new(value))) };
}

/// Writes NULL to `out` unless `out` is NULL (a failed create).
///
/// # Safety
///
/// `out` is NULL or valid for a write of a pointer.
pub(crate) unsafe fn clear_out<T>(out: *mut *mut T) {
    if !out.is_null() {
        // SAFETY: non-NULL, so valid by the caller's promise.
        unsafe { out.write(ptr::null_mut()) };
    }
}

/// Checks a handle pointer: not NULL, and its magic word that of a live `T`.
///
/// # Safety
///
/// `ptr` is NULL or points to a `T` made by [`hand_out`] and not yet destroyed (a destroyed one
/// is usually caught by its cleared magic word, but reading freed memory is undefined).
unsafe fn check<T: Handle>(ptr: *const T, what: &str) -> Result<NonNull<T>, Failure> {
    let ptr = NonNull::new(ptr.cast_mut()).ok_or_else(|| Failure::null(what))?;
    // SAFETY: a live `T` by the caller's promise; read through a raw pointer before any
    // reference exists, so a wrong magic word is seen before anything relies on the value.
    let magic = unsafe { ptr::read_volatile(T::magic(ptr.as_ptr())) };
    if magic != T::MAGIC {
        let why = if magic == DEAD { "destroyed" } else { "not one" };
        return Err(Failure::new(
            shmlane_error::SHMLANE_ERROR_INVALID_HANDLE,
            format!("{what} is not a live {} handle ({why})", T::KIND),
        ));
    }
    Ok(ptr)
}

/// The handle behind `ptr`, shared.
///
/// # Safety
///
/// As [`check`]; no thread uses the handle mutably meanwhile (handles are used by one thread
/// at a time, except those documented as shareable).
pub(crate) unsafe fn get<'a, T: Handle>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: checked live above; the caller excludes concurrent mutable use.
    Ok(unsafe { check(ptr, what)?.as_ref() })
}

/// The handle behind `ptr`, exclusively.
///
/// # Safety
///
/// As [`check`]; no other thread uses the handle meanwhile.
pub(crate) unsafe fn get_mut<'a, T: Handle>(ptr: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: checked live above; the caller excludes any other use.
    Ok(unsafe { check(ptr, what)?.as_mut() })
}

/// Takes back and drops a handle if `ready` allows; NULL is a no-op. The magic word is
/// cleared first, so a second destroy of the same pointer is usually caught.
///
/// # Safety
///
/// As [`check`]; no other thread uses the handle, and nothing uses it after this succeeds.
pub(crate) unsafe fn destroy<T: Handle>(
    ptr: *mut T,
    what: &str,
    ready: impl FnOnce(&mut T) -> Result<(), Failure>,
) -> Result<(), Failure> {
    if ptr.is_null() {
        return Ok(());
    }
    // SAFETY: the caller's promise.
    let handle = unsafe { get_mut(ptr, what)? };
    ready(handle)?;
    // SAFETY: live (checked); the magic word is a plain `u64` field of it.
    unsafe { ptr::write_volatile(T::magic(ptr).cast_mut(), DEAD) };
    // SAFETY: made by `Box::into_raw` in `hand_out`; the caller never uses it again.
    drop(unsafe { Box::from_raw(ptr) });
    Ok(())
}

/// Checks that an out-pointer is not NULL.
pub(crate) fn out<T>(ptr: *mut T, what: &str) -> Result<NonNull<T>, Failure> {
    NonNull::new(ptr).ok_or_else(|| Failure::null(what))
}

/// A C string argument as UTF-8.
///
/// # Safety
///
/// `ptr` is NULL or points to a NUL-terminated string that stays unchanged during the call.
pub(crate) unsafe fn string<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's promise.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str().map_err(|_| {
        Failure::new(shmlane_error::SHMLANE_ERROR_INVALID_ARGUMENT, format!("{what} is not UTF-8"))
    })
}

/// An optional C string argument (NULL: none).
///
/// # Safety
///
/// As [`string`].
pub(crate) unsafe fn optional_string<'a>(
    ptr: *const c_char,
    what: &str,
) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's promise.
    unsafe { string(ptr, what) }.map(Some)
}

/// An optional struct argument (NULL: none), by copy.
///
/// # Safety
///
/// `ptr` is NULL or valid for a read of a `T`.
pub(crate) unsafe fn optional<T: Copy>(ptr: *const T) -> Option<T> {
    // SAFETY: the caller's promise.
    (!ptr.is_null()).then(|| unsafe { ptr.read() })
}

/// Implements [`Handle`] for a struct with a `magic: u64` field.
macro_rules! handle {
    ($type:ty, $kind:literal, $magic:literal) => {
        impl $crate::handle::Handle for $type {
            const MAGIC: u64 = $magic;
            const KIND: &'static str = $kind;

            unsafe fn magic(this: *const Self) -> *const u64 {
                // SAFETY: the caller's promise that `this` points to a live value; no
                // reference is made.
                unsafe { &raw const (*this).magic }
            }
        }
    };
}
pub(crate) use handle;
