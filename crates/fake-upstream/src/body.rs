//! The response body type, with the guard that tells a finished body from one
//! the client walked away from.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body::{Body, Frame, SizeHint};

use crate::Shared;

/// Counts a disconnect when dropped while armed; [`Guard::complete`] counts a
/// completed response instead and disarms it.
pub(crate) struct Guard {
    shared: Arc<Shared>,
    armed: bool,
}

impl Guard {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        Self {
            shared: Arc::clone(shared),
            armed: true,
        }
    }

    /// The response was fully handed to the connection.
    pub(crate) fn complete(&mut self) {
        if self.armed {
            self.armed = false;
            self.shared.completed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Neither a completion nor a client disconnect (e.g. a deliberate abort).
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.armed && !self.shared.shutdown.is_cancelled() {
            self.shared.disconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How a streamed body ends once its events are exhausted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Finish normally.
    Complete,
    /// Yield an error: hyper aborts the connection mid-body.
    Cut,
    /// Never yield again (until the client goes away).
    Stall,
}

type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// Response body: either a single buffer or a paced sequence of frames.
pub struct FakeBody {
    inner: Inner,
}

enum Inner {
    Full {
        data: Option<Bytes>,
        guard: Option<Guard>,
    },
    Stream(BoxStream),
}

impl FakeBody {
    /// A body sent as one frame (with an exact size, so hyper sets `content-length`).
    pub(crate) fn full(data: Bytes, guard: Guard) -> Self {
        Self {
            inner: Inner::Full {
                data: Some(data),
                guard: Some(guard),
            },
        }
    }

    /// A body sent as one frame per element of `events`, waiting `first_delay`
    /// before the first and `delay` before each of the others, then ending as `end` says.
    pub(crate) fn paced(
        events: VecDeque<Bytes>,
        first_delay: Duration,
        delay: Duration,
        end: End,
        guard: Guard,
    ) -> Self {
        let state = Paced {
            events,
            first: true,
            first_delay,
            delay,
            end,
            done: false,
            guard,
        };
        let stream = futures_util::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            if let Some(ev) = st.events.pop_front() {
                let wait = if st.first { st.first_delay } else { st.delay };
                st.first = false;
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                if st.events.is_empty() && st.end == End::Complete {
                    st.guard.complete();
                }
                return Some((Ok(ev), st));
            }
            match st.end {
                End::Complete => {
                    st.guard.complete();
                    None
                }
                End::Cut => {
                    // Return Pending once so hyper flushes what was written
                    // (at least the headers) before the abort.
                    tokio::task::yield_now().await;
                    st.guard.disarm();
                    st.done = true;
                    Some((Err(io::Error::other("fake-upstream: body cut")), st))
                }
                End::Stall => {
                    // Keep the guard alive: if the client gives up, it counts as a disconnect.
                    std::future::pending::<()>().await;
                    None
                }
            }
        });
        Self {
            inner: Inner::Stream(Box::pin(stream)),
        }
    }
}

struct Paced {
    events: VecDeque<Bytes>,
    first: bool,
    first_delay: Duration,
    delay: Duration,
    end: End,
    done: bool,
    guard: Guard,
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().inner {
            Inner::Full { data, guard } => match data.take() {
                Some(d) => {
                    if let Some(mut g) = guard.take() {
                        g.complete();
                    }
                    Poll::Ready(Some(Ok(Frame::data(d))))
                }
                None => Poll::Ready(None),
            },
            Inner::Stream(s) => s.poll_next_unpin(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.inner, Inner::Full { data: None, .. })
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Inner::Stream(_) => SizeHint::default(),
        }
    }
}
