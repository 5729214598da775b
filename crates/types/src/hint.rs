//! Cache hints for the core thread's tables.

/// Starts loading the cache line of `item` into every cache level, without waiting for it.
///
/// The core thread calls it for the table buckets the next command will touch while it is
/// still working on the current one, so their cache misses overlap that work. A hint only: the
/// program's results are the same with or without it.
#[inline]
pub fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let p: *const T = item;
        // SAFETY: PREFETCHT0 is only a hint: it never faults, writes nothing and has no
        // effect the program can observe (and the address is that of a live value). SSE,
        // which provides it, is part of the x86_64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

#[cfg(test)]
mod tests {
    use super::prefetch;

    #[test]
    fn prefetching_leaves_every_value_as_it_was() {
        // Prefetch the first, middle and last elements of a table larger than a page, and a
        // zero-sized value: nothing faults and nothing changes.
        let table: Vec<u64> = (0..4096).collect();
        for i in [0, 2048, 4095] {
            prefetch(&table[i]);
        }
        prefetch(&());
        assert!(table.iter().enumerate().all(|(i, &v)| v == i as u64));
    }
}
