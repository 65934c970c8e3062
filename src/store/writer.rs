//! The one durable writer: every recording goes through it, in batches (group commit).
//!
//! A recording is queued with [`Writer::commit`] and the caller waits for its acknowledgement.
//! The writer thread takes everything queued so far as one batch and, in this order:
//! 1. writes each cassette file to a temp file next to it ([`crate::store::cassette::Staged`]), not
//!    yet synced;
//! 2. puts into sled, for each, the index entry and the file's bytes in the journal, and
//!    flushes sled once (a blocking flush on this thread): the recording is now durable;
//! 3. renames the temp files into place, in queue order (a later recording of a key wins):
//!    each file is old or new, never half, and readable at once;
//! 4. acknowledges every request of the batch;
//! 5. hands the installed files to the syncer thread, which fsyncs them and their directories
//!    (many at once: concurrent fsyncs share the filesystem's journal commits) and then drops
//!    their journal entries.
//!
//! So the path of one recording has one sync (sled's flush), where it had three (the file, its
//! directory, sled), and the syncer's work overlaps the next batch. An acknowledged recording
//! is in the store, and its cassette file is in place: a `kill -9` at any point loses nothing
//! (the kernel has the file), and after a power loss the next start writes out, synced, every
//! file the journal still holds ([`Store::complete_journal`]) before it reads the cassette.
//! A crash before step 2's flush loses only unacknowledged recordings (their temp files are
//! swept at the next start). Tokio workers never block on fsync, and sled is never flushed from
//! two places at once: concurrent `flush_async` calls in sled 0.34 can park every I/O thread
//! waiting on each other, which hung `record` under parallel load.
//!
//! This module must never write anything it was not handed: only redacted interactions reach it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::store::cassette::{self, Cassette, CassetteError, Staged};
use crate::store::db::{Store, StoreError};
use crate::store::interaction::Interaction;
use crate::store::parallel;

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

fn run(rx: &mpsc::Receiver<Job>, cassette: &Cassette, store: &Arc<Store>) {
    let (to_syncer, synced) = mpsc::channel::<Vec<Installed>>();
    let spares = Arc::new(Spares::default());
    let (syncing, refilling) = (store.clone(), spares.clone());
    let syncer = std::thread::Builder::new()
        .name("plaid-vcr-syncer".into())
        .spawn(move || sync_loop(&synced, &syncing, &refilling));
    let syncer = match syncer {
        Ok(syncer) => Some(syncer),
        Err(e) => {
            // Without it every recording stays journaled until the next start writes it out
            // again: still durable, so keep recording, but say so.
            tracing::error!(error = %e, "cannot start the file syncer thread; recordings stay in the store's journal until the next start");
            None
        }
    };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let installed = commit_batch(batch, cassette, store, &spares);
        if syncer.is_some() && !installed.is_empty() {
            let _ = to_syncer.send(installed);
        }
    }
    // The writer is closing: the syncer finishes what it was handed, then stops.
    drop(to_syncer);
    if let Some(syncer) = syncer {
        let _ = syncer.join();
    }
}

/// A cassette file in place, not yet synced: its handle, where it is, and the bytes the journal
/// holds for it.
struct Installed {
    file: std::fs::File,
    relative: PathBuf,
    bytes: Vec<u8>,
    /// Directories whose entries changed: the file's own, and any created for it.
    dirs: Vec<PathBuf>,
}

/// One group commit. Every job is answered: its file, or what failed. Returns the files to sync.
fn commit_batch(batch: Vec<Job>, cassette: &Cassette, store: &Store, spares: &Spares) -> Vec<Installed> {
    let t0 = std::time::Instant::now();
    // 1. Temp files, unsynced: the journal makes them durable.
    let mut staged: Vec<(Job, Result<Files, StoreError>)> = Vec::with_capacity(batch.len());
    for job in batch {
        let files = stage(&job.interaction, cassette, spares).map_err(StoreError::from);
        staged.push((job, files));
    }
    let t1 = t0.elapsed();
    // 2. The store: index entries and journal, then one blocking flush.
    for (job, files) in staged.iter_mut() {
        if let Ok(f) = files {
            let relative = &f.interaction.relative;
            let indexed = journaled(f)
                .try_for_each(|(file, bytes)| store.journal(file, bytes))
                .and_then(|()| store.index_staged(relative, f.interaction.staged.temp_path(), &job.interaction));
            if let Err(e) = indexed {
                forget(store, journaled(f), relative, &job.interaction.index_key());
                *files = Err(e);
            }
        }
    }
    if let Err(e) = store.flush() {
        // Nothing is renamed into place: the temp files go away with `staged`, and their
        // journal entries must not reach the disk with a later flush (the next start would
        // write out recordings whose clients were told they failed).
        let message = e.to_string();
        for (job, files) in staged.iter_mut() {
            if let Ok(f) = files {
                forget(
                    store,
                    journaled(f),
                    &f.interaction.relative,
                    &job.interaction.index_key(),
                );
                *files = Err(StoreError::Flush(message.clone()));
            }
        }
    }
    let t2 = t0.elapsed();
    // 3. Into place, in queue order; 4. acknowledged.
    let mut installed = Vec::new();
    for (job, files) in staged {
        let result = files.and_then(|f| {
            let relative = f.interaction.relative.clone();
            install(f, &relative, &job.interaction, cassette, store, &mut installed)?;
            Ok(relative)
        });
        // A client that went away no longer listens; its recording stands.
        let _ = job.done.send(result);
    }
    tracing::debug!(size = installed.len(), files = ?t1, store = ?(t2 - t1), install = ?(t0.elapsed() - t2), "batch committed");
    installed
}

/// Renames a recording's files into place, the body first (it lands before the interaction that
/// points at it), adding each to `installed`. If one cannot be put in place, the recording is
/// answered as failed: that file's and the later ones' journal entries and the recording's index
/// entry are dropped, so neither this run nor the next start brings it back.
fn install(
    files: Files,
    relative: &Path,
    interaction: &Interaction,
    cassette: &Cassette,
    store: &Store,
    installed: &mut Vec<Installed>,
) -> Result<(), CassetteError> {
    let mut files = files.body.into_iter().chain([files.interaction]);
    while let Some(file) = files.next() {
        let dirs = file.dirs(cassette);
        let File {
            staged,
            relative: file_relative,
            bytes,
        } = file;
        match staged.install() {
            Ok(handle) => installed.push(Installed {
                file: handle,
                relative: file_relative,
                bytes,
                dirs,
            }),
            Err(e) => {
                let not_in_place: Vec<(PathBuf, Vec<u8>)> = [(file_relative, bytes)]
                    .into_iter()
                    .chain(files.map(|f| (f.relative, f.bytes)))
                    .collect();
                let not_in_place = not_in_place.iter().map(|(f, b)| (f.as_path(), b.as_slice()));
                forget(store, not_in_place, relative, &interaction.index_key());
                return Err(e);
            }
        }
    }
    Ok(())
}

/// What the journal holds (or may hold) for a recording: each file and its bytes.
fn journaled(files: &Files) -> impl Iterator<Item = (&Path, &[u8])> {
    let all = files.body.iter().chain([&files.interaction]);
    all.map(|file| (file.relative.as_path(), file.bytes.as_slice()))
}

/// Drops the journal entries of `files` and the index entry of the recording at `relative`, one
/// that will not be in place (answered as failed): a later flush must not make them durable,
/// and neither this run nor the next start must bring it back.
fn forget<'a>(store: &Store, files: impl IntoIterator<Item = (&'a Path, &'a [u8])>, relative: &Path, index_key: &str) {
    for (file, bytes) in files {
        if let Err(e) = store.journal_done(file, bytes) {
            tracing::error!(error = %e, "cannot drop a failed recording from the store's journal");
        }
    }
    if let Err(e) = store.unindex(relative, index_key) {
        tracing::error!(error = %e, "cannot drop a failed recording from the store's index");
    }
}

/// Syncs installed files and their directories, a batch (everything handed over so far) at a
/// time, then drops their journal entries. A file or directory that cannot be synced keeps its
/// entry: the next start writes the file out again.
fn sync_loop(rx: &mpsc::Receiver<Vec<Installed>>, store: &Store, spares: &Spares) {
    while let Ok(mut files) = rx.recv() {
        while let Ok(more) = rx.try_recv() {
            files.extend(more);
        }
        // Spares first (the next batch may already be waiting for them), twice as many per
        // directory as this batch used, so a steady stream never runs out.
        let mut used: HashMap<&Path, usize> = HashMap::new();
        for file in &files {
            if let Some(dir) = file.dirs.first() {
                *used.entry(dir.as_path()).or_default() += 1;
            }
        }
        for (dir, n) in used {
            spares.refill(dir, 2 * n);
        }
        // Concurrent fsyncs share the filesystem's journal commits: a round costs about one.
        let synced = parallel::parallel_map_on(FSYNC_THREADS, &files, |f| f.file.sync_all());
        let mut dirs: BTreeSet<&Path> = BTreeSet::new();
        for file in &files {
            dirs.extend(file.dirs.iter().map(PathBuf::as_path));
        }
        let mut dirs_ok = true;
        for dir in dirs {
            if let Err(e) = cassette::sync_dir(dir) {
                tracing::error!(dir = %dir.display(), error = %e, "cannot sync a cassette directory; its recordings stay in the store's journal");
                dirs_ok = false;
            }
        }
        for (file, synced) in files.iter().zip(synced) {
            match synced {
                Ok(()) if dirs_ok => {
                    if let Err(e) = store.journal_done(&file.relative, &file.bytes) {
                        tracing::error!(error = %e, "cannot update the store's journal");
                    }
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(file = %file.relative.display(), error = %e, "cannot sync a cassette file; it stays in the store's journal")
                }
            }
        }
    }
}

/// Empty temp files made ahead in the directories recordings go to, so that a recording's path
/// does not wait for a file to be created: on this project's CI machine (ext4 on a virtual
/// disk) creating one takes about 0.4 ms, more than everything else the writer does for it.
/// The syncer makes them after each batch; a crash leaves them as leftovers, which the next
/// recording start sweeps like any other temp file, and they are deleted when recording stops.
#[derive(Default)]
struct Spares {
    by_dir: Mutex<HashMap<PathBuf, Vec<tempfile::NamedTempFile>>>,
}

/// The most spare files kept in one directory.
const MAX_SPARES: usize = 64;

impl Spares {
    fn take(&self, dir: &Path) -> Option<tempfile::NamedTempFile> {
        self.by_dir
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(dir)?
            .pop()
    }

    /// Makes spares in `dir` until it has `want` (at most [`MAX_SPARES`]).
    fn refill(&self, dir: &Path, want: usize) {
        let want = want.clamp(1, MAX_SPARES);
        let have = self
            .by_dir
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(dir)
            .map_or(0, Vec::len);
        // Created outside the lock: the writer takes spares meanwhile.
        let made: Vec<_> = (have..want).map_while(|_| cassette::temp_file_in(dir).ok()).collect();
        self.by_dir
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(dir.to_owned())
            .or_default()
            .extend(made);
    }
}

/// The staged files of one recording: a binary answer's body file, and the interaction file.
struct Files {
    body: Option<File>,
    interaction: File,
}

/// One staged file: where it goes and its bytes (for the journal).
struct File {
    staged: Staged,
    relative: PathBuf,
    bytes: Vec<u8>,
}

impl File {
    /// The directories a rename of this file changes: its own, and its parent if it was created.
    fn dirs(&self, cassette: &Cassette) -> Vec<PathBuf> {
        let own = cassette.root().join(&self.relative);
        let mut dirs: Vec<PathBuf> = own.parent().map(Path::to_owned).into_iter().collect();
        dirs.extend(
            self.staged
                .created
                .as_deref()
                .and_then(Path::parent)
                .map(Path::to_owned),
        );
        dirs
    }
}

/// Writes the temp files of one recording (unsynced), into spares where there are some.
fn stage(interaction: &Interaction, cassette: &Cassette, spares: &Spares) -> Result<Files, CassetteError> {
    let relative = Cassette::path_of(interaction);
    let file = |relative: PathBuf, bytes: Vec<u8>| {
        let path = cassette.root().join(&relative);
        let spare = path
            .parent()
            .filter(|dir| dir.is_dir())
            .and_then(|dir| spares.take(dir));
        let staged = match spare {
            Some(tmp) => Staged::write_into(tmp, &path, &bytes)?,
            None => Staged::write_unsynced(&path, &bytes)?,
        };
        Ok::<_, CassetteError>(File {
            staged,
            relative,
            bytes,
        })
    };
    let body = match (&interaction.response.body_file, &interaction.binary_body) {
        (Some(name), Some(bytes)) => Some(file(relative.with_file_name(name), bytes.to_vec())?),
        _ => None,
    };
    Ok(Files {
        body,
        interaction: file(relative, interaction.to_file_bytes())?,
    })
}
