//! The allocator: mimalloc instead of the system allocator. A request makes a few dozen
//! short-lived allocations, on which glibc's malloc/free spent ~15% of the gateway's
//! instructions (BENCHMARKS.md). Built as mimalloc v2 without transparent huge pages (with
//! them a mostly idle gateway held 2 MiB pages it touched only a little of).

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v2's `mi_option_e` (the crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Hand freed memory back to the OS when it is freed. mimalloc's default waits 10 ms and then
/// purges only when the freeing thread next allocates, so memory freed just before a thread
/// goes quiet stayed resident: at first start, the 19 MiB of the admin password's argon2 hash
/// kept RSS ~20 MB higher through 100k requests. Measured (BENCHMARKS.md): no CPU cost per
/// request beyond noise. Call first thing in `main`.
#[allow(unsafe_code)]
pub fn configure() {
    // SAFETY: sets one of mimalloc's option integers; takes no pointers, and mimalloc reads its
    // options atomically, so this is sound at any time from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}
