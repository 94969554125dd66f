//! One client's stream: the lines its queue holds, as an HTTP response body, with a
//! `{"dropped": n, "dropped_total": m}` line before the next line whenever lines were lost to a
//! full queue since the last such report. Ends at the client's limit, when the relay stops, or
//! when the client goes away (dropping the body forgets the client).

use super::Tap;
use bytes::Bytes;
use hyper::body::{Body, Frame};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A connected client's stream of tap lines (an HTTP body).
pub struct Subscription {
    tap: Arc<Tap>,
    /// The client's id in the hub.
    id: u64,
    /// Lines the hub could not queue for it.
    dropped: Arc<AtomicU64>,
    rx: mpsc::Receiver<Bytes>,
    /// Event lines to send before ending.
    limit: Option<u64>,
    /// Event lines sent.
    sent: u64,
    /// Lost lines already reported.
    reported: u64,
}

impl Subscription {
    pub(super) fn new(
        tap: Arc<Tap>,
        id: u64,
        dropped: Arc<AtomicU64>,
        rx: mpsc::Receiver<Bytes>,
        limit: Option<u64>,
    ) -> Self {
        Self {
            tap,
            id,
            dropped,
            rx,
            limit,
            sent: 0,
            reported: 0,
        }
    }

    /// The next line: a report of lost lines first, if any were lost since the last one.
    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.limit.is_some_and(|limit| self.sent >= limit) {
            return Poll::Ready(None);
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > self.reported {
            let line = dropped_line(dropped - self.reported, dropped);
            self.reported = dropped;
            return Poll::Ready(Some(line));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(line)) => {
                self.sent += 1;
                Poll::Ready(Some(line))
            }
            other => other,
        }
    }
}

/// The line reporting `n` lines lost since the last report, `total` since the client connected.
fn dropped_line(n: u64, total: u64) -> Bytes {
    let line = serde_json::json!({
        "ts": crate::envelope::now_rfc3339(),
        "dropped": n,
        "dropped_total": total,
    });
    Bytes::from(format!("{line}\n"))
}

impl Body for Subscription {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .poll_line(cx)
            .map(|line| line.map(|l| Ok(Frame::data(l))))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.tap.remove(self.id);
    }
}
