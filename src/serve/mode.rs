//! The modes: what the user chooses ([`Mode`]) and what a running proxy holds for it
//! ([`Serving`]), where the recording modes carry their [`Recorder`] (upstream client, durable
//! writer, cassette lock), so recording without them cannot be expressed. Dispatching on the
//! mode is the proxy's, in one place.

use std::fmt;
use std::sync::Arc;

use crate::store::writer::Writer;
use crate::upstream::Upstream;

/// What plaid-vcr does with each request, as the user chooses it. Dispatched on in one place,
/// `Proxy::dispatch` ([`crate::serve::proxy::Proxy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads nothing from the cassette to answer; forwards every request upstream and writes
    /// each 2xx/4xx answer to the store and the cassette, overwriting the same key.
    Record,
    /// Reads the cassette only; never opens a connection; writes nothing; misses are errors.
    Replay,
    /// Answers hits from the cassette; forwards misses upstream (once per identical miss in
    /// flight) and records them.
    ReplayRecordMissing,
}

impl Mode {
    /// The mode as the command line names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Record => "record",
            Mode::Replay => "replay",
            Mode::ReplayRecordMissing => "replay --record-missing",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode with what it needs: the recording modes carry their [`Recorder`], so recording
/// without an upstream or a writer cannot be expressed.
#[derive(Debug)]
pub enum Serving {
    Replay,
    Record(Arc<Recorder>),
    RecordMissing(Arc<Recorder>),
}

impl Serving {
    /// The mode this is.
    pub fn mode(&self) -> Mode {
        match self {
            Serving::Replay => Mode::Replay,
            Serving::Record(_) => Mode::Record,
            Serving::RecordMissing(_) => Mode::ReplayRecordMissing,
        }
    }
}

/// What recording needs: the upstream client, the one durable writer, and the OS lock on the
/// cassette directory (held as long as the recorder lives; see [`crate::store::cassette::Cassette::lock`]).
pub struct Recorder {
    upstream: Upstream,
    // Dropped before the lock: the writer drains its queue first.
    writer: Writer,
    _lock: std::fs::File,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder from its parts (see [`crate::serve::startup::open`]).
    pub fn new(upstream: Upstream, writer: Writer, lock: std::fs::File) -> Recorder {
        Recorder {
            upstream,
            writer,
            _lock: lock,
        }
    }

    /// The client for upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The one durable writer.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }
}
