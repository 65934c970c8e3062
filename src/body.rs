//! The body of every answer plaid-vcr sends: one chunk of bytes that can say when it has been
//! handed to the connection. Replay delivers a webhook only after the answer that caused it is
//! on its way ([`crate::delivery`]), as Plaid does; `Full<Bytes>` has no such signal.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::oneshot;

/// A whole answer body. When it is dropped (hyper drops it once its bytes are written, or when
/// the connection goes away), the receiver from [`Body::on_sent`] completes.
#[derive(Debug, Default)]
pub struct Body {
    data: Option<Bytes>,
    sent: Option<oneshot::Sender<()>>,
}

impl Body {
    /// A body of `data`.
    pub fn new(data: Bytes) -> Body {
        Body {
            data: (!data.is_empty()).then_some(data),
            sent: None,
        }
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
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.data.take().map(|data| Ok(Frame::data(data))))
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
}
