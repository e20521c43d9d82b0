//! The allocator: mimalloc instead of the system allocator. A request makes a few dozen
//! short-lived allocations, on which glibc's malloc/free spent ~15% of the gateway's
//! instructions (BENCHMARKS.md). Built as mimalloc v2 without transparent huge pages (with
//! them a mostly idle gateway held 2 MiB pages it touched only a little of).

#[global_allocator]
static ALLOC: Mi = Mi;

/// mimalloc, asked the cheapest way for each layout. The `mimalloc` crate's allocator calls
/// `mi_malloc_aligned` for every allocation; for the word alignment nearly every Rust value
/// has, plain `mi_malloc` gives the same guarantee (every mimalloc block is a whole number of
/// words, so word-aligned) for ~35 fewer instructions an allocation (~60 allocations a
/// request: ~2k instructions, BENCHMARKS.md). Larger alignments keep the aligned calls.
struct Mi;

/// The alignment every `mi_malloc` block has.
const WORD: usize = std::mem::size_of::<usize>();

#[allow(unsafe_code)]
// SAFETY: each method passes the layout's size (and, above word alignment, its alignment) to
// the matching mimalloc function, which returns null on failure as `GlobalAlloc` expects;
// pointers handed back come from mimalloc, and are freed or resized only by it.
unsafe impl std::alloc::GlobalAlloc for Mi {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys as mi;
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys as mi;
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: see the impl.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys as mi;
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

/// `mi_option_purge_delay` in mimalloc v2's `mi_option_e` (the crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc v2's default purge delay, in milliseconds.
const DEFAULT_PURGE_DELAY_MS: i64 = 10;

/// Start-up: hand freed memory back to the OS as soon as it is freed. mimalloc otherwise
/// purges freed memory only when the freeing thread next allocates, so the 19 MiB of the
/// first start's argon2 password hash stayed resident for good (RSS ~20 MB higher through
/// 100k requests). Not for serving: purging at once cost ~0.8 page faults and ~8% more CPU a
/// request (BENCHMARKS.md), so [`serving`] restores the default. An operator's own
/// `MIMALLOC_PURGE_DELAY` wins over both. Call first thing in `main`.
pub fn starting() {
    set_purge_delay(0);
}

/// Serving: mimalloc's default purge delay again (see [`starting`]).
pub fn serving() {
    set_purge_delay(DEFAULT_PURGE_DELAY_MS);
}

#[allow(unsafe_code)]
fn set_purge_delay(ms: i64) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one of mimalloc's option integers; takes no pointers, and mimalloc reads its
    // options atomically, so this is sound at any time from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as std::os::raw::c_long) }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn every_layout_gets_its_alignment_and_keeps_its_bytes_through_realloc() {
        let a = super::Mi;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 9, 24, 100, 1024, 5000, 100_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; each pointer is used within its layout and freed once.
                unsafe {
                    let z = a.alloc_zeroed(layout);
                    assert!(
                        !z.is_null() && (z as usize).is_multiple_of(align),
                        "zeroed {size}/{align}"
                    );
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                    let p = a.alloc(layout);
                    assert!(
                        !p.is_null() && (p as usize).is_multiple_of(align),
                        "alloc {size}/{align}"
                    );
                    for i in 0..size {
                        *p.add(i) = i as u8;
                    }
                    // Grow, then shrink below the original size.
                    let (mut p, mut layout) = (p, layout);
                    for new_size in [size * 3, size.div_ceil(2)] {
                        let q = a.realloc(p, layout, new_size);
                        assert!(
                            !q.is_null() && (q as usize).is_multiple_of(align),
                            "realloc {size}/{align}"
                        );
                        let kept = size.min(new_size);
                        assert!(
                            (0..kept).all(|i| *q.add(i) == i as u8),
                            "bytes {size}/{align}"
                        );
                        (p, layout) = (q, Layout::from_size_align(new_size, align).unwrap());
                    }
                    a.dealloc(p, layout);
                }
            }
        }
    }
}
