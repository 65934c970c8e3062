//! The log writer: lines collected in memory and written to stderr in batches.
//!
//! A request's log line is a copy into a buffer under a short lock; a flusher thread writes
//! the buffer out every [`FLUSH_EVERY`] or as soon as it holds [`FLUSH_AT`] bytes. So a busy
//! server makes a handful of `write` calls a second instead of one per request, and no thread
//! is woken per line. Nothing is dropped: a writer that outruns the disk waits. Dropping the
//! [`Flusher`] writes out what is left; only a `kill -9` loses the last fraction of a second of
//! log lines (never anything recorded).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A buffer this full is written out at once.
pub const FLUSH_AT: usize = 64 * 1024;

#[derive(Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    wake: Condvar,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    closed: bool,
}

/// A `tracing_subscriber` writer factory whose writers append to the shared buffer.
#[derive(Clone)]
pub struct LogBuffer {
    shared: Arc<Shared>,
}

/// Writes the buffer out when dropped (and stops the flusher thread).
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A buffered writer to `out`, and the guard that flushes it.
pub fn buffered(out: impl Write + Send + 'static) -> std::io::Result<(LogBuffer, Flusher)> {
    let shared = Arc::new(Shared::default());
    let flushing = shared.clone();
    let thread = std::thread::Builder::new()
        .name("plaid-vcr-log".into())
        .spawn(move || flush_loop(&flushing, out))?;
    Ok((
        LogBuffer { shared: shared.clone() },
        Flusher {
            shared,
            thread: Some(thread),
        },
    ))
}

fn flush_loop(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let closed = {
            let buffer = shared.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            let (mut buffer, _) = shared
                .wake
                .wait_timeout_while(buffer, FLUSH_EVERY, |b| !b.closed && b.bytes.len() < FLUSH_AT)
                .unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut batch, &mut buffer.bytes);
            buffer.closed
        };
        if !batch.is_empty() {
            // A log that cannot be written (stderr closed) must not stop the server.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
        }
        if closed {
            return;
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.buffer.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One log event's writer: appends to the shared buffer. tracing writes each event with one
/// `write_all`, so lines from concurrent requests never interleave. It borrows the buffer: a
/// reference count bumped and dropped per line would be two more writes to a cache line every
/// core shares.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.shared.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        if buffer.closed {
            // After the flusher stopped (shutdown), write through rather than lose the line.
            return std::io::stderr().write(bytes);
        }
        buffer.bytes.extend_from_slice(bytes);
        if buffer.bytes.len() >= FLUSH_AT {
            self.shared.wake.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter { shared: &self.shared }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_and_all_of_them_by_the_time_the_flusher_is_dropped() {
        let sink = Sink::default();
        let (writer, flusher) = buffered(sink.clone()).unwrap();
        let mut threads = Vec::new();
        for t in 0..4 {
            let writer = writer.clone();
            threads.push(std::thread::spawn(move || {
                for i in 0..1000 {
                    // As tracing writes an event: formatted first, then one write_all.
                    let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&writer);
                    w.write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        drop(flusher);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 4000);
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..1000).collect::<Vec<_>>(), "thread {t}'s lines in order");
        }
    }
}
