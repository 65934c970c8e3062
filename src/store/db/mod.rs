//! The working store: a sled database under the store directory (default `.plaid-vcr/`).
//!
//! It is the index replay answers from (key → the cassette file holding the answer) and the
//! durable journal of what was recorded. Answers are not copied in: the cassette files are
//! them, read on a key's first hit (and kept by [`crate::serve::cache`] after), so the store stays
//! small and start-up writes kilobytes where it used to write the whole cassette. Each cassette
//! directory gets its own trees, so one store can serve several cassettes without mixing them:
//! - `index.v3:<cassette>`: key → the file, relative to the cassette, and what unused-recording
//!   reports and expiry read instead of the files: endpoint, time, status, version
//!   ([`Recorded`]). The stored requests stay in the files: a miss reads those of its endpoint
//!   ([`Store::with_requests`]). One small entry per recording, where there used to be a
//!   second tree with the request in it: sled's cost at start-up is per entry, and a fresh
//!   start at 10,000 recordings spent a third of its time applying it;
//! - `files:<cassette>`: file path relative to the cassette → fingerprint and key, which lets
//!   [`Store::sync_cassette`] skip unchanged files and drop entries whose file is gone;
//! - `journal:<cassette>`: file path → the bytes of a cassette file just recorded, until that
//!   file is fsynced with its directory. The writer ([`crate::store::writer`]) acknowledges a
//!   recording once the journal holds it (one sled flush), not once the file is synced: a
//!   power loss before then leaves the bytes here, and the next start writes the file again
//!   ([`Store::complete_journal`]).
//!
//! Keys here are [`crate::store::interaction::index_key`]s: the matching key, or `key#n` for step n
//! of a sequence.
//!
//! Exclusive use is enforced with an OS lock on `<store>/LOCK`, released by the OS even when
//! the process is killed. Only redacted data is ever written here.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::store::cassette::{Cassette, CassetteError};
use crate::store::interaction::{Answer, Interaction};
#[doc(hidden)]
pub mod doctor;
mod lock;
mod sync;

use lock::{lock, waiting_for_release, OpenHere};
use sync::{fingerprint, LISTING};

/// A problem opening or using the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path} is in use by another plaid-vcr process{pid}; stop it or pass --store DIR", pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error("cannot open store {path}: {source}; pass --store DIR to use another directory")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("store {path} is unreadable: {source}; delete the directory (it is rebuilt from the cassette) or pass --store DIR")]
    Db { path: PathBuf, source: sled::Error },
    #[error(transparent)]
    Cassette(#[from] CassetteError),
    #[error("store entry {key} is unreadable: {reason}; delete the store directory (it is rebuilt from the cassette)")]
    Entry { key: String, reason: String },
    #[error("recording was not made durable: {0}")]
    Flush(String),
    #[error("plaid-vcr is shutting down and no longer records")]
    Closed,
    #[error("the recording writer stopped unexpectedly; nothing more can be recorded in this run (see the log)")]
    WriterStopped,
}

/// What the store remembers of a recording besides its answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    /// The matching key, `#n` suffixed for step n of a sequence.
    #[serde(skip)]
    pub index_key: String,
    pub endpoint: String,
    pub plaid_version: Option<String>,
    pub recorded_at: String,
    pub status: u16,
    /// The cassette file, relative to the cassette directory.
    pub file: String,
}

/// A recording with its stored request body (read from its file; what a miss is compared with).
pub type WithRequest = (Recorded, serde_json::Map<String, serde_json::Value>);

impl Recorded {
    /// The index value: `file`, endpoint, time, status and version, NUL-separated (none of
    /// them can hold a NUL: a path, an endpoint path, RFC 3339, digits, header text). The file
    /// comes first, so [`Store::get`] reads it without decoding the rest.
    fn encode(&self) -> Vec<u8> {
        let status = self.status.to_string();
        let fields = [
            self.file.as_str(),
            &self.endpoint,
            &self.recorded_at,
            &status,
            self.plaid_version.as_deref().unwrap_or(""),
        ];
        fields.join("\0").into_bytes()
    }

    /// An index value read back; `None` if it is not one.
    fn decode(index_key: String, value: &[u8]) -> Option<Recorded> {
        let text = std::str::from_utf8(value).ok()?;
        let mut fields = text.split('\0');
        let mut next = || fields.next().map(str::to_owned);
        let (file, endpoint, recorded_at, status, version) = (next()?, next()?, next()?, next()?, next()?);
        Some(Recorded {
            index_key,
            endpoint,
            // Absent and empty are the same Plaid-Version (see the key).
            plaid_version: (!version.is_empty()).then_some(version),
            recorded_at,
            status: status.parse().ok()?,
            file,
        })
    }
}

/// An open, exclusively locked store.
pub struct Store {
    path: PathBuf,
    cassette: Cassette,
    db: sled::Db,
    index: sled::Tree,
    files: sled::Tree,
    /// The digest of the cassette's listing the index was last brought in line with.
    state: sled::Tree,
    journal: sled::Tree,
    // Held for the lifetime of the store; dropping it releases the lock.
    _lock: File,
    // Last: the path counts as open in this process until everything above is released.
    _open_here: OpenHere,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` for the cassette rooted at `cassette`.
    pub fn open(path: &Path, cassette: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        fs::create_dir_all(path).map_err(open_err)?;
        let here = std::process::id();
        let open_here =
            OpenHere::claim(fs::canonicalize(path).map_err(open_err)?).ok_or_else(|| StoreError::Locked {
                path: path.to_owned(),
                pid: Some(here),
            })?;
        // Held by this process, yet no store of it has the path open: being released.
        let lock = waiting_for_release(
            || lock(path),
            |e| matches!(e, StoreError::Locked { pid: Some(pid), .. } if *pid == here),
        )?;
        let db_err = |source| StoreError::Db {
            path: path.to_owned(),
            source,
        };
        // The store holds index entries, not answers: a small page cache keeps memory flat as
        // cassettes grow (sled's default is 1 GiB). With our lock held, sled's own lock is held
        // by this process's last store of the path or a child it is starting (see `OPEN_HERE`),
        // short of someone opening the database by hand; sled 0.34 says so only in its message.
        let db = waiting_for_release(
            || {
                sled::Config::new()
                    .path(path.join("db"))
                    .cache_capacity(SLED_CACHE_BYTES)
                    .open()
                    .map_err(db_err)
            },
            |e| matches!(e, StoreError::Db { source: sled::Error::Io(io), .. } if io.to_string().contains("could not acquire lock")),
        )?;
        let id = cassette_id(cassette);
        // `.v3`: index values hold what `meta` trees did, minus the request. A store from before
        // is rebuilt from the cassette once (a new `state` tree makes the sync see every file
        // as new), and its old trees are dropped.
        for old in OLD_TREES {
            db.drop_tree(tree_name(old, &id)).map_err(db_err)?;
        }
        let index = db.open_tree(tree_name(INDEX, &id)).map_err(db_err)?;
        let files = db.open_tree(tree_name(FILES, &id)).map_err(db_err)?;
        let state = db.open_tree(tree_name(STATE, &id)).map_err(db_err)?;
        let journal = db.open_tree(tree_name(JOURNAL, &id)).map_err(db_err)?;
        Ok(Store {
            path: path.to_owned(),
            cassette: Cassette::new(cassette),
            db,
            index,
            files,
            state,
            journal,
            _lock: lock,
            _open_here: open_here,
        })
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every recording of this cassette, in key order.
    pub fn recorded(&self) -> Result<Vec<Recorded>, StoreError> {
        self.recorded_iter().collect()
    }

    /// [`Store::recorded`], one at a time.
    pub fn recorded_iter(&self) -> impl Iterator<Item = Result<Recorded, StoreError>> + '_ {
        self.index.iter().map(|entry| {
            let (key, value) = entry.map_err(|e| self.db_err(e))?;
            // Written by `entries` from a `Recorded`: one that does not decode is a damaged
            // store, and must not read as "no recordings".
            let key = String::from_utf8_lossy(&key).into_owned();
            Recorded::decode(key.clone(), &value).ok_or_else(|| StoreError::Entry {
                key,
                reason: "its index entry does not decode".into(),
            })
        })
    }

    /// The recordings of `endpoint` with their stored requests, read from their cassette files:
    /// what a miss is compared with. A file that no longer holds its recording fails, as in
    /// [`Store::get`].
    pub fn with_requests(&self, endpoint: &str) -> Result<Vec<WithRequest>, StoreError> {
        let recordings: Vec<Recorded> = self
            .recorded_iter()
            .filter(|r| r.as_ref().map_or(true, |r| r.endpoint == endpoint))
            .collect::<Result<_, _>>()?;
        // Read on every core: a cassette can hold thousands of recordings of one endpoint.
        crate::store::parallel::parallel_map(&recordings, |recorded| {
            let interaction = self.read_indexed(&recorded.index_key, &recorded.file)?;
            Ok((recorded.clone(), interaction.request.body))
        })
        .into_iter()
        .collect()
    }

    /// The highest sequence step recorded for `key` (1 if only the plain key), if any.
    pub fn last_step(&self, key: &str) -> Result<Option<u32>, StoreError> {
        let mut last = None;
        for entry in self.index.scan_prefix(key.as_bytes()) {
            let (k, _) = entry.map_err(|e| self.db_err(e))?;
            let step = match k.get(key.len()..) {
                Some([]) => 1,
                Some([b'#', rest @ ..]) => std::str::from_utf8(rest).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
                _ => 0,
            };
            last = last.max(Some(step).filter(|s| *s > 0));
        }
        Ok(last)
    }

    /// The recorded answer for `key` (an index key), if any: read from the cassette file the
    /// index names, whose key is checked (a file changed since the start fails loudly rather
    /// than answering for another request).
    pub fn get(&self, key: &str) -> Result<Option<Answer>, StoreError> {
        let Some(entry) = self.index.get(key.as_bytes()).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        // The file is the entry's first field (see `Recorded::encode`).
        let file = entry.split(|b| *b == 0).next().unwrap_or(&entry);
        let entry_err = |reason: String| StoreError::Entry {
            key: key.to_owned(),
            reason,
        };
        // An entry that does not decode must not read as a miss (which record-missing would
        // then re-record): it is a damaged store.
        let relative = std::str::from_utf8(file).map_err(|_| entry_err("its file name is not text".into()))?;
        let mut interaction = self.read_indexed(key, relative)?;
        Ok(Some(self.cassette.answer(Path::new(relative), &mut interaction)?))
    }

    /// The interaction the index entry `key` names in `relative`. A file that no longer holds
    /// it (changed under a running plaid-vcr) fails: it must never answer for another request.
    fn read_indexed(&self, key: &str, relative: &str) -> Result<Interaction, StoreError> {
        let interaction = self.cassette.read(Path::new(relative))?;
        if interaction.index_key() != key {
            return Err(StoreError::Entry {
                key: key.to_owned(),
                reason: format!(
                    "{relative} was changed since plaid-vcr started and no longer holds it; restart plaid-vcr"
                ),
            });
        }
        Ok(interaction)
    }

    /// Indexes `interaction`, about to be renamed into place at `relative` from `staged` (a
    /// rename keeps the size, time and inode the fingerprint is made of), without flushing:
    /// the writer (`store::writer`) flushes once per batch.
    pub fn index_staged(&self, relative: &Path, staged: &Path, interaction: &Interaction) -> Result<(), StoreError> {
        let print = fingerprint(staged).map_err(|source| CassetteError::Read {
            path: staged.to_owned(),
            source,
        })?;
        self.insert(relative, &print, interaction)
    }

    /// Undoes [`Store::index_staged`] for a recording that was not put in place: its index and
    /// file entries go, and the next start re-reads the whole cassette (a file of the same key
    /// that stayed in place is indexed again then).
    pub fn unindex(&self, relative: &Path, index_key: &str) -> Result<(), StoreError> {
        self.state.remove(LISTING).map_err(|e| self.db_err(e))?;
        self.index.remove(index_key.as_bytes()).map_err(|e| self.db_err(e))?;
        self.files.remove(path_bytes(relative)).map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Keeps `bytes`, the new content of the cassette file at `relative`, until
    /// [`Store::journal_done`]: durable with the next flush.
    pub fn journal(&self, relative: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        self.journal
            .insert(path_bytes(relative), bytes)
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Forgets the journal entry of `relative`, now synced, if it still holds `bytes` (a later
    /// recording of the same file keeps its own).
    pub fn journal_done(&self, relative: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        // A mismatch is that later recording: not an error.
        let _ = self
            .journal
            .compare_and_swap(path_bytes(relative), Some(bytes), None::<&[u8]>)
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Writes out (atomically, synced) every cassette file the journal still holds: recordings
    /// acknowledged just before a crash whose files may not have reached the disk. Returns how
    /// many files were written. Call it before [`Store::sync_cassette`].
    pub fn complete_journal(&self, cassette: &Cassette) -> Result<usize, StoreError> {
        let mut written = 0;
        for entry in self.journal.iter() {
            let (relative, bytes) = entry.map_err(|e| self.db_err(e))?;
            let relative = std::str::from_utf8(&relative).map_err(|_| StoreError::Entry {
                key: String::from_utf8_lossy(&relative).into_owned(),
                reason: "a journal entry's path is not UTF-8".into(),
            })?;
            crate::store::cassette::write_atomic(&cassette.root().join(relative), &bytes)?;
            self.journal.remove(relative).map_err(|e| self.db_err(e))?;
            written += 1;
        }
        if written > 0 {
            self.flush()?;
        }
        Ok(written)
    }

    /// Files the journal holds (not yet known to be synced).
    pub fn journal_len(&self) -> usize {
        self.journal.len()
    }

    /// Writes everything to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Number of interactions in the index.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn insert(&self, relative: &Path, print: &[u8], interaction: &Interaction) -> Result<(), StoreError> {
        let recorded = Recorded {
            index_key: interaction.index_key(),
            endpoint: interaction.endpoint.clone(),
            plaid_version: interaction.plaid_version.clone(),
            recorded_at: interaction.recorded_at.clone(),
            status: interaction.response.status,
            file: relative.to_string_lossy().into_owned(),
        };
        let (key, entries) = Self::entries(print, recorded);
        // The index entry goes first: a crash between the inserts leaves the file record
        // missing, and the next sync simply re-reads that file.
        self.index
            .insert(key.as_bytes(), entries.index)
            .map_err(|e| self.db_err(e))?;
        self.files
            .insert(path_bytes(relative), entries.file)
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// The two entries that index a recording whose file has fingerprint `print`.
    fn entries(print: &[u8], recorded: Recorded) -> (String, Entries) {
        let index_key = recorded.index_key.clone();
        let mut file = print.to_vec();
        file.extend_from_slice(index_key.as_bytes());
        let entries = Entries {
            index: recorded.encode(),
            file,
        };
        (index_key, entries)
    }

    fn db_err(&self, source: sled::Error) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }
}

/// The trees of this format, named `<tree>:<cassette id>`.
const INDEX: &str = "index.v3";
const FILES: &str = "files";
const STATE: &str = "state.v3";
const JOURNAL: &str = "journal";
/// The trees of earlier formats, dropped at open (`.v3`: index values hold what `meta` trees
/// did, minus the request).
const OLD_TREES: [&str; 4] = ["index", "index.v2", "meta", "state"];

/// A cassette's part of the store: its trees are named after its absolute path, so that
/// `cassettes/a` and `./cassettes/a` share an index and two different cassettes never do.
fn cassette_id(cassette: &Path) -> String {
    let id = fs::canonicalize(cassette).unwrap_or_else(|_| cassette.to_owned());
    id.to_string_lossy().into_owned()
}

/// The name of `tree` for the cassette `id`.
fn tree_name(tree: &str, id: &str) -> String {
    format!("{tree}:{id}")
}

/// sled's page cache: the store holds only index entries and recording metadata, and a hit
/// reads its entry once (then the exact cache answers). 4 MiB instead of 16 took the peak of a
/// fresh start at 50,000 recordings down by about 10 MiB.
const SLED_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// The index and file-record values of one interaction.
struct Entries {
    index: Vec<u8>,
    file: Vec<u8>,
}

fn path_bytes(relative: &Path) -> Vec<u8> {
    relative.to_string_lossy().into_owned().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_values_round_trip_and_lead_with_the_file() {
        for version in [None, Some("2020-09-14".to_owned())] {
            let recorded = Recorded {
                index_key: "abc#2".into(),
                endpoint: "identity/get".into(),
                plaid_version: version,
                recorded_at: "2026-11-29T15:00:00Z".into(),
                status: 400,
                file: "identity_get/abc-2.json".into(),
            };
            let value = recorded.encode();
            assert!(value.starts_with(b"identity_get/abc-2.json\0"));
            assert_eq!(Recorded::decode("abc#2".into(), &value), Some(recorded));
        }
        assert_eq!(Recorded::decode("k".into(), b"only-a-file.json"), None);
        assert_eq!(Recorded::decode("k".into(), b"f\0e\0t\0not-a-status\0"), None);
    }
}
