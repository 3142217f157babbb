//! The process's memory allocator: mimalloc, built without transparent huge pages.
//!
//! Why not glibc's malloc: the ensemble's write path allocates and frees small buffers on
//! several threads (connection tasks, the core, the log writer, the peer transport), and
//! glibc spent 6-8 % of a leader's samples in `_int_malloc`, `_int_free` and
//! `malloc_consolidate`; mimalloc's per-thread free lists cut that (ensemble `set` and
//! `multi` went up 10-14 %, see bench/NOTES.md). Huge pages stay off: with them every thread's
//! first page is a 2 MiB page, which tripled the idle server's resident memory.
//!
//! The binary installs [`Allocator`] as the global allocator; the library only asks it to
//! hand memory back after a burst (see [`release_free_memory`]).

/// The allocator type `main` installs with `#[global_allocator]`.
pub type Allocator = mimalloc::MiMalloc;

/// Returns freed memory to the operating system now instead of after mimalloc's purge delay,
/// and collects pages other threads left behind. Called after recovery, whose transient
/// buffers (snapshot batches decoded on a second thread) would otherwise stay resident for a
/// while. Cheap when there is nothing to give back; harmless when mimalloc is not the global
/// allocator (it then only tidies mimalloc's own, unused heap).
pub fn release_free_memory() {
    // SAFETY: mi_collect takes no pointers and may be called at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
