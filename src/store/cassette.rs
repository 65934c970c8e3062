//! The cassette directory: the committed, reviewable form of a recording session.
//!
//! One pretty-printed JSON file per interaction at `<dir>/<endpoint with / as _>/<key prefix>.json`.
//! Files are written atomically (temp file in the same directory, fsync, rename, fsync of the
//! directory), so a crash leaves either the old file or the new one, never half of one.
//! This module knows files and [`Interaction`]s, never HTTP.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::store::interaction::{Answer, Head, Interaction, InvalidInteraction};
use crate::store::key;

/// A problem with a cassette directory or one of its files.
#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    #[error("cassette directory {0} does not exist; record into it first (plaid-vcr record --cassette {0}) or pass --cassette DIR")]
    Missing(PathBuf),
    #[error("cannot read cassette directory {path}: {source}")]
    ReadDir { path: PathBuf, source: std::io::Error },
    #[error("cannot read cassette file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cassette file {path} is not a valid interaction: {source}; fix or delete the file")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cassette file {path} is invalid: {source}")]
    Invalid { path: PathBuf, source: InvalidInteraction },
    #[error("cassette files {first} and {second} hold the same key {key}; delete one of them")]
    Duplicate {
        key: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("cannot write cassette file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cassette {0} is being recorded by another plaid-vcr process; stop it or pass --cassette DIR")]
    Busy(PathBuf),
    #[error("cannot lock cassette directory {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("webhook file {path} is not a valid recorded webhook: {reason}; fix or delete the file")]
    Webhook { path: PathBuf, reason: String },
    #[error("binary body file {path} {reason}; restore it from version control or re-record the interaction")]
    BodyFile { path: PathBuf, reason: String },
}

/// The cassette subdirectory holding recorded webhooks, one file each (not interactions, so
/// [`Cassette::list`] skips it; the webhook module reads and writes them). A session has its
/// own, `sessions/NAME/webhooks/`.
pub const WEBHOOKS_DIR: &str = "webhooks";

/// The cassette subdirectory holding the named sessions' recordings: `sessions/NAME/` in the
/// same layout as the cassette's own (endpoint folders, `webhooks/`). NAME may have `/`s.
pub const SESSIONS_DIR: &str = "sessions";

/// The session a cassette file belongs to, from where it is (`None`: the default session).
/// `sessions/a/b/identity_get/x.json` is session `a/b`'s: every folder between `sessions/`
/// and the endpoint folder (or `webhooks/`) that holds the file is the name.
pub fn session_of(relative: &Path) -> Option<String> {
    let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        [SESSIONS_DIR, name @ .., _folder, _file] if !name.is_empty() => Some(name.join("/")),
        _ => None,
    }
}

/// Whether `dir` (relative to the cassette) is the cassette's or a session's `webhooks/`: the
/// folder a recorded webhook's file is in. (A session may be named `…/webhooks`; its files are
/// one folder deeper, in their endpoint folders.)
fn is_webhook_dir(dir: &Path) -> bool {
    dir.file_name().is_some_and(|n| n == WEBHOOKS_DIR)
}

/// The folder, relative to the cassette, that holds `session`'s files (the root for `None`).
pub fn session_dir(session: Option<&str>) -> PathBuf {
    match session {
        Some(name) => Path::new(SESSIONS_DIR).join(name),
        None => PathBuf::new(),
    }
}

/// A cassette directory.
#[derive(Debug, Clone)]
pub struct Cassette {
    root: PathBuf,
}

impl Cassette {
    /// A cassette rooted at `root`; nothing is read or created yet.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cassette { root: root.into() }
    }

    /// The directory this cassette lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes an exclusive OS lock on the directory itself for as long as the returned file is
    /// open, so two recording processes (even with different stores) never write the same
    /// cassette. Nothing is written into the directory; the OS releases the lock when the
    /// process exits, even on `kill -9`.
    pub fn lock(&self) -> Result<fs::File, CassetteError> {
        let lock_err = |source| CassetteError::Lock {
            path: self.root.clone(),
            source,
        };
        // A directory opened read-only can carry a flock on unix.
        let dir = fs::File::open(&self.root).map_err(lock_err)?;
        match dir.try_lock() {
            Ok(()) => Ok(dir),
            Err(fs::TryLockError::WouldBlock) => Err(CassetteError::Busy(self.root.clone())),
            Err(fs::TryLockError::Error(source)) => Err(lock_err(source)),
        }
    }

    /// Removes what a crashed writer left behind, never acknowledged: temp files
    /// (`.plaid-vcr-*.tmp`, never renamed into place) and binary body files whose interaction
    /// file never was (a body lands first); returns how many. Only call it holding
    /// [`Cassette::lock`], so no live writer's file is taken.
    pub fn remove_leftovers(&self) -> Result<usize, CassetteError> {
        let mut removed = 0;
        for relative in self.walk(true)? {
            let name = relative.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let leftover =
                (name.starts_with(".plaid-vcr-") && name.ends_with(".tmp")) || self.is_stray_body(&relative)?;
            if leftover {
                let path = self.root.join(&relative);
                fs::remove_file(&path).map_err(|source| CassetteError::Write { path, source })?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Whether `relative` looks like a binary body file (`<stem>.pdf|zip|bin`, outside
    /// `webhooks/`) that its interaction file `<stem>.json` does not name.
    fn is_stray_body(&self, relative: &Path) -> Result<bool, CassetteError> {
        let is_body = relative
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["pdf", "zip", "bin"].contains(&e))
            && !relative.starts_with(WEBHOOKS_DIR)
            && relative.components().count() == 2;
        if !is_body {
            return Ok(false);
        }
        let json = self.root.join(relative.with_extension("json"));
        let bytes = match fs::read(&json) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(source) => return Err(CassetteError::Read { path: json, source }),
        };
        // An interaction file that does not parse is `check`'s to report; its body stays.
        let named = match Interaction::from_file_bytes(&bytes) {
            Ok(interaction) => interaction.response.body_file,
            Err(_) => return Ok(false),
        };
        Ok(named.as_deref() != relative.file_name().and_then(|n| n.to_str()))
    }

    /// Fails with [`CassetteError::Missing`] unless the directory exists.
    pub fn require_exists(&self) -> Result<(), CassetteError> {
        if self.root.is_dir() {
            Ok(())
        } else {
            Err(CassetteError::Missing(self.root.clone()))
        }
    }

    /// The file path, relative to the root, that holds step `step` of `endpoint`/`key` in
    /// `session`: `identity_get/<key prefix>.json`, or `<key prefix>-<step>.json` for steps 2
    /// and on, under `sessions/NAME/` for a named session.
    pub fn relative_path(session: Option<&str>, endpoint: &str, key: &str, step: u32) -> PathBuf {
        let dir = endpoint.replace('/', "_");
        session_dir(session)
            .join(dir)
            .join(format!("{}.json", key::file_stem(key, step)))
    }

    /// Where `interaction` belongs.
    pub fn path_of(interaction: &Interaction) -> PathBuf {
        Self::relative_path(
            interaction.session.as_deref(),
            &interaction.endpoint,
            &interaction.key,
            interaction.step(),
        )
    }

    /// Every interaction file under the root, the sessions' included (relative paths,
    /// sorted), skipping hidden entries, leftover temp files and recorded webhooks.
    pub fn list(&self) -> Result<Vec<PathBuf>, CassetteError> {
        self.walk(false)
    }

    /// Every file under the root, hidden and non-JSON ones included (for `check`).
    pub fn list_all(&self) -> Result<Vec<PathBuf>, CassetteError> {
        self.walk(true)
    }

    fn walk(&self, all: bool) -> Result<Vec<PathBuf>, CassetteError> {
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = self.root.join(&rel);
            let read_err = |source| CassetteError::ReadDir {
                path: dir.clone(),
                source,
            };
            for entry in fs::read_dir(&dir).map_err(read_err)? {
                let entry = entry.map_err(read_err)?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let is_dir = entry.file_type().map_err(read_err)?.is_dir();
                if name.starts_with('.') && !all {
                    continue;
                }
                if is_dir {
                    stack.push(rel.join(name));
                } else if all || (name.ends_with(".json") && !is_webhook_dir(&rel)) {
                    // Recorded webhooks have their own walk; `check` sees all.
                    out.push(rel.join(name));
                }
            }
        }
        // Byte order: deterministic, and much cheaper than comparing path components.
        out.sort_unstable_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
        Ok(out)
    }

    /// Reads and validates the interaction in `relative`; errors name the file.
    pub fn read(&self, relative: &Path) -> Result<Interaction, CassetteError> {
        let path = self.root.join(relative);
        let bytes = fs::read(&path).map_err(|source| CassetteError::Read { path, source })?;
        self.parse(relative, &bytes)
    }

    /// Parses and validates the bytes of the file at `relative`; errors name the file.
    pub fn parse(&self, relative: &Path, bytes: &[u8]) -> Result<Interaction, CassetteError> {
        let path = self.root.join(relative);
        let mut interaction = Interaction::from_file_bytes(bytes).map_err(|source| CassetteError::Parse {
            path: path.clone(),
            source,
        })?;
        interaction.session = session_of(relative);
        interaction
            .validate()
            .map_err(|source| CassetteError::Invalid { path, source })?;
        self.require_body_file(relative, interaction.response.body_file.as_deref())?;
        Ok(interaction)
    }

    /// A binary answer's file must be there (its bytes are checked when read, see
    /// [`Cassette::answer`]): a start with it missing fails rather than miss later.
    fn require_body_file(&self, relative: &Path, body_file: Option<&str>) -> Result<(), CassetteError> {
        let Some(path) = body_file.map(|name| self.body_file_path(relative, name)) else {
            return Ok(());
        };
        if path.is_file() {
            Ok(())
        } else {
            Err(CassetteError::BodyFile {
                path,
                reason: "is missing".into(),
            })
        }
    }

    /// Where the interaction file `relative` keeps its binary body `name`: next to it.
    fn body_file_path(&self, relative: &Path, name: &str) -> PathBuf {
        self.root.join(relative).with_file_name(name)
    }

    /// The answer `interaction` (read from `relative`) replays: for a binary one, its file's
    /// bytes, checked against the recorded SHA-256.
    pub fn answer(&self, relative: &Path, interaction: &mut Interaction) -> Result<Answer, CassetteError> {
        if let (Some(name), None) = (&interaction.response.body_file, &interaction.binary_body) {
            let path = self.body_file_path(relative, name);
            let bytes = fs::read(&path).map_err(|source| CassetteError::Read {
                path: path.clone(),
                source,
            })?;
            let digest = key::hex(&sha2::Sha256::digest(&bytes));
            if interaction.response.body_sha256.as_deref() != Some(digest.as_str()) {
                return Err(CassetteError::BodyFile {
                    path,
                    reason: "does not match the body_sha256 its interaction recorded".into(),
                });
            }
            interaction.binary_body = Some(bytes.into());
        }
        Ok(interaction.answer())
    }

    /// [`Cassette::parse`] as far as the index needs: the response body checked as JSON but not
    /// built (`Head`); the same validation, the same errors naming the file.
    pub fn parse_head<'a>(&self, relative: &Path, bytes: &'a [u8]) -> Result<Head<'a>, CassetteError> {
        let path = self.root.join(relative);
        let mut head = Head::from_file_bytes(bytes).map_err(|source| CassetteError::Parse {
            path: path.clone(),
            source,
        })?;
        head.session = session_of(relative);
        head.validate()
            .map_err(|source| CassetteError::Invalid { path, source })?;
        self.require_body_file(relative, head.response.body_file.as_deref())?;
        Ok(head)
    }

    /// Writes `interaction` atomically and durably; returns its path relative to the root.
    pub fn write(&self, interaction: &Interaction) -> Result<PathBuf, CassetteError> {
        let relative = Self::path_of(interaction);
        // The body first: a crash in between leaves a stray body file, never an interaction
        // pointing at nothing.
        if let (Some(name), Some(bytes)) = (&interaction.response.body_file, &interaction.binary_body) {
            write_atomic(&self.body_file_path(&relative, name), bytes)?;
        }
        write_atomic(&self.root.join(&relative), &interaction.to_file_bytes())?;
        Ok(relative)
    }
}

/// What [`Cassette::rewrite`] did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The file before, relative to the root.
    pub from: PathBuf,
    /// The file after (differs from `from` when the key changed).
    pub to: PathBuf,
    /// Values the transformation changed.
    pub changed: usize,
    /// The index key before and after, when it changed (webhook files follow it).
    pub rekeyed: Option<(String, String)>,
}

impl Cassette {
    /// Rewrites every interaction through `transform`, recomputing its key: files whose bytes
    /// change are rewritten atomically, and renamed (new file written, then the old one removed)
    /// when the key changes. Returns the files that changed.
    pub fn rewrite(&self, mut transform: impl FnMut(&mut Interaction) -> usize) -> Result<Vec<Rewrite>, CassetteError> {
        let mut done = Vec::new();
        for relative in self.list()? {
            let path = self.root.join(&relative);
            let bytes = fs::read(&path).map_err(|source| CassetteError::Read {
                path: path.clone(),
                source,
            })?;
            let mut interaction = Interaction::from_file_bytes(&bytes).map_err(|source| CassetteError::Parse {
                path: path.clone(),
                source,
            })?;
            let changed = transform(&mut interaction);
            let before = interaction.index_key();
            interaction.key = key::compute(
                &interaction.endpoint,
                interaction.plaid_version.as_deref(),
                &interaction.request.body,
            );
            let to = Self::path_of(&interaction);
            // A binary body moves with its interaction (its name follows the key): the new
            // body file is written first, the old one removed last.
            let old_body = match interaction.response.body_file.clone() {
                Some(name) if to != relative => {
                    // Read (and checked) from the old name, renamed after the new key.
                    let body = self.answer(&relative, &mut interaction)?.body;
                    interaction.set_binary_body(body);
                    Some(self.body_file_path(&relative, &name))
                }
                _ => None,
            };
            let new_bytes = interaction.to_file_bytes();
            if to == relative && new_bytes == bytes {
                continue;
            }
            if let (Some(name), Some(body)) = (&interaction.response.body_file, &interaction.binary_body) {
                write_atomic(&self.body_file_path(&to, name), body)?;
            }
            write_atomic(&self.root.join(&to), &new_bytes)?;
            if to != relative {
                fs::remove_file(&path).map_err(|source| CassetteError::Write {
                    path: path.clone(),
                    source,
                })?;
            }
            if let Some(old_body) = old_body {
                fs::remove_file(&old_body).map_err(|source| CassetteError::Write { path: old_body, source })?;
            }
            let after = interaction.index_key();
            done.push(Rewrite {
                from: relative,
                to,
                changed,
                rekeyed: (before != after).then_some((before, after)),
            });
        }
        Ok(done)
    }
}

/// Writes `bytes` to `path` via a temp file in the same directory: fsync the file, rename it
/// over `path`, fsync the directory so the rename itself survives a power loss.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CassetteError> {
    let staged = Staged::write(path, bytes)?;
    let created = staged.created.clone();
    staged.install()?;
    let sync_err = |source| CassetteError::Write {
        path: path.to_owned(),
        source,
    };
    sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(sync_err)?;
    if let Some(parent) = created.as_deref().and_then(Path::parent) {
        sync_dir(parent).map_err(sync_err)?;
    }
    Ok(())
}

/// A file's new bytes, written and fsynced to a temp file next to it but not yet in place:
/// the two halves of [`write_atomic`] for a writer that fsyncs many files at once and syncs
/// each directory once per batch.
#[derive(Debug)]
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
    /// The directory that had to be created for the file, if any: its parent needs a sync.
    pub created: Option<PathBuf>,
}

impl Staged {
    /// Writes `bytes` to a temp file in `path`'s directory (creating it) and fsyncs the file.
    pub fn write(path: &Path, bytes: &[u8]) -> Result<Staged, CassetteError> {
        Staged::create(path, bytes, true, None)
    }

    /// [`Staged::write`] without the fsync, for a writer whose bytes are durable elsewhere
    /// first (the store's journal) and that syncs the installed file afterwards.
    pub fn write_unsynced(path: &Path, bytes: &[u8]) -> Result<Staged, CassetteError> {
        Staged::create(path, bytes, false, None)
    }

    /// The temp file, until installed.
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// [`Staged::write_unsynced`] into `tmp`, an empty temp file made ahead in `path`'s
    /// directory ([`temp_file_in`]): creating a file is the slow part on some filesystems.
    pub fn write_into(tmp: tempfile::NamedTempFile, path: &Path, bytes: &[u8]) -> Result<Staged, CassetteError> {
        Staged::create(path, bytes, false, Some(tmp))
    }

    /// Writes `bytes` into `spare`, or into a new temp file in `path`'s directory (created if
    /// missing), fsyncing it if `sync`.
    fn create(
        path: &Path,
        bytes: &[u8],
        sync: bool,
        spare: Option<tempfile::NamedTempFile>,
    ) -> Result<Staged, CassetteError> {
        let err = |source| CassetteError::Write {
            path: path.to_owned(),
            source,
        };
        let (mut tmp, created) = match spare {
            // Made in the directory, which therefore exists.
            Some(tmp) => (tmp, None),
            None => {
                let dir = path.parent().unwrap_or(Path::new("."));
                let created = if dir.is_dir() {
                    None
                } else {
                    fs::create_dir_all(dir).map_err(err)?;
                    Some(dir.to_owned())
                };
                (temp_file_in(dir).map_err(err)?, created)
            }
        };
        tmp.write_all(bytes).map_err(err)?;
        if sync {
            tmp.as_file().sync_all().map_err(err)?;
        }
        Ok(Staged {
            tmp,
            path: path.to_owned(),
            created,
        })
    }

    /// Renames the temp file over the target: the file is now whole and new, durable once its
    /// directory is synced ([`sync_dir`]) (and the file itself, if written unsynced: the
    /// returned handle is for that).
    pub fn install(self) -> Result<fs::File, CassetteError> {
        self.tmp.persist(&self.path).map_err(|e| CassetteError::Write {
            path: self.path.clone(),
            source: e.error,
        })
    }
}

/// A new, empty temp file in `dir`, named so that [`Cassette::list`] skips it and
/// [`Cassette::remove_leftovers`] sweeps it after a crash.
pub fn temp_file_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    // The leading dot keeps a leftover temp file (after a crash) out of `Cassette::list`.
    let mut builder = tempfile::Builder::new();
    builder.prefix(".plaid-vcr-").suffix(".tmp");
    // tempfile's default 0600 would make committed cassettes unreadable to other users of a
    // checkout; 0644 (less the umask) is what any editor would have written.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder.tempfile_in(dir)
}

/// Makes the entries of `dir` (renames, new files) durable.
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for syncing on this platform; the rename is still atomic.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary_interaction() -> Interaction {
        let request = serde_json::json!({"access_token": "t"}).as_object().cloned().unwrap();
        let key = key::compute("statements/download", None, &request);
        let mut interaction = Interaction::new(
            key,
            "statements/download",
            None,
            request,
            200,
            "application/pdf",
            serde_json::Value::Null,
            std::time::SystemTime::UNIX_EPOCH,
        );
        interaction.set_binary_body(bytes::Bytes::from_static(b"%PDF-1.4 x"));
        interaction
    }

    #[test]
    fn a_body_file_without_its_interaction_is_a_leftover_and_one_with_it_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let cassette = Cassette::new(dir.path());
        let mut interaction = binary_interaction();
        let relative = cassette.write(&interaction).unwrap();
        let body = relative.with_extension("pdf");
        assert!(dir.path().join(&body).is_file());
        // A crash between the body's rename and the interaction's: a body nothing names.
        let stray = PathBuf::from("statements_download/0123456789abcdef.pdf");
        fs::write(dir.path().join(&stray), b"%PDF").unwrap();
        assert_eq!(cassette.remove_leftovers().unwrap(), 1);
        assert!(!dir.path().join(&stray).exists());
        assert!(dir.path().join(&body).is_file(), "the named body stays");
        // It reads back byte for byte, checked.
        let mut read = cassette.read(&relative).unwrap();
        assert_eq!(&cassette.answer(&relative, &mut read).unwrap().body[..], b"%PDF-1.4 x");
        interaction.binary_body = None;
        assert_eq!(read.response, interaction.response);
    }
}
