//! A store damaged or downgraded on purpose, for the tests of what plaid-vcr does with a store
//! it did not leave that way (a damaged disk, an older plaid-vcr). Never called by plaid-vcr
//! itself: reached through [`crate::testing`], so that tests never spell the trees' names.

use std::path::Path;
use std::time::Duration;

use super::{cassette_id, tree_name, INDEX, LISTING, OLD_TREES, STATE};

/// The store's sled database, opened directly (no lock file, no sync). Waits (bounded) for the
/// lock a store this process just stopped is releasing, as [`super::Store::open`] does.
fn open_raw(store: &Path) -> sled::Db {
    for _ in 0..200 {
        match sled::open(store.join("db")) {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(Duration::from_millis(10));
            }
            // Test support: a store that does not open is the test's failure to report.
            result => return result.expect("the store's sled database opens"),
        }
    }
    panic!("the store's sled database is still locked after 2 s")
}

/// Damages every index entry of `cassette` past its file name: the file still answers hits,
/// but what the entry says about the recording is not a recording. Returns how many.
pub fn damage_index(store: &Path, cassette: &Path) -> usize {
    let db = open_raw(store);
    let index = db
        .open_tree(tree_name(INDEX, &cassette_id(cassette)))
        .expect("the index tree opens");
    let entries: Vec<_> = index.iter().map(|e| e.expect("an index entry reads")).collect();
    for (key, value) in &entries {
        let mut damaged = value.split(|b| *b == 0).next().unwrap_or_default().to_vec();
        damaged.extend_from_slice(b"\0\xff not a recording");
        index.insert(key, damaged).expect("the index takes the entry");
    }
    db.flush().expect("the store flushes");
    entries.len()
}

/// Turns the store of `cassette` into one of the previous format: its index and state trees
/// replaced by `index.v2` (key → file), `meta` (with the request) and a `state` whose listing
/// digest claims the index is up to date, as an older plaid-vcr left it.
pub fn downgrade(store: &Path, cassette: &Path) {
    let db = open_raw(store);
    let id = cassette_id(cassette);
    let tree = |name: &str| db.open_tree(tree_name(name, &id)).expect("a tree opens");
    let listing = tree(STATE)
        .get(LISTING)
        .expect("the state tree reads")
        .expect("a synced store has a listing digest");
    for name in [INDEX, STATE] {
        db.drop_tree(tree_name(name, &id)).expect("a tree drops");
    }
    let [_, v2, meta, state] = OLD_TREES;
    tree(v2).insert("k", "identity_get/x.json").expect("insert");
    tree(meta).insert("k", "{}").expect("insert");
    tree(state).insert(LISTING, listing).expect("insert");
    db.flush().expect("the store flushes");
}

/// The trees of an earlier format still in the store, for any cassette.
pub fn old_trees(store: &Path) -> Vec<String> {
    open_raw(store)
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| OLD_TREES.iter().any(|old| n.starts_with(&format!("{old}:"))))
        .collect()
}
