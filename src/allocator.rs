//! The process's memory allocator: mimalloc, called the way the C library's `malloc` is.
//!
//! The `mimalloc` crate's `GlobalAlloc` passes every request to `mi_malloc_aligned`, whose fast
//! path only serves blocks up to 1 KiB that happen to sit at the asked alignment; everything
//! else (a request's 4 KB future, the 4 KiB read buffers) takes a generic path that ends in
//! `mi_malloc` anyway, at about 50 more instructions per allocation. Rust asks for an alignment
//! of 16 or less almost always, and mimalloc guarantees that much for any block at least as
//! large as the alignment (`mi_malloc_is_naturally_aligned`), so those go to `mi_malloc`
//! straight; the rare larger alignments (tokio's cache-padded task cells) keep the aligned
//! entry points. Measured with `bench/profile callgrind`: see `bench/results/profile.md`.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment every mimalloc block of at least this size has (`MI_MAX_ALIGN_SIZE`).
const NATURAL_ALIGN: usize = 16;

/// mimalloc as the global allocator (`#[global_allocator]` in the binary).
pub struct Mimalloc;

/// Whether a block of `size` bytes from plain `mi_malloc` is aligned enough.
#[inline(always)]
fn naturally_aligned(align: usize, size: usize) -> bool {
    align <= NATURAL_ALIGN && align <= size
}

// SAFETY: every pointer handed out comes from mimalloc with at least the layout's size and
// alignment (plain calls only where mimalloc guarantees the alignment, see above), and every
// pointer taken back is freed or resized by mimalloc, which accepts blocks from any of its
// allocation entry points.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if naturally_aligned(layout.align(), layout.size()) {
            mi::mi_malloc(layout.size()) as *mut u8
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if naturally_aligned(layout.align(), layout.size()) {
            mi::mi_zalloc(layout.size()) as *mut u8
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr as *mut c_void)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if naturally_aligned(layout.align(), new_size) {
            mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
        } else {
            mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every size class up to 64 KiB, at every alignment up to 4 KiB, come back
    /// aligned, hold their bytes, keep them through growing and shrinking, and zeroed ones are
    /// zero.
    #[test]
    fn blocks_are_aligned_and_keep_their_contents() {
        let a = Mimalloc;
        let sizes = (1..=256usize).chain((257..=65536).step_by(1021));
        for size in sizes {
            for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let layout = Layout::from_size_align(size, align).expect("valid layout");
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(p, 0xA5, size);

                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed size {size} align {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|b| *b == 0));
                    a.dealloc(z, layout);

                    // Grow, then shrink below the original size: the bytes kept stay.
                    let grown = size * 3 + 1;
                    let q = a.realloc(p, layout, grown);
                    assert_eq!(q as usize % align, 0, "grow {size} -> {grown} align {align}");
                    assert!(std::slice::from_raw_parts(q, size).iter().all(|b| *b == 0xA5));
                    let shrunk = (size / 2).max(1);
                    let r = a.realloc(q, Layout::from_size_align(grown, align).expect("valid layout"), shrunk);
                    assert_eq!(r as usize % align, 0, "shrink {grown} -> {shrunk} align {align}");
                    assert!(std::slice::from_raw_parts(r, shrunk).iter().all(|b| *b == 0xA5));
                    a.dealloc(r, Layout::from_size_align(shrunk, align).expect("valid layout"));
                }
            }
        }
    }
}
