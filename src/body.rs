//! The body of every answer plaid-vcr sends: bytes that can say when they have been handed to
//! the connection. Replay delivers a webhook only after the answer that caused it is on its way
//! ([`crate::webhooks::delivery`]), as Plaid does; `Full<Bytes>` has no such signal. The server keeps its
//! connection marked busy until then ([`Body::hold`]), so a large answer still being written
//! to a slow reader is never taken for an idle connection and closed.
//!
//! A large answer goes out in [`FRAME`]-sized frames: hyper asks for the next one only when
//! its write buffer has room (about 400 KiB), so the body is dropped close to when its last
//! bytes are written, not when they are first queued.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::oneshot;

/// How long a cut body waits, its first half sent, before it fails (see `Body::cut_pause`).
const CUT_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// The largest frame a body hands hyper at once.
pub const FRAME: usize = 16 * 1024;

/// A whole answer body. When it is dropped (hyper drops it once its last frame is written, or
/// when the connection goes away), the receiver from [`Body::on_sent`] completes and what
/// [`Body::hold`] was given is dropped.
#[derive(Default)]
pub struct Body {
    data: Option<Bytes>,
    sent: Option<oneshot::Sender<()>>,
    held: Option<Box<dyn Send + Sync>>,
    /// A `truncate` fault: how many more bytes go out before the body fails, and with it the
    /// connection (the head has promised the whole length).
    cut_after: Option<usize>,
    /// The pause between the last bytes of a cut body and its failure: hyper writes out what it
    /// has while the body is not ready, so the head and the first half reach the client.
    cut_pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The error a cut body ends with: hyper closes the connection on it.
#[derive(Debug, thiserror::Error)]
#[error("the answer was cut short on purpose (a truncate fault)")]
pub struct CutShort;

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("len", &self.data.as_ref().map_or(0, Bytes::len))
            .finish_non_exhaustive()
    }
}

impl Body {
    /// A body of `data`.
    pub fn new(data: Bytes) -> Body {
        Body {
            data: (!data.is_empty()).then_some(data),
            sent: None,
            held: None,
            cut_after: None,
            cut_pause: None,
        }
    }

    /// Makes this body fail after half its bytes (at least one is kept back): a `truncate` fault.
    pub fn cut_in_half(&mut self) {
        let len = self.data.as_ref().map_or(0, Bytes::len);
        self.cut_after = Some(len / 2);
    }

    /// Keeps `guard` until this body has been sent or abandoned.
    pub fn hold(&mut self, guard: impl Send + Sync + 'static) {
        self.held = Some(Box::new(guard));
    }

    /// A receiver that completes (with an error: the sender is dropped, never used) once this
    /// body has been sent or abandoned.
    pub fn on_sent(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.sent = Some(tx);
        rx
    }
}

impl From<Bytes> for Body {
    fn from(data: Bytes) -> Body {
        Body::new(data)
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = CutShort;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, CutShort>>> {
        if let Some(left) = self.cut_after {
            let data = self.data.as_mut().filter(|_| left > 0);
            let Some(data) = data else {
                let pause = self
                    .cut_pause
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_PAUSE)));
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.data = None;
                return Poll::Ready(Some(Err(CutShort)));
            };
            let frame = data.split_to(left.min(FRAME).min(data.len()));
            self.cut_after = Some(left - frame.len());
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        let frame = match self.data.as_mut() {
            Some(data) if data.len() > FRAME => data.split_to(FRAME),
            _ => match self.data.take() {
                Some(last) => last,
                None => return Poll::Ready(None),
            },
        };
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_bytes_arrive_whole_and_dropping_the_body_signals_sent() {
        let mut body = Body::new(Bytes::from_static(b"{\"a\":1}"));
        let mut sent = body.on_sent();
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(7));
        assert!(sent.try_recv().is_err_and(|e| e == oneshot::error::TryRecvError::Empty));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{\"a\":1}");
        assert!(sent.await.is_err(), "dropped after sending: the receiver completes");
        assert!(hyper::body::Body::is_end_stream(&Body::new(Bytes::new())));
    }

    #[tokio::test]
    async fn a_cut_body_sends_half_then_fails_and_still_claims_the_whole_length() {
        let mut body = Body::new(Bytes::from_static(b"0123456789"));
        body.cut_in_half();
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(10));
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "01234");
        assert!(body.frame().await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_large_body_goes_in_frames_and_what_it_holds_goes_when_it_is_dropped() {
        let data: Bytes = (0..(3 * FRAME + 5))
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        let mut body = Body::new(data.clone());
        let guard = std::sync::Arc::new(());
        body.hold(guard.clone());
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(frame.unwrap().into_data().unwrap());
            assert_eq!(std::sync::Arc::strong_count(&guard), 2, "held while frames remain");
        }
        let sizes: Vec<usize> = frames.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [FRAME, FRAME, FRAME, 5]);
        assert_eq!(frames.concat(), data.to_vec());
        drop(body);
        assert_eq!(std::sync::Arc::strong_count(&guard), 1, "released with the body");
    }
}
