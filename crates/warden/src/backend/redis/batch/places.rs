//! The places for script calls in flight: a call finished from its caller's future, or in a task when that
//! future is dropped; a freed place sends what queued meanwhile.

#[allow(unused_imports)]
use super::*;

/// A batch finished from its caller's own future. If that future is dropped while the call is in flight, the
/// batch is finished in a task: the operation happened on the server, so its reply is still read and counted.
pub(super) struct Inline {
    pub(super) ctx: Arc<Ctx>,
    pub(super) batch: Option<Batch>,
}

impl Inline {
    pub(super) async fn finish(mut self) {
        let deadline = tokio::time::Instant::now() + self.ctx.timeout;
        let answered = match self.batch.as_mut().map(|b| &mut b.first) {
            Some(First::Sent(call)) => Some(tokio::time::timeout_at(deadline, call).await),
            _ => None,
        };
        let Some(batch) = self.batch.take() else {
            return;
        };
        let first = match (answered, batch.first) {
            (Some(a), _) => a,
            (None, First::Done(r)) => Ok(r),
            (None, First::Sent(_)) => return,
        };
        self.ctx.conclude(batch.jobs, first).await
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        if let Some(b) = self.batch.take() {
            let ctx = self.ctx.clone();
            tokio::spawn(async move { ctx.finish(b).await });
        }
    }
}

/// A place for one script call in flight. When it is given up (also by a dropped future), whatever queued
/// meanwhile is sent: no operation waits for a caller that will not come.
pub(super) struct Place {
    pub(super) ctx: Arc<Ctx>,
    pub(super) permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Whether the place was used. One dropped unused (its task never ran: the runtime is shutting down)
    /// does not pump again, or a shutdown would recurse without end.
    pub(super) used: bool,
}

impl Place {
    /// Finishes `first`, then submits and finishes what queued meanwhile until the queue is empty, in a task of
    /// its own.
    pub(super) fn finish_in_task(self, first: Option<Batch>) {
        tokio::spawn(async move {
            let mut this = self;
            this.used = true;
            let me = &this;
            if let Some(b) = first {
                me.ctx.finish(b).await;
            }
            while let Some(b) = me.ctx.submit().await {
                me.ctx.finish(b).await;
            }
            drop(this);
        });
    }

    /// Done with its own call: sends what queued meanwhile (in a task), or frees the place.
    pub(super) fn keep_sending(self) {
        if !self.ctx.lock_queue().is_empty() {
            self.finish_in_task(None);
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        drop(self.permit.take());
        // An operation queued while every place was taken waits for the call that finishes next: this one.
        if self.used && !self.ctx.lock_queue().is_empty() {
            Ctx::pump(&self.ctx);
        }
    }
}

impl Ctx {
    /// If a place is free and operations wait, sends them in a task of their own.
    pub(super) fn pump(ctx: &Arc<Ctx>) {
        let Ok(permit) = ctx.slots.clone().try_acquire_owned() else {
            return;
        };
        Place {
            ctx: ctx.clone(),
            permit: Some(permit),
            used: false,
        }
        .finish_in_task(None);
    }
}
