//! One recorded request/response pair: its on-disk JSON form, the [`Head`] start-up reads of
//! it, and the [`Answer`] replay serves.
//!
//! An [`Interaction`] only ever holds redacted data (it is built from the output of
//! [`crate::privacy::redact`]). Its file form is pretty-printed with sorted keys, so the same
//! interaction always serializes to the same bytes. No HTTP and no file I/O here.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest;

use crate::store::key;

/// Version of the cassette file format.
pub const FORMAT: u32 = 1;

/// A recorded interaction, exactly as a cassette file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// Cassette format version (`FORMAT`).
    pub format: u32,
    /// The matching key (hex SHA-256, see [`crate::store::key`]).
    pub key: String,
    /// The Plaid endpoint without leading slash, e.g. `identity/get`.
    pub endpoint: String,
    /// The `Plaid-Version` request header, if the client sent one.
    pub plaid_version: Option<String>,
    /// When it was recorded, RFC 3339 UTC, seconds precision.
    pub recorded_at: String,
    pub request: RecordedRequest,
    pub response: RecordedResponse,
    /// Set when recorded with `--no-redact`: the file may hold tokens and personal data.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unredacted: bool,
    /// With `--sequences`: the n-th (2, 3, …) answer recorded for the same key. Absent for the
    /// first, so cassettes recorded without sequences are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// A binary answer's bytes while they are in memory (recording, or read back from the
    /// `body_file` by [`crate::store::cassette::Cassette::answer`]); never part of the JSON file.
    #[serde(skip)]
    pub binary_body: Option<Bytes>,
    /// The session it belongs to (`None`: the default session). Never part of the JSON file:
    /// where the file is says it (`sessions/NAME/...`, see `Cassette::session_of`).
    #[serde(skip)]
    pub session: Option<String>,
}

/// An [`Interaction`] as its file holds it: every field's name in sorted order, as serializing
/// through a `serde_json::Value` would order them, without copying the bodies.
#[derive(Serialize)]
struct FileForm<'a> {
    endpoint: &'a str,
    format: u32,
    key: &'a str,
    plaid_version: Option<&'a str>,
    recorded_at: &'a str,
    request: &'a RecordedRequest,
    response: ResponseForm<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unredacted: bool,
}

/// A [`RecordedResponse`] with its fields in sorted order (see [`FileForm`]).
#[derive(Serialize)]
struct ResponseForm<'a> {
    body: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_sha256: Option<&'a str>,
    content_type: &'a str,
    status: u16,
}

impl<'a> FileForm<'a> {
    fn of(i: &'a Interaction) -> FileForm<'a> {
        // Destructured, so a field added to `Interaction` fails to compile here until the file
        // form has it too.
        let Interaction {
            format,
            key,
            endpoint,
            plaid_version,
            recorded_at,
            request,
            response,
            unredacted,
            step,
            binary_body: _,
            // Where the file is says it: `sessions/NAME/…`.
            session: _,
        } = i;
        let RecordedResponse {
            status,
            content_type,
            body,
            body_file,
            body_sha256,
        } = response;
        FileForm {
            endpoint,
            format: *format,
            key,
            plaid_version: plaid_version.as_deref(),
            recorded_at,
            request,
            response: ResponseForm {
                body,
                body_file: body_file.as_deref(),
                body_sha256: body_sha256.as_deref(),
                content_type,
                status: *status,
            },
            step: *step,
            unredacted: *unredacted,
        }
    }
}

/// The extension of the file a binary answer of `content_type` is stored in.
pub fn body_file_extension(content_type: &str) -> &'static str {
    match media_type(content_type).as_str() {
        "application/pdf" => "pdf",
        "application/zip" | "application/x-zip-compressed" => "zip",
        _ => "bin",
    }
}

/// Whether an answer of `content_type` is JSON (recorded as JSON) rather than binary.
pub fn is_json_type(content_type: &str) -> bool {
    let media = media_type(content_type);
    media == "application/json" || media.ends_with("+json")
}

/// The media type of a Content-Type, lowercase, parameters left out (`application/pdf`).
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The store's name for step `step` of the recording of `key` in `session`: the key itself,
/// `key#n` for steps 2 and on, and `NAME/` before it for a named session (`None`: the default
/// session, whose names are those of cassettes from before sessions). Keys are hex, so the
/// last `/` ends the session's name.
pub fn index_key(session: Option<&str>, key: &str, step: u32) -> String {
    let stepped = if step <= 1 {
        key.to_owned()
    } else {
        format!("{key}#{step}")
    };
    match session {
        Some(session) => format!("{session}/{stepped}"),
        None => stepped,
    }
}

/// An index key's session (`None`: the default session) and the rest (`key` or `key#n`).
pub fn split_index_key(index_key: &str) -> (Option<&str>, &str) {
    match index_key.rsplit_once('/') {
        Some((session, rest)) => (Some(session), rest),
        None => (None, index_key),
    }
}

/// The stored (redacted) request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    pub body: Map<String, Value>,
}

/// The stored (redacted) response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    pub status: u16,
    pub content_type: String,
    /// The JSON answer; `null` for a binary one (see `body_file`).
    pub body: Value,
    /// A body that is not JSON (a PDF, a zip): the file next to this one that holds its exact
    /// bytes, `<key prefix>[-step].pdf|zip|bin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_file: Option<String>,
    /// The SHA-256 (hex) of those bytes, checked whenever they are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
}

/// What is wrong with an interaction read from a file.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidInteraction {
    #[error("unsupported format {0} (this plaid-vcr reads format {FORMAT})")]
    Format(u32),
    #[error("endpoint {0:?} is not a Plaid endpoint path like \"identity/get\"")]
    Endpoint(String),
    #[error("response status {0} is not an HTTP status")]
    Status(u16),
    #[error("step {0} is not a sequence step (2 or more; the first step has none)")]
    Step(u32),
    #[error(
        "body_file {0:?} must be the interaction's own file name with .pdf, .zip or .bin, its body null and a \
         body_sha256 given"
    )]
    BodyFile(String),
    #[error(
        "key {found} does not match its request (recomputed {expected}); the request was edited by hand or keyed by an \
         older plaid-vcr: `plaid-vcr redact DIR` re-keys the files, or re-record it"
    )]
    Key { found: String, expected: String },
}

/// A replayable answer in the form the hot path serves: status, content type, body bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
    /// When it was recorded (RFC 3339), for `Plaid-VCR-Recorded-At` and `--shift-dates`.
    pub recorded_at: String,
}

impl Interaction {
    /// Builds an interaction from a redacted request and response and the key the request
    /// stage computed for it (once, see `serve::request`); [`Interaction::validate`] checks
    /// it when a file is loaded.
    #[allow(clippy::too_many_arguments)] // one per field of the file: a builder would only rename them
    pub fn new(
        key: String,
        endpoint: &str,
        plaid_version: Option<&str>,
        request: Map<String, Value>,
        status: u16,
        content_type: &str,
        response: Value,
        recorded_at: std::time::SystemTime,
    ) -> Self {
        Interaction {
            format: FORMAT,
            key,
            endpoint: endpoint.to_owned(),
            plaid_version: plaid_version.map(str::to_owned),
            recorded_at: humantime::format_rfc3339_seconds(recorded_at).to_string(),
            request: RecordedRequest { body: request },
            response: RecordedResponse {
                status,
                content_type: content_type.to_owned(),
                body: response,
                body_file: None,
                body_sha256: None,
            },
            unredacted: false,
            step: None,
            binary_body: None,
            session: None,
        }
    }

    /// Makes this a binary answer of `bytes`, kept byte for byte in a file next to this one.
    /// Call it once the step is set: the file is named after key and step.
    pub fn set_binary_body(&mut self, bytes: Bytes) {
        let name = format!(
            "{}.{}",
            key::file_stem(&self.key, self.step()),
            body_file_extension(&self.response.content_type)
        );
        self.response.body = Value::Null;
        self.response.body_file = Some(name);
        self.response.body_sha256 = Some(key::hex(&sha2::Sha256::digest(&bytes)));
        self.binary_body = Some(bytes);
    }

    /// The step of a sequence this answer is (1 unless recorded with `--sequences`).
    pub fn step(&self) -> u32 {
        self.step.unwrap_or(1)
    }

    /// The store's name for this interaction (`index_key` of its session, key and step).
    pub fn index_key(&self) -> String {
        index_key(self.session.as_deref(), &self.key, self.step())
    }

    /// Parses a cassette file's bytes; [`Interaction::validate`] is separate.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The file form: pretty-printed, keys sorted, trailing newline. Deterministic.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        // The struct's own fields in sorted order ([`FileForm`]); the bodies' maps are sorted
        // already (serde_json without `preserve_order`). This used to go through a `Value`,
        // which sorted everything but cloned both bodies first: about half of the writer's
        // CPU per recording. The test `the_file_form_is_what_sorting_through_a_value_gives`
        // holds the two to the same bytes.
        // No fallback: an empty or `null` file would be written as if it were a recording.
        let mut bytes = serde_json::to_vec_pretty(&FileForm::of(self))
            .expect("an Interaction is strings, numbers and JSON values with string keys: it always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Checks what a hand edit could break: format, endpoint, status, and that the key is the
    /// one its request computes to.
    pub fn validate(&self) -> Result<(), InvalidInteraction> {
        validate(
            self.format,
            &self.key,
            &self.endpoint,
            self.plaid_version.as_deref(),
            &self.request.body,
            self.response.status,
            self.step,
        )?;
        let file = self.response.body_file.as_deref();
        check_body_file(
            &self.key,
            self.step,
            file,
            self.response.body.is_null(),
            self.response.body_sha256.is_some(),
        )
    }

    /// The answer replay serves: a JSON body pretty-printed (2 spaces, sorted keys, no
    /// trailing newline), which is how Plaid itself formats its answers; a binary one as its
    /// bytes, which must have been read ([`crate::store::cassette::Cassette::answer`]).
    pub fn answer(&self) -> Answer {
        let body = match &self.binary_body {
            Some(bytes) => bytes.clone(),
            None => Bytes::from(
                serde_json::to_vec_pretty(&self.response.body).expect("a serde_json::Value always serializes to a Vec"),
            ),
        };
        Answer {
            status: self.response.status,
            content_type: self.response.content_type.clone(),
            body,
            recorded_at: self.recorded_at.clone(),
        }
    }
}

/// A cassette file read for the index: everything but the response body, which is only checked
/// to be JSON (borrowed, never built into a tree). What start-up reads of each file; the answer
/// itself is read on a hit ([`Interaction`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head<'a> {
    pub format: u32,
    pub key: String,
    pub endpoint: String,
    pub plaid_version: Option<String>,
    pub recorded_at: String,
    pub request: RecordedRequest,
    #[serde(borrow)]
    pub response: ResponseHead<'a>,
    #[serde(default)]
    pub unredacted: bool,
    #[serde(default)]
    pub step: Option<u32>,
    /// The session, from where the file is (see [`Interaction::session`]).
    #[serde(skip)]
    pub session: Option<String>,
}

/// The response of a [`Head`]: its body as raw, validated JSON text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseHead<'a> {
    pub status: u16,
    pub content_type: String,
    #[serde(borrow)]
    pub body: &'a serde_json::value::RawValue,
    #[serde(default)]
    pub body_file: Option<String>,
    #[serde(default)]
    pub body_sha256: Option<String>,
}

impl Head<'_> {
    /// Parses a cassette file's bytes as far as the index needs.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Head<'_>, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The same checks as [`Interaction::validate`].
    pub fn validate(&self) -> Result<(), InvalidInteraction> {
        validate(
            self.format,
            &self.key,
            &self.endpoint,
            self.plaid_version.as_deref(),
            &self.request.body,
            self.response.status,
            self.step,
        )?;
        let response = &self.response;
        let null = response.body.get() == "null";
        check_body_file(
            &self.key,
            self.step,
            response.body_file.as_deref(),
            null,
            response.body_sha256.is_some(),
        )
    }

    /// The store's name for this interaction (`index_key` of its session, key and step).
    pub fn index_key(&self) -> String {
        index_key(self.session.as_deref(), &self.key, self.step.unwrap_or(1))
    }
}

/// Checks what a hand edit could break: format, endpoint, status, step, and that the key is the
/// one its request computes to.
fn validate(
    format: u32,
    found: &str,
    endpoint: &str,
    plaid_version: Option<&str>,
    request: &Map<String, Value>,
    status: u16,
    step: Option<u32>,
) -> Result<(), InvalidInteraction> {
    if format != FORMAT {
        return Err(InvalidInteraction::Format(format));
    }
    if !is_endpoint(endpoint) {
        return Err(InvalidInteraction::Endpoint(endpoint.to_owned()));
    }
    if !(100..=599).contains(&status) {
        return Err(InvalidInteraction::Status(status));
    }
    if let Some(step) = step.filter(|s| *s < 2) {
        return Err(InvalidInteraction::Step(step));
    }
    let expected = key::compute(endpoint, plaid_version, request);
    if expected != found {
        return Err(InvalidInteraction::Key {
            found: found.to_owned(),
            expected,
        });
    }
    Ok(())
}

/// A binary answer's `body_file` must be the interaction's own file name with a known
/// extension (so it can never point elsewhere), with a null body and a checksum.
fn check_body_file(
    key: &str,
    step: Option<u32>,
    body_file: Option<&str>,
    body_is_null: bool,
    has_sha256: bool,
) -> Result<(), InvalidInteraction> {
    let Some(file) = body_file else {
        return Ok(());
    };
    let stem = key::file_stem(key, step.unwrap_or(1));
    let named = ["pdf", "zip", "bin"].iter().any(|ext| file == format!("{stem}.{ext}"));
    if named && body_is_null && has_sha256 {
        Ok(())
    } else {
        Err(InvalidInteraction::BodyFile(file.to_owned()))
    }
}

/// Whether `path` looks like a Plaid endpoint: one or more `/`-separated segments of
/// ASCII letters, digits, `_` and `-`. Rules out `..`, empty segments and anything that could
/// escape a cassette directory when used as a path.
pub fn is_endpoint(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 200
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Interaction {
        let request = json!({"access_token": "access-sandbox-x"})
            .as_object()
            .cloned()
            .unwrap();
        Interaction::new(
            key::compute("identity/get", Some("2020-09-14"), &request),
            "identity/get",
            Some("2020-09-14"),
            request,
            200,
            "application/json",
            json!({"request_id": "abc", "accounts": []}),
            std::time::UNIX_EPOCH,
        )
    }

    #[test]
    fn file_bytes_round_trip_and_are_deterministic() {
        let i = sample();
        let bytes = i.to_file_bytes();
        assert_eq!(bytes, i.to_file_bytes());
        let back = Interaction::from_file_bytes(&bytes).unwrap();
        assert_eq!(back, i);
        assert_eq!(back.to_file_bytes(), bytes);
        back.validate().unwrap();
        assert_eq!(i.recorded_at, "1970-01-01T00:00:00Z");
    }

    /// The file form as it was first defined: everything through a `Value`, which sorts every
    /// map, the struct's own fields included.
    fn through_a_value(i: &Interaction) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(&serde_json::to_value(i).unwrap()).unwrap();
        bytes.push(b'\n');
        bytes
    }

    #[test]
    fn the_file_form_is_what_sorting_through_a_value_gives() {
        let mut variants = vec![sample()];
        let mut all = sample();
        all.plaid_version = None;
        all.step = Some(3);
        all.unredacted = true;
        all.response.body = Value::Null;
        all.response.body_file = Some("abc.pdf".into());
        all.response.body_sha256 = Some("00ff".into());
        all.request
            .body
            .insert("zz".into(), json!([1, 2.5, {"b": null, "a": "\u{e9}\"\n"}]));
        variants.push(all);
        // Every recording shipped in the repo, and the fixtures' answers as bodies.
        for dir in ["cassettes/demo", "cassettes/clients"] {
            let cassette = crate::store::cassette::Cassette::new(dir);
            for relative in cassette.list().unwrap() {
                variants.push(cassette.read(&relative).unwrap());
            }
        }
        for fixture in ["accounts_get", "identity_get"] {
            let path = format!("tests/integration/fixtures/{fixture}.response.json");
            let mut i = sample();
            i.response.body = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            variants.push(i);
        }
        assert!(variants.len() > 6);
        for i in &variants {
            assert_eq!(
                String::from_utf8(i.to_file_bytes()).unwrap(),
                String::from_utf8(through_a_value(i)).unwrap()
            );
        }
    }

    #[test]
    fn an_edited_request_no_longer_validates() {
        let mut i = sample();
        i.request.body.insert("access_token".into(), json!("other"));
        assert!(matches!(i.validate(), Err(InvalidInteraction::Key { .. })));
    }

    #[test]
    fn endpoints_cannot_escape_the_cassette() {
        assert!(is_endpoint("identity/get"));
        assert!(is_endpoint("sandbox/public_token/create"));
        for bad in ["", "..", "a/../b", "a//b", "/a", "a/", "a b", "a.json"] {
            assert!(!is_endpoint(bad), "{bad}");
        }
    }
}
