//! The allocator: mimalloc instead of the system allocator. A request makes a few dozen
//! short-lived allocations, on which glibc's malloc/free spent ~15% of the gateway's
//! instructions (BENCHMARKS.md). Built as mimalloc v2 without transparent huge pages (with
//! them a mostly idle gateway held 2 MiB pages it touched only a little of).

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
