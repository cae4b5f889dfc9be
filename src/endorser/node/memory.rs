//! Memory on the client port under large messages: a byte budget across the request bodies being
//! received, and returning freed memory to the OS after large requests ([`super::heap`]).
//!
//! tonic buffers each gRPC message whole before decoding it, so eight clients sending 99 MB at
//! once used to hold 8 × 99 MB. [`RequestBudgetLayer`] wraps every request body: each DATA frame's
//! bytes are taken from one shared [`RequestBudget`] before tonic sees them, and are given back
//! when the gRPC message they belong to is complete (tonic decodes it in the same poll) or the body
//! is dropped. A body that finds the budget spent stops reading; HTTP/2 flow control then holds its
//! client back, and the request waits instead of failing.
//!
//! **No deadlock.** Bodies holding part of the budget could all wait for more. So one body at a
//! time may take the *overdraft*: a single token that lets it read the rest of its current message
//! without budget. A waiting body waits for whichever comes first, budget or token. The token
//! holder never waits on the budget, so its message completes as fast as its client sends (or the
//! body is dropped), and then both its budget and the token are given back. Hence some waiter can
//! always proceed, and a message larger than the whole budget (up to the message limit) is still
//! received. Bytes held: at most the budget, plus one message in overdraft (≤ the message limit,
//! which tonic checks from the length prefix before buffering), plus one DATA frame per waiting
//! body.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::Bytes;
use tonic::codegen::http::{Request, Response};

use super::heap::MemoryTrimmer;

/// A request that brought at least this many bytes is followed by returning freed memory.
pub const LARGE_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// Bytes of undecoded request messages the client port holds at once, shared by every connection.
#[derive(Clone, Debug)]
pub struct RequestBudget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    capacity: usize,
    permits: Arc<Semaphore>,
    /// One token: its holder reads the rest of its current message without budget.
    overdraft: Arc<Semaphore>,
    held: AtomicUsize,
    peak: AtomicUsize,
}

impl RequestBudget {
    /// A budget of `capacity` bytes (at least 1; tokio's semaphore caps it near `usize::MAX / 8`).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            shared: Arc::new(Shared {
                capacity,
                permits: Arc::new(Semaphore::new(capacity)),
                overdraft: Arc::new(Semaphore::new(1)),
                held: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            }),
        }
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Request bytes received and not yet decoded, budgeted or in overdraft.
    pub fn held_bytes(&self) -> usize {
        self.shared.held.load(Ordering::Acquire)
    }

    /// The most [`Self::held_bytes`] has been.
    pub fn peak_held_bytes(&self) -> usize {
        self.shared.peak.load(Ordering::Acquire)
    }
}

impl Shared {
    fn hold(&self, bytes: usize) {
        let now = self.held.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.peak.fetch_max(now, Ordering::AcqRel);
    }
}

/// How a frame was let through.
enum Grant {
    Budget,
    /// The overdraft token, kept until the message completes.
    Overdraft(OwnedSemaphorePermit),
    /// The rest of a message already in overdraft.
    Unbudgeted,
}

type Waiting = Pin<Box<dyn Future<Output = Grant> + Send>>;

/// Waits for `bytes` of budget or the overdraft token, whichever comes first; more than the whole
/// budget can only come through the overdraft.
async fn wait_for_budget(shared: Arc<Shared>, bytes: usize) -> Grant {
    let budget = async {
        match u32::try_from(bytes)
            .ok()
            .filter(|_| bytes <= shared.capacity)
        {
            Some(n) => shared.permits.clone().acquire_many_owned(n).await.ok(),
            None => std::future::pending().await,
        }
    };
    let overdraft = shared.overdraft.clone().acquire_owned();
    // Neither semaphore is ever closed; if the token's were, the frame would pass unbudgeted
    // rather than stall the request.
    tokio::select! {
        biased;
        Some(permit) = budget => {
            permit.forget();
            Grant::Budget
        }
        token = overdraft => token.map_or(Grant::Unbudgeted, Grant::Overdraft),
    }
}

/// Where the gRPC length-prefixed messages (1 flag byte, 4 length bytes, the message) end.
#[derive(Debug, Default)]
struct GrpcFraming {
    header: [u8; 5],
    header_filled: usize,
    message_left: usize,
}

impl GrpcFraming {
    /// Walks `chunk`; when at least one message ends in it, returns how many bytes of the chunk
    /// follow the last end (the start of a message still incomplete).
    fn advance(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut position = 0;
        let mut last_end = None;
        while position < chunk.len() {
            let rest = &chunk[position..];
            if self.header_filled < self.header.len() {
                let take = (self.header.len() - self.header_filled).min(rest.len());
                self.header[self.header_filled..self.header_filled + take]
                    .copy_from_slice(&rest[..take]);
                self.header_filled += take;
                position += take;
                if self.header_filled == self.header.len() {
                    let [_, a, b, c, d] = self.header;
                    self.message_left = u32::from_be_bytes([a, b, c, d]) as usize;
                }
            } else {
                let take = self.message_left.min(rest.len());
                self.message_left -= take;
                position += take;
            }
            if self.header_filled == self.header.len() && self.message_left == 0 {
                self.header_filled = 0;
                last_end = Some(position);
            }
        }
        last_end.map(|end| chunk.len() - end)
    }
}

/// What one body holds; given back when dropped.
struct Holding {
    shared: Arc<Shared>,
    budgeted: usize,
    overdraft: Option<OwnedSemaphorePermit>,
    unbudgeted: usize,
}

impl Holding {
    fn take(&mut self, bytes: usize, grant: Grant) {
        match grant {
            Grant::Budget => self.budgeted += bytes,
            Grant::Overdraft(token) => {
                self.overdraft = Some(token);
                self.unbudgeted += bytes;
            }
            Grant::Unbudgeted => self.unbudgeted += bytes,
        }
        self.shared.hold(bytes);
    }

    /// A message completed: everything but the `keep` bytes of the next one is given back, and
    /// the overdraft token with it.
    fn release_all_but(&mut self, keep: usize) {
        let keep_unbudgeted = keep.min(self.unbudgeted);
        let keep_budgeted = (keep - keep_unbudgeted).min(self.budgeted);
        let budgeted = self.budgeted - keep_budgeted;
        let unbudgeted = self.unbudgeted - keep_unbudgeted;
        self.budgeted = keep_budgeted;
        self.unbudgeted = keep_unbudgeted;
        self.overdraft = None;
        if budgeted > 0 {
            self.shared.permits.add_permits(budgeted);
        }
        self.shared
            .held
            .fetch_sub(budgeted + unbudgeted, Ordering::AcqRel);
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.release_all_but(0);
    }
}

/// A request body whose DATA frames are paid for from the budget before they are passed on.
pub struct BudgetedBody<B> {
    inner: B,
    holding: Option<Holding>,
    framing: GrpcFraming,
    /// A frame read from the client that waits for budget.
    pending: Option<Frame<Bytes>>,
    waiting: Option<Waiting>,
    /// Bytes this request has brought, for deciding to return memory afterwards.
    received: Arc<AtomicUsize>,
}

impl<B> BudgetedBody<B> {
    fn new(inner: B, budget: Option<&RequestBudget>, received: Arc<AtomicUsize>) -> Self {
        Self {
            inner,
            holding: budget.map(|budget| Holding {
                shared: budget.shared.clone(),
                budgeted: 0,
                overdraft: None,
                unbudgeted: 0,
            }),
            framing: GrpcFraming::default(),
            pending: None,
            waiting: None,
            received,
        }
    }

    /// Accounts a frame's bytes and passes it on.
    fn pass(&mut self, frame: Frame<Bytes>, grant: Option<Grant>) -> Frame<Bytes> {
        if let Some(data) = frame.data_ref() {
            self.received.fetch_add(data.len(), Ordering::Relaxed);
            if let Some(holding) = &mut self.holding {
                if let Some(grant) = grant {
                    holding.take(data.len(), grant);
                }
                if let Some(keep) = self.framing.advance(data) {
                    holding.release_all_but(keep);
                }
            }
        }
        frame
    }
}

impl<B> Body for BudgetedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(waiting) = &mut this.waiting {
                let grant = ready!(waiting.as_mut().poll(cx));
                this.waiting = None;
                if let Some(frame) = this.pending.take() {
                    return Poll::Ready(Some(Ok(this.pass(frame, Some(grant)))));
                }
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                other => return Poll::Ready(other),
            };
            let bytes = frame.data_ref().map_or(0, Bytes::len);
            let grant = match &this.holding {
                None => None,
                Some(_) if bytes == 0 => None,
                Some(holding) if holding.overdraft.is_some() => Some(Grant::Unbudgeted),
                Some(holding) => {
                    let permit = u32::try_from(bytes).ok().and_then(|n| {
                        holding
                            .shared
                            .permits
                            .clone()
                            .try_acquire_many_owned(n)
                            .ok()
                    });
                    match permit {
                        Some(permit) => {
                            permit.forget();
                            Some(Grant::Budget)
                        }
                        None => {
                            this.waiting =
                                Some(Box::pin(wait_for_budget(holding.shared.clone(), bytes)));
                            this.pending = Some(frame);
                            continue;
                        }
                    }
                }
            };
            return Poll::Ready(Some(Ok(this.pass(frame, grant))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client port's memory limits as a tower layer for `tonic::transport::Server::layer`.
#[derive(Clone, Debug, Default)]
pub struct RequestBudgetLayer {
    budget: Option<RequestBudget>,
    trimmer: Option<MemoryTrimmer>,
}

impl RequestBudgetLayer {
    /// `budget`: None receives bodies unbounded; `trimmer`: None keeps freed memory in the heap.
    pub fn new(budget: Option<RequestBudget>, trimmer: Option<MemoryTrimmer>) -> Self {
        Self { budget, trimmer }
    }
}

impl<S> tower_layer::Layer<S> for RequestBudgetLayer {
    type Service = RequestBudgetService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestBudgetService {
            inner,
            budget: self.budget.clone(),
            trimmer: self.trimmer.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequestBudgetService<S> {
    inner: S,
    budget: Option<RequestBudget>,
    trimmer: Option<MemoryTrimmer>,
}

impl<S, ResBody> tower_service::Service<Request<tonic::body::Body>> for RequestBudgetService<S>
where
    S: tower_service::Service<Request<tonic::body::Body>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        let received = Arc::new(AtomicUsize::new(0));
        let budget = self.budget.as_ref();
        let request = request
            .map(|body| tonic::body::Body::new(BudgetedBody::new(body, budget, received.clone())));
        let response = self.inner.call(request);
        let trimmer = self.trimmer.clone();
        Box::pin(async move {
            let response = response.await;
            // For a unary call the message was decoded, handled and dropped by now.
            if let Some(trimmer) = trimmer
                && received.load(Ordering::Relaxed) >= LARGE_REQUEST_BYTES
            {
                trimmer.after_large_request();
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use super::*;
    use std::time::Duration;

    /// A request body of the given DATA frames.
    struct Frames(VecDeque<Bytes>);

    impl Frames {
        fn new(bytes: &[u8], frame_len: usize) -> Self {
            Self(
                bytes
                    .chunks(frame_len)
                    .map(Bytes::copy_from_slice)
                    .collect(),
            )
        }
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
        }
    }

    async fn next_data<B: Body<Data = Bytes> + Unpin>(body: &mut B) -> Option<Bytes>
    where
        B::Error: std::fmt::Debug,
    {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        frame.expect("test bodies do not fail").into_data().ok()
    }

    #[tokio::test]
    async fn a_streams_budget_comes_back_after_each_message_not_at_its_end() {
        let budget = RequestBudget::new(100);
        let mut bytes = message(10);
        bytes.extend(message(20));
        let mut body = BudgetedBody::new(
            Frames::new(&bytes, 8),
            Some(&budget),
            Arc::new(AtomicUsize::new(0)),
        );
        next_data(&mut body).await;
        assert_eq!(budget.held_bytes(), 8, "half of the first message");
        next_data(&mut body).await;
        // The first message (15 bytes) ended in this frame; one byte of the second is held.
        assert_eq!(budget.held_bytes(), 1);
        while next_data(&mut body).await.is_some() {}
        assert_eq!(budget.held_bytes(), 0, "every message complete");
        drop(body);
        assert_eq!(budget.shared.permits.available_permits(), 100);
    }

    #[tokio::test]
    async fn bodies_each_holding_part_of_the_budget_all_complete() {
        // Three messages of 25 bytes, each larger than the whole budget of 16, read 5 bytes at a
        // time in lockstep: without the overdraft every body would wait for the others forever.
        let budget = RequestBudget::new(16);
        let read_all = |budget: RequestBudget| async move {
            let mut body = BudgetedBody::new(
                Frames::new(&message(20), 5),
                Some(&budget),
                Arc::new(AtomicUsize::new(0)),
            );
            let mut read = 0;
            while let Some(data) = next_data(&mut body).await {
                read += data.len();
                tokio::task::yield_now().await;
            }
            read
        };
        let all = futures::future::join_all((0..3).map(|_| read_all(budget.clone())));
        let read = tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("no body waits forever");
        assert_eq!(read, vec![25; 3]);
        assert_eq!(budget.held_bytes(), 0);
        // The budget, one message in overdraft, one frame per other body.
        assert!(budget.peak_held_bytes() <= 16 + 25 + 2 * 5, "{budget:?}");
    }

    fn message(len: usize) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&(len as u32).to_be_bytes());
        bytes.extend(std::iter::repeat_n(7, len));
        bytes
    }

    #[test]
    fn framing_finds_message_ends_across_and_within_chunks() {
        let mut framing = GrpcFraming::default();
        let first = message(10);
        // Header split across chunks, end in the third.
        assert_eq!(framing.advance(&first[..3]), None);
        assert_eq!(framing.advance(&first[3..9]), None);
        assert_eq!(framing.advance(&first[9..]), Some(0));
        // Two whole messages and the start of a third in one chunk.
        let mut chunk = message(4);
        chunk.extend(message(0));
        chunk.extend(&message(6)[..2]);
        assert_eq!(framing.advance(&chunk), Some(2));
        assert_eq!(framing.advance(&message(6)[2..]), Some(0));
    }
}
