//! Bringing the store in line with the cassette at start-up: which files are new, changed or
//! gone since the last start, found by fingerprint (length, mtime, inode) without reading the
//! unchanged ones, and a digest of the whole listing that skips the work entirely when
//! nothing changed. A broken file fails the sync, naming it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::{path_bytes, Entries, Recorded, Store, StoreError};
use crate::store::cassette::{Cassette, CassetteError};
use crate::store::parallel::parallel_map;

/// What [`Store::sync_cassette`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Interaction files in the cassette.
    pub files: usize,
    /// Files parsed because they were new or changed since the last start.
    pub loaded: usize,
    /// Index entries dropped because their file was deleted or changed key.
    pub removed: usize,
}

/// The `state` entry holding the digest of the listing last synced.
pub(super) const LISTING: &[u8] = b"listing";

/// SHA-256 over every (path, fingerprint) of a cassette listing, in order.
fn listing_digest(files: &[PathBuf], prints: &[Vec<u8>]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for (file, print) in files.iter().zip(prints) {
        digest.update(path_bytes(file));
        digest.update([0]);
        digest.update(print);
    }
    digest.finalize().into()
}

/// How many cassette files are parsed, then indexed, at a time.
const SYNC_CHUNK: usize = 512;

/// One file, as [`Store::sync_cassette`] found it.
enum Scanned {
    Unchanged(String),
    Changed(String, Entries),
}

/// Length, modification time and (on unix) inode: changes whenever a file is rewritten,
/// including by an atomic rename or a `git checkout`.
pub(super) fn fingerprint(path: &Path) -> std::io::Result<Vec<u8>> {
    let meta = fs::metadata(path)?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0u64;
    let mut out = Vec::with_capacity(FINGERPRINT_LEN);
    out.extend_from_slice(&meta.len().to_be_bytes());
    out.extend_from_slice(&mtime.to_be_bytes());
    out.extend_from_slice(&inode.to_be_bytes());
    Ok(out)
}

const FINGERPRINT_LEN: usize = 8 + 16 + 8;

/// The key recorded for a file if its stored fingerprint equals `print`.
fn unchanged_key(stored: &[u8], print: &[u8]) -> Option<String> {
    let (stored_print, key) = stored.split_at_checked(FINGERPRINT_LEN)?;
    (stored_print == print)
        .then(|| String::from_utf8(key.to_vec()).ok())
        .flatten()
}

impl Store {
    /// Brings the index in line with the cassette files: parses new and changed files (a
    /// broken one fails the whole sync, naming the file), skips unchanged ones by fingerprint,
    /// and drops entries whose file is gone. Files are read and parsed on every core, a chunk
    /// at a time (so memory does not grow with the cassette), and indexed a batch per chunk.
    /// Flushes before returning.
    pub fn sync_cassette(&self, cassette: &Cassette) -> Result<SyncReport, StoreError> {
        let mut report = SyncReport::default();
        // Key → the file holding it (its place in `files`): small, it is held for the whole sync.
        let mut owner: HashMap<String, usize> = HashMap::new();
        let files = cassette.list()?;
        report.files = files.len();
        let prints = parallel_map(&files, |relative| {
            let full = cassette.root().join(relative);
            fingerprint(&full).map_err(|source| CassetteError::Read { path: full, source })
        })
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        // Every path and fingerprint as the last complete sync left them: nothing to do. (Any
        // change to a file, recording included, changes its fingerprint, so the digest.)
        let listing = listing_digest(&files, &prints);
        if self.state.get(LISTING).map_err(|e| self.db_err(e))?.as_deref() == Some(&listing[..]) {
            return Ok(report);
        }
        // Invalidated before the index changes, written back only once it is complete.
        self.state.remove(LISTING).map_err(|e| self.db_err(e))?;
        let listed: Vec<(&PathBuf, &Vec<u8>)> = files.iter().zip(&prints).collect();
        for chunk in listed.chunks(SYNC_CHUNK) {
            let (mut index, mut file_records) = (sled::Batch::default(), sled::Batch::default());
            let scanned = parallel_map(chunk, |(relative, print)| self.scan(cassette, relative, print));
            for ((relative, _), scanned) in chunk.iter().zip(scanned) {
                let relative: &PathBuf = relative;
                let key = match scanned? {
                    Scanned::Unchanged(key) => key,
                    Scanned::Changed(key, entries) => {
                        index.insert(key.as_bytes(), entries.index);
                        file_records.insert(path_bytes(relative), entries.file);
                        report.loaded += 1;
                        key
                    }
                };
                // Files are taken in listing order and a duplicate ends the sync: the number of
                // keys so far is this file's place in `files`.
                if let Some(first) = owner.insert(key.clone(), owner.len()) {
                    return Err(CassetteError::Duplicate {
                        key,
                        first: cassette.root().join(&files[first]),
                        second: cassette.root().join(relative),
                    }
                    .into());
                }
            }
            // The index first: a crash between the batches leaves the file record missing,
            // and the next sync simply re-reads that file.
            self.index.apply_batch(index).map_err(|e| self.db_err(e))?;
            self.files.apply_batch(file_records).map_err(|e| self.db_err(e))?;
        }
        // Every listed file was seen (or the sync failed above).
        let listed_paths: HashSet<&Path> = files.iter().map(PathBuf::as_path).collect();
        for entry in self.files.iter() {
            let (file_key, _) = entry.map_err(|e| self.db_err(e))?;
            let listed = std::str::from_utf8(&file_key).is_ok_and(|p| listed_paths.contains(Path::new(p)));
            if !listed {
                self.files.remove(file_key).map_err(|e| self.db_err(e))?;
            }
        }
        for entry in self.index.iter() {
            let (key, _) = entry.map_err(|e| self.db_err(e))?;
            let live = std::str::from_utf8(&key).is_ok_and(|k| owner.contains_key(k));
            if !live {
                self.index.remove(&key).map_err(|e| self.db_err(e))?;
                report.removed += 1;
            }
        }
        self.state.insert(LISTING, &listing[..]).map_err(|e| self.db_err(e))?;
        self.flush()?;
        Ok(report)
    }

    /// What one file is to the index: unchanged since it was indexed (its key), or new or
    /// changed (its fingerprint, key and index entries, from a validated `Head`).
    fn scan(&self, cassette: &Cassette, relative: &Path, print: &[u8]) -> Result<Scanned, StoreError> {
        let full = cassette.root().join(relative);
        let read_err = |source| CassetteError::Read {
            path: full.clone(),
            source,
        };
        let known = self.files.get(path_bytes(relative)).map_err(|e| self.db_err(e))?;
        if let Some(key) = known.as_deref().and_then(|v| unchanged_key(v, print)) {
            // The index entry is written before the file record, so its presence means the file
            // is indexed.
            if self.index.contains_key(key.as_bytes()).map_err(|e| self.db_err(e))? {
                return Ok(Scanned::Unchanged(key));
            }
        }
        let bytes = fs::read(&full).map_err(read_err)?;
        let head = cassette.parse_head(relative, &bytes)?;
        let recorded = Recorded {
            index_key: head.index_key(),
            endpoint: head.endpoint,
            plaid_version: head.plaid_version,
            recorded_at: head.recorded_at,
            status: head.response.status,
            file: relative.to_string_lossy().into_owned(),
        };
        let (key, entries) = Self::entries(print, recorded);
        Ok(Scanned::Changed(key, entries))
    }
}
