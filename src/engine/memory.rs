//! A per-query memory budget for SQLite. trex installs its own SQLite allocator (before the
//! first connection opens) that counts, per thread, what SQLite allocates while a budget is set
//! on that thread; an allocation past the budget fails, and SQLite reports `SQLITE_NOMEM` for
//! that query only. The engine's worker threads set the budget around each user query
//! ([`with_budget`]); the control store's threads never do, so administration is not limited.
//! Without this, one `SELECT` of forty 16 MB values makes SQLite hold 640 MB before the first
//! row is returned.

use std::alloc::{Layout, alloc, dealloc, realloc};
use std::cell::Cell;
use std::os::raw::{c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// Bytes in front of every block, holding its size (16 keeps the block 16-aligned).
const HEADER: usize = 16;

thread_local! {
    /// `(allocated since the budget was set, budget)`; budget 0 = none.
    static USE: Cell<(i64, i64)> = const { Cell::new((0, 0)) };
}

fn layout(n: usize) -> Option<Layout> {
    Layout::from_size_align(n.checked_add(HEADER)?, HEADER).ok()
}

/// Counts `delta` bytes on this thread; false when that would pass the budget.
fn charge(delta: i64) -> bool {
    USE.try_with(|u| {
        let (used, budget) = u.get();
        if budget > 0 && delta > 0 && used + delta > budget {
            return false;
        }
        u.set((used + delta, budget));
        true
    })
    .unwrap_or(true)
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let n = n.max(0) as usize;
    if !charge(n as i64) {
        return std::ptr::null_mut();
    }
    let Some(l) = layout(n) else {
        return std::ptr::null_mut();
    };
    unsafe {
        let p = alloc(l);
        if p.is_null() {
            return p as *mut c_void;
        }
        (p as *mut usize).write(n);
        p.add(HEADER) as *mut c_void
    }
}

unsafe fn size_of_block(p: *mut c_void) -> usize {
    unsafe { ((p as *mut u8).sub(HEADER) as *mut usize).read() }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    unsafe {
        let n = size_of_block(p);
        charge(-(n as i64));
        dealloc((p as *mut u8).sub(HEADER), layout(n).expect("stored size"));
    }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    if p.is_null() {
        return unsafe { x_malloc(n) };
    }
    let n = n.max(0) as usize;
    unsafe {
        let old = size_of_block(p);
        let delta = n as i64 - old as i64;
        if !charge(delta) {
            return std::ptr::null_mut();
        }
        let base = (p as *mut u8).sub(HEADER);
        let q = realloc(base, layout(old).expect("stored size"), n + HEADER);
        if q.is_null() {
            charge(-delta);
            return std::ptr::null_mut();
        }
        (q as *mut usize).write(n);
        q.add(HEADER) as *mut c_void
    }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        0
    } else {
        unsafe { size_of_block(p) as c_int }
    }
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    (n + 7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Installs the counting allocator. Must run before SQLite is first used in the process
/// (`trex`'s `main` and [`crate::App::open`] call it first); later calls return whether the first
/// one succeeded. When SQLite was already initialised, budgets are not enforced (logged).
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SQLite copies the structure before sqlite3_config returns
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods) };
        rc == ffi::SQLITE_OK
    })
}

/// Makes the C allocator give large blocks back to the system when they are freed (glibc):
/// blocks of 256 KiB and more are mapped on their own, and freed heap tops are trimmed past
/// 1 MiB. Without it glibc raises its mapping threshold after the first large result, and every
/// later multi-megabyte result stays in the heap after it was sent — a server that answered one
/// 7 MB call per worker thread kept ~200 MiB resident.
pub fn release_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        const M_TRIM_THRESHOLD: c_int = -1;
        const M_MMAP_THRESHOLD: c_int = -3;
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 256 * 1024);
            mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
        }
    }
}

/// True when per-query budgets are enforced in this process.
pub fn enforced() -> bool {
    INSTALLED.get().copied().unwrap_or(false)
}

/// Runs `f` with at most `budget` bytes of SQLite allocations on this thread.
pub fn with_budget<T>(budget: usize, f: impl FnOnce() -> T) -> T {
    let prev = USE.with(|u| u.replace((0, budget as i64)));
    let r = f();
    USE.with(|u| u.set(prev));
    r
}

/// True when the last failure on this thread was the budget (for the error message).
pub fn is_nomem(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::OutOfMemory)
}
