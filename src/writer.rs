//! The one durable writer: every recording goes through it, in batches (group commit).
//!
//! A recording is queued with [`Writer::commit`] and the caller waits for its acknowledgement.
//! The writer thread takes everything queued so far as one batch and, in this order:
//! 1. writes each cassette file to a temp file, fsyncs it and renames it into place
//!    ([`crate::cassette::Staged`]): each file is old or new, never half;
//! 2. fsyncs every directory the batch touched, once: the renames are durable;
//! 3. applies the batch to sled and flushes sled once, with a blocking flush on this thread;
//! 4. acknowledges every request of the batch.
//!
//! So an acknowledged recording is on disk in the cassette and the store, and a crash at any
//! point leaves files the next start reads back (a file renamed but not yet in sled is picked
//! up by the start's sync). Tokio workers never block on fsync, and sled is never flushed from
//! two places at once: concurrent `flush_async` calls in sled 0.34 can park every I/O thread
//! waiting on each other, which hung `record` under parallel load.
//!
//! This module must never write anything it was not handed: only redacted interactions reach it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::cassette::{self, Cassette, CassetteError, Staged};
use crate::interaction::Interaction;
use crate::store::{Store, StoreError};

/// The most recordings one batch takes; the rest wait for the next one.
const MAX_BATCH: usize = 1024;

/// Threads writing and fsyncing one batch's files at once.
const FSYNC_THREADS: usize = 8;

/// One queued recording and whom to tell when it is durable.
struct Job {
    interaction: Interaction,
    done: oneshot::Sender<Result<PathBuf, StoreError>>,
}

/// The handle to the writer thread, shared by every connection.
pub struct Writer {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer thread for `cassette` and `store`.
    pub fn start(cassette: Cassette, store: Arc<Store>) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("plaid-vcr-writer".into())
            .spawn(move || run(&rx, &cassette, &store))
            .map_err(|source| StoreError::Open {
                path: PathBuf::from("plaid-vcr-writer thread"),
                source,
            })?;
        Ok(Writer {
            queue: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `interaction` and waits until it is durable in the cassette and the store;
    /// returns its file, relative to the cassette.
    pub async fn commit(&self, interaction: Interaction) -> Result<PathBuf, StoreError> {
        let (done, acked) = oneshot::channel();
        {
            let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(queue) = queue.as_ref() else {
                return Err(StoreError::Closed);
            };
            queue
                .send(Job { interaction, done })
                .map_err(|_| StoreError::WriterStopped)?;
        }
        // The writer answers every job it takes; a dropped sender means its thread died.
        acked.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Stops taking recordings, lets the writer finish what is queued and waits for it.
    /// Blocking: call it from a blocking context.
    pub fn close(&self) -> Result<(), StoreError> {
        drop(self.queue.lock().unwrap_or_else(PoisonError::into_inner).take());
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        match thread.map(JoinHandle::join) {
            Some(Err(_)) => Err(StoreError::WriterStopped),
            _ => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Never leave recordings half-committed: drain the queue before the store goes away.
        let _ = self.close();
    }
}

fn run(rx: &mpsc::Receiver<Job>, cassette: &Cassette, store: &Store) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(batch, cassette, store);
    }
}

/// One group commit. Every job is answered: its file, or what failed.
fn commit_batch(batch: Vec<Job>, cassette: &Cassette, store: &Store) {
    let t0 = std::time::Instant::now();
    // 1. Files: temp files written and fsynced in parallel (concurrent fsyncs share the
    // filesystem's journal commits, so a batch costs about one fsync, not one per file), then
    // renamed in queue order, so a later recording of the same key wins.
    let paths: Vec<PathBuf> = batch
        .iter()
        .map(|job| cassette.root().join(Cassette::path_of(&job.interaction)))
        .collect();
    let written = write_all(&batch, &paths);
    let mut staged: Vec<(Job, Result<PathBuf, StoreError>)> = Vec::with_capacity(batch.len());
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for ((job, full), file) in batch.into_iter().zip(paths).zip(written) {
        let result = file.and_then(|files| {
            let created = files.body.as_ref().map_or(&files.interaction.created, |b| &b.created);
            dirs.extend(created.as_deref().and_then(Path::parent).map(Path::to_owned));
            // A binary body lands before the interaction that points at it.
            if let Some(body) = files.body {
                body.install()?;
            }
            files.interaction.install()?;
            dirs.extend(full.parent().map(Path::to_owned));
            Ok(Cassette::path_of(&job.interaction))
        });
        staged.push((job, result.map_err(StoreError::from)));
    }
    let t1 = t0.elapsed();
    // 2. Directories, once each. A directory that cannot be synced fails the whole batch:
    // its renames may not survive a crash, and no recording is acknowledged on a maybe.
    for dir in &dirs {
        if let Err(source) = cassette::sync_dir(dir) {
            let message = format!("cannot sync directory {}: {source}", dir.display());
            for (_, result) in staged.iter_mut() {
                if result.is_ok() {
                    *result = Err(StoreError::Flush(message.clone()));
                }
            }
            break;
        }
    }
    let t2 = t0.elapsed();
    // 3. The store, then one blocking flush.
    for (job, result) in staged.iter_mut() {
        if let Ok(relative) = result {
            if let Err(e) = store.index_file(cassette, relative, &job.interaction) {
                *result = Err(e);
            }
        }
    }
    if let Err(e) = store.flush() {
        let message = e.to_string();
        for (_, result) in staged.iter_mut() {
            if result.is_ok() {
                *result = Err(StoreError::Flush(message.clone()));
            }
        }
    }
    tracing::debug!(
        size = staged.len(),
        files = ?t1,
        directories = ?(t2 - t1),
        store = ?(t0.elapsed() - t2),
        "batch committed"
    );
    // 4. Acknowledge. A client that went away no longer listens; its recording stands.
    for (job, result) in staged {
        let _ = job.done.send(result);
    }
}

/// The staged files of one recording: a binary answer's body file, and the interaction file.
struct Files {
    body: Option<Staged>,
    interaction: Staged,
}

/// Writes and fsyncs the temp file of every job, on up to [`FSYNC_THREADS`] threads; results
/// in job order.
fn write_all(batch: &[Job], paths: &[PathBuf]) -> Vec<Result<Files, CassetteError>> {
    let write = |i: usize| {
        let interaction = &batch[i].interaction;
        let body = match (&interaction.response.body_file, &interaction.binary_body) {
            (Some(name), Some(bytes)) => Some(Staged::write(&paths[i].with_file_name(name), bytes)?),
            _ => None,
        };
        Ok(Files {
            body,
            interaction: Staged::write(&paths[i], &interaction.to_file_bytes())?,
        })
    };
    let threads = FSYNC_THREADS.min(batch.len());
    if threads <= 1 {
        return (0..batch.len()).map(write).collect();
    }
    let mut slots: Vec<Option<Result<Files, CassetteError>>> = (0..batch.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let write = &write;
                scope.spawn(move || {
                    (t..batch.len())
                        .step_by(threads)
                        .map(|i| (i, write(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(done) => {
                    for (i, result) in done {
                        slots[i] = Some(result);
                    }
                }
                // A panicking write is a bug; its jobs are answered as failed (below).
                Err(_) => tracing::error!("a cassette write panicked"),
            }
        }
    });
    slots
        .into_iter()
        .zip(paths)
        .map(|(slot, path)| {
            slot.unwrap_or_else(|| {
                Err(CassetteError::Write {
                    path: path.clone(),
                    source: std::io::Error::other("the write panicked"),
                })
            })
        })
        .collect()
}
