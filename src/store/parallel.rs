//! Many cassette files at once: reading, parsing and syncing them on every core.
//!
//! Start-up, `scan`, `check` and the writer's fsyncs each touch thousands of small files, where
//! one thread per core (or more for fsyncs, which wait on the disk) is what makes them fast.
//! Scoped threads, so the work may borrow; results come back in the items' order.

/// `f` over `items` (cassette files, typically) on every core, results in order. A panic in `f` is a bug and is passed on.
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    parallel_map_on(cores, items, f)
}

/// [`parallel_map`] on up to `threads` threads: more than the cores for work that waits on
/// the disk (fsyncs).
pub fn parallel_map_on<T: Sync, R: Send>(threads: usize, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(per_thread)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}
