//! Who may open a store: the OS lock on `<store>/LOCK` (released by the OS even when the
//! process is killed) with our pid in it for the next process's error message, and the
//! process-wide set of stores open here, which tells a real second open (fails at once) from
//! a lock this process is still releasing (waited for, briefly).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::StoreError;

/// Stores open in this process, by canonical path. Opening one of these again is a real
/// conflict and fails at once. A lock this process holds for a store *not* in here is one being
/// released, and [`super::Store::open`] waits for it (up to [`RELEASE_WAIT`]): sled's threads let go of
/// its lock a moment after its `Db` is dropped, and a child process that another thread is
/// starting holds a copy of every descriptor until its `exec` (locks belong to the open file,
/// which the copy shares). Both happen when a test stops a server and opens its store again
/// while other tests start processes.
static OPEN_HERE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// The longest [`super::Store::open`] waits for a lock this process is releasing.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// A path's place in [`OPEN_HERE`], given back when dropped.
pub(super) struct OpenHere(PathBuf);

impl OpenHere {
    /// Claims `path`; `None` if a store of this process has it open.
    pub(super) fn claim(path: PathBuf) -> Option<OpenHere> {
        let mut open = OPEN_HERE.lock().unwrap_or_else(PoisonError::into_inner);
        // Not `then_some`: a guard built for a path already open would be dropped at
        // once, giving back the other store's claim (and locking `OPEN_HERE` again, here).
        if open.insert(path.clone()) {
            Some(OpenHere(path))
        } else {
            None
        }
    }
}

impl Drop for OpenHere {
    fn drop(&mut self) {
        OPEN_HERE.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.0);
    }
}

/// Runs `attempt` again while it fails with an error `releasing` says is a lock on its way to
/// being released, for up to [`RELEASE_WAIT`]; then its last result, whatever it is.
pub(super) fn waiting_for_release<T>(
    mut attempt: impl FnMut() -> Result<T, StoreError>,
    releasing: impl Fn(&StoreError) -> bool,
) -> Result<T, StoreError> {
    let deadline = Instant::now() + RELEASE_WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        match attempt() {
            Err(e) if releasing(&e) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// Takes the store's exclusive lock and writes our pid into the lock file for the next
/// process's error message.
pub(super) fn lock(store: &Path) -> Result<File, StoreError> {
    let path = store.join("LOCK");
    let open_err = |source| StoreError::Open {
        path: store.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(open_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(StoreError::Locked {
                path: store.to_owned(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(open_err(source)),
    }
    file.set_len(0).map_err(open_err)?;
    file.rewind().map_err(open_err)?;
    write!(file, "{}", std::process::id()).map_err(open_err)?;
    Ok(file)
}
