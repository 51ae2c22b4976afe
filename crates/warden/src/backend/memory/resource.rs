//! One resource: its holders and its FIFO queue of waiters.

#[allow(unused_imports)]
use super::*;

#[derive(Debug, Default)]
pub(super) struct Res {
    pub(super) fence: u64,
    pub(super) exclusive: Tok,
    /// Readers and waiters, boxed: most resources have neither.
    pub(super) more: Option<Box<More>>,
}

#[derive(Debug, Default)]
pub(super) struct More {
    pub(super) readers: Vec<Tok>,
    /// How many of the readers are shared (or read) holders, and how many intend exclusive locks below (the
    /// kinds that exclude each other without excluding themselves).
    pub(super) shared_readers: u32,
    pub(super) intent_x_readers: u32,
    pub(super) queue: VecDeque<Waiter>,
    /// A semaphore's permits (its holders are the readers); 0: a lock. Lives as long as the resource is in use.
    pub(super) permits: u32,
}

#[derive(Debug)]
pub(super) struct Waiter {
    pub(super) id: String,
    pub(super) client: Arc<str>,
    pub(super) kind: LockKind,
    pub(super) ttl: Duration,
    pub(super) deadline: Instant,
    /// Its place: µs since the store's epoch when it arrived, less its priority's head start.
    pub(super) place: i64,
}

impl More {
    /// Adds a holder of a non-exclusive `kind`.
    pub(super) fn add_reader(&mut self, t: Tok, kind: LockKind) {
        self.readers.push(t);
        match kind {
            LockKind::Shared | LockKind::Read => self.shared_readers += 1,
            LockKind::IntentExclusive => self.intent_x_readers += 1,
            _ => {}
        }
    }
    /// Removes the holder `t`, of `kind`, if it holds.
    pub(super) fn remove_reader(&mut self, t: Tok, kind: LockKind) {
        let Some(at) = self.readers.iter().position(|r| *r == t) else {
            return;
        };
        self.readers.swap_remove(at);
        match kind {
            LockKind::Shared | LockKind::Read => self.shared_readers -= 1,
            LockKind::IntentExclusive => self.intent_x_readers -= 1,
            _ => {}
        }
    }
    /// Forgets every non-exclusive holder.
    pub(super) fn clear_readers(&mut self) {
        self.readers.clear();
        self.shared_readers = 0;
        self.intent_x_readers = 0;
    }
    /// Queues `w` after every waiter whose place is not later (FIFO within a place). Returns whether it went
    /// ahead of someone.
    pub(super) fn enqueue(&mut self, w: Waiter) -> bool {
        let at = self.queue.iter().rposition(|q| q.place <= w.place).map_or(0, |i| i + 1);
        let ahead = at < self.queue.len();
        self.queue.insert(at, w);
        ahead
    }
}

impl Res {
    pub(super) fn readers(&self) -> &[Tok] {
        self.more.as_ref().map(|m| m.readers.as_slice()).unwrap_or(&[])
    }
    pub(super) fn queue(&self) -> impl Iterator<Item = &Waiter> {
        self.more.iter().flat_map(|m| m.queue.iter())
    }
    pub(super) fn queue_head(&self) -> Option<&Waiter> {
        self.more.as_ref().and_then(|m| m.queue.front())
    }
    pub(super) fn queue_len(&self) -> usize {
        self.more.as_ref().map(|m| m.queue.len()).unwrap_or(0)
    }
    pub(super) fn more_mut(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }
    /// Frees the boxed part once it holds nothing.
    pub(super) fn shrink(&mut self) {
        if self
            .more
            .as_ref()
            .is_some_and(|m| m.readers.is_empty() && m.queue.is_empty())
        {
            self.more = None;
        }
    }
    pub(super) fn holds(&self, t: Tok) -> bool {
        self.exclusive == t || self.readers().contains(&t)
    }
    pub(super) fn is_idle(&self) -> bool {
        self.exclusive == NO_TOK && self.more.is_none()
    }
    /// What the resource is in use as: `Some(permits)` of a semaphore, `Some(0)` a lock, `None` idle.
    pub(super) fn in_use_as(&self) -> Option<u32> {
        if self.is_idle() {
            return None;
        }
        Some(self.more.as_ref().map(|m| m.permits).unwrap_or(0))
    }
    fn free_permits(&self) -> usize {
        let permits = self.more.as_ref().map(|m| m.permits).unwrap_or(0) as usize;
        permits.saturating_sub(self.readers().len())
    }
    /// Drops waiters at the head whose queue lease ran out. Returns whether any was dropped.
    pub(super) fn clean_head(&mut self, now: Instant) -> bool {
        let Some(m) = self.more.as_mut() else {
            return false;
        };
        let mut cleaned = false;
        while m.queue.front().is_some_and(|w| w.deadline < now) {
            m.queue.pop_front();
            cleaned = true;
        }
        self.shrink();
        cleaned
    }
    /// Whether FIFO order lets `me` (a queued waiter id, or a newcomer) take a lock of `kind` now.
    pub(super) fn queue_allows(&self, me: Option<&str>, kind: LockKind, now: Instant) -> bool {
        let Some(head) = self.queue_head() else {
            return true;
        };
        if kind.is_exclusive() {
            return me == Some(head.id.as_str());
        }
        if kind == LockKind::Semaphore {
            // Granted while fewer live waiters are ahead than permits are free.
            let free = self.free_permits();
            let mut ahead = 0;
            for w in self.queue() {
                if me == Some(w.id.as_str()) {
                    break;
                }
                ahead += usize::from(w.deadline >= now);
            }
            return ahead < free;
        }
        // Any other kind goes ahead of waiters it is compatible with (they wait for a holder that blocks it too,
        // or may go with it), never ahead of one it would block.
        for w in self.queue() {
            if me == Some(w.id.as_str()) {
                return true;
            }
            if w.deadline >= now && !kind.compatible_with(w.kind) {
                return false;
            }
        }
        true
    }
    pub(super) fn compatible(&self, kind: LockKind) -> bool {
        if self.exclusive != NO_TOK {
            return false;
        }
        let (shared, intent_x) = self
            .more
            .as_ref()
            .map_or((0, 0), |m| (m.shared_readers, m.intent_x_readers));
        match kind {
            LockKind::Semaphore => self.free_permits() > 0,
            LockKind::Exclusive | LockKind::Write => self.readers().is_empty(),
            LockKind::Shared | LockKind::Read => intent_x == 0,
            LockKind::IntentExclusive => shared == 0,
            _ => true,
        }
    }
    /// Waiters that may proceed now: as many of a semaphore's first waiters as permits are free, or else the
    /// run at the head of waiters compatible with the holders and with each other (the exclusive head of a free
    /// lock, shared waiters, intentions that coexist).
    pub(super) fn eligible(&self, now: Instant) -> Vec<String> {
        let Some(head) = self.queue_head() else {
            return Vec::new();
        };
        if head.kind == LockKind::Semaphore {
            return self
                .queue()
                .filter(|w| w.deadline >= now)
                .take(self.free_permits())
                .map(|w| w.id.clone())
                .collect();
        }
        // The kinds in the run so far: (any, shared, intent-exclusive).
        let (mut any, mut shared, mut intent_x) = (false, false, false);
        let mut run = Vec::new();
        for w in self.queue().filter(|w| w.deadline >= now).take(1000) {
            let fits = match w.kind {
                LockKind::Exclusive | LockKind::Write => !any,
                LockKind::Shared | LockKind::Read => !intent_x,
                LockKind::IntentExclusive => !shared,
                _ => true,
            };
            if !fits || !self.compatible(w.kind) {
                break;
            }
            any = true;
            shared |= matches!(w.kind, LockKind::Shared | LockKind::Read);
            intent_x |= w.kind == LockKind::IntentExclusive;
            run.push(w.id.clone());
            if w.kind.is_exclusive() {
                break;
            }
        }
        run
    }
}
