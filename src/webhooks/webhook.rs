//! A recorded webhook: the git-friendly file one webhook Plaid sent becomes, where those files
//! live in a cassette (`webhooks/`), and the webhook URL fields of request bodies that record
//! rewrites to plaid-vcr's receiver.
//!
//! A webhook file names the interaction it followed (`after`, an index key) and the request
//! that registered the URL it went to (`registered_by`), so replay can deliver it after the same
//! answer, to the URL the app registers in its own session. Its body is redacted with the
//! interaction rules, so its `item_id` is the pseudonym the replayed answers show. Receiving is
//! [`crate::webhooks::receiver`]'s job, delivering [`crate::webhooks::delivery`]'s.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::store::cassette::{self, CassetteError, Rewrite};
use crate::store::interaction::split_index_key;
use crate::store::key;

/// The cassette subdirectory holding webhook files.
pub use crate::store::cassette::WEBHOOKS_DIR as DIR;
/// Version of the webhook file format.
pub const FORMAT: u32 = 1;
/// The path prefix of plaid-vcr's webhook receiver on its own listener.
pub const RECEIVER_PATH: &str = "/plaid-vcr/webhooks/";

/// One recorded webhook, as its file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub format: u32,
    /// The index key of the interaction this webhook followed; `None` if it arrived before any
    /// (it is then never delivered, and the summary says so).
    pub after: Option<String>,
    /// That interaction's endpoint, for people reading the file.
    pub after_endpoint: Option<String>,
    /// The index key of the request that registered the URL this webhook was sent to.
    pub registered_by: Option<String>,
    /// Its place among the webhooks that followed the same interaction (1, 2, …).
    pub seq: u32,
    pub recorded_at: String,
    pub webhook_type: Option<String>,
    pub webhook_code: Option<String>,
    /// The status the app answered when it was forwarded live; `None` if it was unreachable.
    pub app_status: Option<u16>,
    /// Recorded with `--no-redact`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unredacted: bool,
    pub webhook: Payload,
}

/// The webhook's body (its own object, so `scan` walks it like an interaction's halves).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub body: Value,
}

impl Webhook {
    /// The file, relative to the cassette root: `webhooks/<interaction file stem>.<seq>.json`
    /// (under `sessions/NAME/` for a webhook that followed a session's interaction), next to
    /// nothing else, named so `ls` sorts them by interaction and order.
    pub fn relative_path(&self) -> PathBuf {
        let after = self.after.as_deref();
        dir_of(after).join(format!("{}.{:03}.json", stem(after), self.seq))
    }

    /// `TYPE CODE` (`-` for a missing one): how logs, `ls` and `diff` name a webhook.
    pub fn label(&self) -> String {
        format!(
            "{} {}",
            self.webhook_type.as_deref().unwrap_or("-"),
            self.webhook_code.as_deref().unwrap_or("-")
        )
    }

    /// The bytes delivered to the app: the redacted body, compact, keys sorted. The same file
    /// gives the same bytes in every run.
    pub fn delivered_body(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.webhook.body).expect("a serde_json::Value always serializes to a Vec"))
    }

    /// The file's bytes: pretty JSON, sorted keys, a trailing newline.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a Webhook is strings, numbers and JSON values");
        bytes.push(b'\n');
        bytes
    }

    /// A webhook from its file's bytes, checked.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Webhook, String> {
        let webhook: Webhook = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if webhook.format != FORMAT {
            return Err(format!("format {} is not {FORMAT}", webhook.format));
        }
        if !webhook.webhook.body.is_object() {
            return Err("webhook.body is not a JSON object".into());
        }
        if webhook.seq == 0 {
            return Err("seq must be 1 or more".into());
        }
        Ok(webhook)
    }
}

/// The folder, relative to the cassette root, of the webhooks that followed the interaction
/// `after` (an index key): its session's `webhooks/`, the cassette's own for the default
/// session or none.
pub fn dir_of(after: Option<&str>) -> PathBuf {
    let session = after.and_then(|index| split_index_key(index).0);
    cassette::session_dir(session).join(DIR)
}

/// The part of a webhook file name that says which interaction it followed: the interaction
/// file's name without `.json` (`<key prefix>` or `<key prefix>-<step>`), `_first` for none.
pub fn stem(after: Option<&str>) -> String {
    match after.map(|index| split_index_key(index).1) {
        None => "_first".to_owned(),
        Some(index) => match index.split_once('#') {
            // The interaction file's own `<prefix>-<step>` form (see `key::file_stem`).
            Some((k, step)) => format!("{}-{step}", key::prefix(k)),
            None => key::file_stem(index, 1),
        },
    }
}

/// Every webhook file of the cassette at `root`, the sessions' included (relative paths), in
/// order: by folder, then interaction, then `seq`. No `webhooks/` folder means none.
pub fn list(root: &Path) -> Result<Vec<PathBuf>, CassetteError> {
    let mut out = Vec::new();
    files_in(root, Path::new(DIR), &mut out)?;
    // Every `webhooks/` folder under `sessions/` is a session's (endpoint folders are never
    // named so: no Plaid endpoint is).
    let mut stack = vec![PathBuf::from(cassette::SESSIONS_DIR)];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CassetteError::ReadDir { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| CassetteError::ReadDir {
                path: dir.clone(),
                source,
            })?;
            let is_dir = entry.file_type().map_err(|source| CassetteError::ReadDir {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            match name.to_str() {
                Some(name) if is_dir.is_dir() && !name.starts_with('.') => {
                    if name == DIR {
                        files_in(root, &rel.join(name), &mut out)?;
                    }
                    stack.push(rel.join(name));
                }
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The webhook files directly in `dir` (relative to `root`), added to `out`.
fn files_in(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CassetteError> {
    let full = root.join(dir);
    let entries = match std::fs::read_dir(&full) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CassetteError::ReadDir { path: full, source }),
    };
    for entry in entries {
        let entry = entry.map_err(|source| CassetteError::ReadDir {
            path: full.clone(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with('.') && name.ends_with(".json") {
            out.push(dir.join(name));
        }
    }
    Ok(())
}

/// Reads and checks every webhook file of the cassette at `root`; the first bad file fails.
pub fn load(root: &Path) -> Result<Vec<(PathBuf, Webhook)>, CassetteError> {
    list(root)?
        .into_iter()
        .map(|relative| Ok((relative.clone(), read(root, &relative)?.1)))
        .collect()
}

/// The bytes of the webhook file `relative` and the webhook they hold; errors name the file.
fn read(root: &Path, relative: &Path) -> Result<(Vec<u8>, Webhook), CassetteError> {
    let path = root.join(relative);
    let bytes = std::fs::read(&path).map_err(|source| CassetteError::Read {
        path: path.clone(),
        source,
    })?;
    let webhook = Webhook::from_file_bytes(&bytes).map_err(|reason| CassetteError::Webhook { path, reason })?;
    Ok((bytes, webhook))
}

/// Writes `webhook` durably (temp file, fsync, rename, directory fsync); returns its path.
pub fn write(root: &Path, webhook: &Webhook) -> Result<PathBuf, CassetteError> {
    let relative = webhook.relative_path();
    cassette::write_atomic(&root.join(&relative), &webhook.to_file_bytes())?;
    Ok(relative)
}

/// Rewrites every webhook file through `transform` (for `plaid-vcr redact`): files whose bytes
/// change are rewritten atomically, and renamed when the interaction they follow was re-keyed.
pub fn rewrite_files(
    root: &Path,
    mut transform: impl FnMut(&mut Webhook) -> usize,
) -> Result<Vec<Rewrite>, CassetteError> {
    let mut done = Vec::new();
    for relative in list(root)? {
        let (bytes, mut webhook) = read(root, &relative)?;
        let changed = transform(&mut webhook);
        let to = webhook.relative_path();
        let new_bytes = webhook.to_file_bytes();
        if to == relative && new_bytes == bytes {
            continue;
        }
        cassette::write_atomic(&root.join(&to), &new_bytes)?;
        if to != relative {
            let path = root.join(&relative);
            std::fs::remove_file(&path).map_err(|source| CassetteError::Write { path, source })?;
        }
        done.push(Rewrite {
            from: relative,
            to,
            changed,
            rekeyed: None,
        });
    }
    Ok(done)
}

/// Removes the webhook files an earlier session recorded after the interaction `after`:
/// re-recording an interaction replaces what followed it, as it replaces its answer.
pub fn remove_after(root: &Path, after: Option<&str>) -> Result<usize, CassetteError> {
    let (dir, prefix) = (dir_of(after), format!("{}.", stem(after)));
    let mut removed = 0;
    let mut files = Vec::new();
    files_in(root, &dir, &mut files)?;
    for relative in files {
        let name = relative.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&prefix) && name.len() == prefix.len() + "000.json".len() {
            let path = root.join(&relative);
            std::fs::remove_file(&path).map_err(|source| CassetteError::Write { path, source })?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Where a request body carries the app's webhook URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlField {
    /// `webhook` (`/link/token/create`, `/item/webhook/update`).
    Top,
    /// `options.webhook` (`/sandbox/public_token/create`).
    Options,
}

/// The webhook URL a request body registers, and where it is; `None` without one.
pub fn registered_url(body: &Map<String, Value>) -> Option<(UrlField, &str)> {
    if let Some(Value::String(url)) = body.get("webhook") {
        return (!url.is_empty()).then_some((UrlField::Top, url.as_str()));
    }
    match body.get("options").and_then(|o| o.get("webhook")) {
        Some(Value::String(url)) if !url.is_empty() => Some((UrlField::Options, url.as_str())),
        _ => None,
    }
}

/// The webhook URL in raw request bytes, if they are a JSON object that carries one.
pub fn registered_url_in(raw: &[u8]) -> Option<String> {
    // Most bodies carry no webhook: skip the parse unless the field name is there at all.
    if !contains(raw, b"\"webhook\"") {
        return None;
    }
    let body: Map<String, Value> = serde_json::from_slice(raw).ok()?;
    registered_url(&body).map(|(_, url)| url.to_owned())
}

/// `raw` with its webhook URL (at `field`) replaced by `url`; `None` if it is not a JSON object.
pub fn rewrite_url(raw: &[u8], field: UrlField, url: &str) -> Option<Bytes> {
    let mut body: Map<String, Value> = serde_json::from_slice(raw).ok()?;
    let slot = match field {
        UrlField::Top => body.get_mut("webhook")?,
        UrlField::Options => body.get_mut("options")?.get_mut("webhook")?,
    };
    *slot = Value::String(url.to_owned());
    serde_json::to_vec(&body).ok().map(Bytes::from)
}

/// The receiver path segment for an app URL registered in `session`: 16 hex characters of
/// their SHA-256, so the URL upstream sees (and may log) says nothing about the app's
/// address, and two sessions that register one URL get two receivers.
pub fn receiver_token(session: Option<&str>, app_url: &str) -> String {
    let mut digest = Sha256::new();
    if let Some(name) = session {
        // A name has no NUL: the session and the URL cannot run into each other.
        digest.update(name.as_bytes());
        digest.update([0]);
    }
    digest.update(app_url.as_bytes());
    key::prefix(&key::hex(&digest.finalize())).to_owned()
}

/// The item a webhook body or an answer is about: `item_id`, or `item.item_id`.
pub fn item_of(body: &Value) -> Option<&str> {
    body.get("item_id")
        .or_else(|| body.get("item").and_then(|i| i.get("item_id")))
        .and_then(Value::as_str)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_are_found_and_rewritten_in_both_places() {
        let top = br#"{"webhook":"http://app/hook","user":{"client_user_id":"u"}}"#;
        assert_eq!(registered_url_in(top).as_deref(), Some("http://app/hook"));
        let rewritten = rewrite_url(top, UrlField::Top, "https://tunnel/plaid-vcr/webhooks/x").unwrap();
        let v: Value = serde_json::from_slice(&rewritten).unwrap();
        assert_eq!(v["webhook"], "https://tunnel/plaid-vcr/webhooks/x");
        assert_eq!(v["user"]["client_user_id"], "u");

        let options = br#"{"institution_id":"ins_1","options":{"webhook":"http://app/h2"}}"#;
        let body: Map<String, Value> = serde_json::from_slice(options).unwrap();
        assert_eq!(registered_url(&body), Some((UrlField::Options, "http://app/h2")));
        assert_eq!(registered_url_in(br#"{"access_token":"t"}"#), None);
        assert_eq!(registered_url_in(br#"{"webhook":""}"#), None);
    }

    #[test]
    fn files_are_named_by_interaction_and_order_and_read_back() {
        let w = Webhook {
            format: FORMAT,
            after: Some(format!("{}#2", "a".repeat(64))),
            after_endpoint: Some("sandbox/item/fire_webhook".into()),
            registered_by: None,
            seq: 3,
            recorded_at: "2026-01-01T00:00:00Z".into(),
            webhook_type: Some("ITEM".into()),
            webhook_code: Some("ERROR".into()),
            app_status: Some(200),
            unredacted: false,
            webhook: Payload {
                body: json!({"webhook_type": "ITEM"}),
            },
        };
        assert_eq!(w.relative_path(), PathBuf::from("webhooks/aaaaaaaaaaaaaaaa-2.003.json"));
        assert_eq!(Webhook::from_file_bytes(&w.to_file_bytes()).unwrap(), w);
        assert_eq!(&w.delivered_body()[..], br#"{"webhook_type":"ITEM"}"#);
        let mut bad = w.clone();
        bad.format = 9;
        assert!(Webhook::from_file_bytes(&bad.to_file_bytes())
            .unwrap_err()
            .contains("format"));
    }
}
