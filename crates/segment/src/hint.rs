//! Cache hints that move a line between cores ahead of the access that needs it: PREFETCHW
//! (fetch for writing) and CLDEMOTE (push out to the shared cache). Each is detected once by
//! CPUID and is a no-op without it; neither faults, nor changes memory. The segment's
//! `prefetch_write` and `demote` take offsets; [`demote`] takes a reference.

/// A hint instruction on the line of an address, issued only if the CPU has it.
macro_rules! line_hint {
    ($(#[$doc:meta])* $name:ident, $available:ident, $instruction:literal) => {
        $(#[$doc])*
        #[inline]
        pub(crate) fn $name(line: *const u8) {
            #[cfg(target_arch = "x86_64")]
            if cpu::$available() {
                // SAFETY: the CPU has the instruction (CPUID); it is a hint that never faults,
                // reads nothing into a register and changes no memory, flag or stack, and its
                // address lies in a live mapping (the caller's contract).
                unsafe {
                    std::arch::asm!(
                        concat!($instruction, " [{line}]"),
                        line = in(reg) line,
                        options(readonly, nostack, preserves_flags)
                    );
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = line;
        }
    };
}

line_hint!(
    /// Fetches the line of `line` for writing (PREFETCHW). `line` lies in a live mapping.
    prefetch_write,
    prefetchw,
    "prefetchw"
);

line_hint!(
    /// Moves the line of `line` from this core's private caches to the shared cache
    /// (CLDEMOTE), where the next core to read it finds it without snooping ours. `line` lies
    /// in a live mapping.
    demote_line,
    cldemote,
    "cldemote"
);

/// Asks the CPU to move the cache line holding the start of `value` out of this core's private
/// caches to the shared cache (CLDEMOTE), so that the core that reads it next finds it there
/// instead of snooping ours: for a value just written for a consumer that is waiting for it.
/// A hint: it changes nothing, and does nothing on a CPU without CLDEMOTE (or for a zero-sized
/// value).
#[inline]
pub fn demote<T: ?Sized>(value: &T) {
    // A zero-sized value's address need not lie in any allocation.
    if size_of_val(value) != 0 {
        demote_line((value as *const T).cast());
    }
}

/// Feature bits, each read once (rustc's `prfchw` and `cldemote` target features are not stable
/// yet, hence CPUID and inline assembly).
#[cfg(target_arch = "x86_64")]
mod cpu {
    use std::arch::x86_64::__cpuid_count;
    use std::sync::OnceLock;

    /// CPUID leaf 0x8000_0001, ECX bit 8 (PRFCHW, also named 3DNowPrefetch).
    pub(super) fn prefetchw() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            #[allow(unused_unsafe)]
            // SAFETY: every x86_64 CPU has CPUID and its extended leaves up to the maximum that
            // leaf 0x8000_0000 reports (checked before leaf 0x8000_0001 is read).
            unsafe {
                __cpuid_count(0x8000_0000, 0).eax >= 0x8000_0001
                    && __cpuid_count(0x8000_0001, 0).ecx & (1 << 8) != 0
            }
        })
    }

    /// CPUID leaf 7 subleaf 0, ECX bit 25 (CLDEMOTE).
    pub(super) fn cldemote() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            #[allow(unused_unsafe)]
            // SAFETY: every x86_64 CPU has CPUID and its basic leaves up to the maximum that
            // leaf 0 reports (checked before leaf 7 is read).
            unsafe {
                __cpuid_count(0, 0).eax >= 7 && __cpuid_count(7, 0).ecx & (1 << 25) != 0
            }
        })
    }
}
