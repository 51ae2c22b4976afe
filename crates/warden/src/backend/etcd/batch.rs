//! Group commit: a process's releases and new queue keys share etcd transactions, so one Raft proposal and one
//! WAL sync serve all of them.
//!
//! In a busy queue every handoff costs two writes: the release's delete, and the new key of the holder before
//! it, queueing again; and many workers on many resources write at once. Sent apart, etcd syncs each on its
//! own. Here writes go to one of a few lanes by their resource's hash; a lane sends up to two transactions at a
//! time, each with everything queued meanwhile (after one turn of the scheduler, no timer: a lone write never
//! waits), each write a nested transaction of it.
//!
//! etcd gives every write of one transaction the same revision and evaluates all of its compares before any
//! of its writes, and refuses a key written twice. So a batch holds no key twice and at most one new key per
//! resource (a key's create revision is its fencing token), and puts its deletes first: a new key's reads then
//! see them, while its compares do not, which only sends it to its queued branch, whose reads decide (as when
//! a release lands between two calls). Writes that compare a resource's record (conditional grants) are never
//! sent here. etcd-client sends one request per call and cannot merge calls: that is the part written here.

use super::session::{unavailable, Etcd};
use crate::backend::AbortOnDrop;
use crate::error::{Error, Result};
use etcd_client::{Txn, TxnOp, TxnOpResponse, TxnResponse};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Lanes: writes of different resources may be in flight at once, up to this many transactions.
const LANES: usize = 4;
/// Transactions of one lane in flight at once: a write that comes just after one was sent need not wait for
/// its answer (etcd orders them as they arrive, as it would separate calls).
const IN_FLIGHT: usize = 2;
/// Most writes in one transaction (etcd refuses more than `--max-txn-ops`, 128 by default, at any level).
const MAX_WRITES: usize = 32;

/// One write: a transaction whose only written key is `key`, of the resource `hash`.
pub(super) struct Write {
    pub hash: String,
    pub key: String,
    /// It may create `key` (its create revision becomes a fencing token).
    pub creates: bool,
    pub txn: Txn,
}

/// A write's answer: its transaction's response, the store's revision after it, and whether it came from a
/// repeat after a try whose outcome is unknown (see [`Etcd::call_counted`]).
pub(super) struct Answer {
    pub r: TxnResponse,
    pub revision: i64,
    pub repeated: bool,
}

struct Job {
    write: Write,
    reply: oneshot::Sender<Result<Answer>>,
}

/// Hands writes to the lanes; dropping it stops them.
pub(super) struct Batcher {
    lanes: Vec<mpsc::UnboundedSender<Job>>,
    _tasks: Vec<AbortOnDrop>,
    etcd: Arc<Etcd>,
}

impl Batcher {
    pub fn start(etcd: Arc<Etcd>) -> Self {
        let (mut lanes, mut tasks) = (Vec::new(), Vec::new());
        for _ in 0..LANES {
            let (tx, rx) = mpsc::unbounded_channel();
            lanes.push(tx);
            tasks.push(AbortOnDrop(tokio::spawn(lane(etcd.clone(), rx))));
        }
        Batcher {
            lanes,
            _tasks: tasks,
            etcd,
        }
    }

    /// Runs `write` in its lane's next transaction. Bounded by twice the timeout: the transaction in flight
    /// before it, then its own.
    pub async fn run(&self, write: Write) -> Result<Answer> {
        let lane = write
            .hash
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
            % LANES;
        let (reply, rx) = oneshot::channel();
        self.lanes[lane]
            .send(Job { write, reply })
            .map_err(|_| Error::ShuttingDown("the etcd backend was dropped".into()))?;
        let address = &self.etcd.opts.address;
        match tokio::time::timeout(self.etcd.opts.timeout * 2, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(unavailable(address, "the call was lost")),
            Err(_) => Err(unavailable(
                address,
                format!("no answer within {} ms", (self.etcd.opts.timeout * 2).as_millis()),
            )),
        }
    }
}

/// One lane: up to [`IN_FLIGHT`] transactions at a time, each with the writes queued since the last one that
/// fit together.
async fn lane(etcd: Arc<Etcd>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut queued: VecDeque<Job> = VecDeque::new();
    loop {
        if queued.is_empty() {
            match rx.recv().await {
                Some(job) => queued.push_back(job),
                None => return,
            }
        }
        // One turn of the scheduler first: the tasks the last answer woke (a waiter handed the lock and about
        // to release it, a holder about to queue again) put their writes in this transaction.
        tokio::task::yield_now().await;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        while let Ok(job) = rx.try_recv() {
            queued.push_back(job);
        }
        let batch = take_batch(&mut queued);
        let etcd = etcd.clone();
        tokio::spawn(async move {
            send(&etcd, batch).await;
            drop(slot);
        });
    }
}

/// The writes at the front of `queued` that may share a transaction, in order: the first that may not starts
/// the next one (so no write overtakes another of its resource).
fn take_batch(queued: &mut VecDeque<Job>) -> Vec<Job> {
    let (mut keys, mut created) = (HashSet::new(), HashSet::new());
    let mut batch = Vec::new();
    while let Some(job) = queued.front() {
        let w = &job.write;
        if batch.len() == MAX_WRITES || keys.contains(&w.key) || (w.creates && created.contains(&w.hash)) {
            break;
        }
        keys.insert(w.key.clone());
        if w.creates {
            created.insert(w.hash.clone());
        }
        batch.extend(queued.pop_front());
    }
    batch
}

/// Sends `jobs` as one transaction (deletes first) and answers each.
async fn send(etcd: &Etcd, jobs: Vec<Job>) {
    if let [_] = jobs.as_slice() {
        for job in jobs {
            let answer = etcd.txn_counted(job.write.txn).await.map(|(r, repeated)| Answer {
                revision: revision_of(&r),
                r,
                repeated,
            });
            let _ = job.reply.send(answer);
        }
        return;
    }
    let order: Vec<usize> = (0..jobs.len())
        .filter(|&i| !jobs[i].write.creates)
        .chain((0..jobs.len()).filter(|&i| jobs[i].write.creates))
        .collect();
    let nested: Vec<TxnOp> = order.iter().map(|&i| TxnOp::txn(jobs[i].write.txn.clone())).collect();
    let outer = Txn::new().and_then(nested);
    match etcd.txn_counted(outer).await {
        Ok((r, repeated)) => {
            let revision = revision_of(&r);
            let mut answers: Vec<Option<TxnResponse>> = jobs.iter().map(|_| None).collect();
            for (&i, op) in order.iter().zip(r.op_responses()) {
                if let TxnOpResponse::Txn(nested) = op {
                    answers[i] = Some(nested);
                }
            }
            for (job, nested) in jobs.into_iter().zip(answers) {
                let answer = nested
                    .map(|r| Answer { r, revision, repeated })
                    .ok_or_else(|| unavailable(&etcd.opts.address, "a batched write got no answer of its own"));
                let _ = job.reply.send(answer);
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// The store's revision after a transaction (a nested one's header says nothing).
pub(super) fn revision_of(r: &TxnResponse) -> i64 {
    r.header().map_or(0, |h| h.revision())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(hash: &str, key: &str, creates: bool) -> Job {
        let (reply, _) = oneshot::channel();
        let write = Write {
            hash: hash.into(),
            key: key.into(),
            creates,
            txn: Txn::new(),
        };
        Job { write, reply }
    }

    #[test]
    fn a_batch_holds_one_new_key_per_resource_and_no_key_twice() {
        let mut q: VecDeque<Job> = [
            job("a", "a/1", false),
            job("a", "a/2", true),
            job("b", "b/1", true),
            job("a", "a/3", true),
            job("b", "b/2", false),
        ]
        .into_iter()
        .collect();
        let keys = |b: Vec<Job>| b.into_iter().map(|j| j.write.key).collect::<Vec<_>>();
        // The second new key of `a` starts the next batch, and nothing after it overtakes it.
        assert_eq!(keys(take_batch(&mut q)), ["a/1", "a/2", "b/1"]);
        assert_eq!(keys(take_batch(&mut q)), ["a/3", "b/2"]);
        let mut q: VecDeque<Job> = [job("a", "a/1", false), job("a", "a/1", true)].into_iter().collect();
        assert_eq!(keys(take_batch(&mut q)), ["a/1"]);
        assert_eq!(keys(take_batch(&mut q)), ["a/1"]);
    }
}
