//! The writer in leader mode ([`crate::leadership`]): following (forwarding a batch, or taking
//! the lock when nobody can be forwarded to), taking over, and leading (heartbeats, courtesy
//! turns, handing over at the end). Without leader mode none of this runs.

use std::{
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use super::{
    Followed, HANDOVER, Inbox, LINGER, Observe, Waiter, Writer, give_back, hand_out, numbers,
    refuse, refuse_forwarded,
};
use crate::{
    counter::CounterFile,
    error::Error,
    leader_block::{LeaderBlock, Token},
    leadership::{
        Forwarded, HEARTBEAT, Led, MAX_FORWARDED, MIXED_FOR, POLL_MAX, POLL_MIN, ROUTE_WAIT,
    },
    lease::{Advance, Lease},
    publisher::LOOK_UP_EVERY,
    record_file::RecordFile,
};

impl Writer {
    /// The epoch this writer leads, if it does.
    pub(super) fn leading_epoch(&self) -> Option<u64> {
        self.leadership.as_ref()?.role.leading()
    }

    /// How long to wait for callers before doing what an idle writer does: without leader mode,
    /// give an idle lease back after its linger; leading, publish after [`LINGER`] and beat;
    /// following while nobody could be reached, look again every [`HEARTBEAT`].
    pub(super) fn idle_after(&self, lease: &Option<Lease<'_>>) -> Option<Duration> {
        let Some(leadership) = &self.leadership else {
            return lease.is_some().then(|| self.linger());
        };
        match (lease, &leadership.led) {
            (Some(held), Some(led)) => Some(if self.published_idle {
                // The next beat, or the next courtesy turn if sooner.
                HEARTBEAT
                    .saturating_sub(led.beaten.elapsed())
                    .min(leadership.hold().saturating_sub(held.held()))
            } else {
                LINGER
            }),
            (Some(_), None) => Some(LINGER),
            (None, _) => leadership.reach.unreached().map(|_| HEARTBEAT),
        }
    }

    /// Nobody came for [`Writer::idle_after`].
    pub(super) fn idle<'f>(
        &mut self,
        file: &'f CounterFile,
        lease: &mut Option<Lease<'f>>,
        gone: &mut Vec<u64>,
    ) {
        if self.leadership.is_none() {
            return give_back(lease);
        }
        match lease {
            Some(held) => {
                if !self.published_idle {
                    if let Err(error) = held.publish_idle() {
                        tracing::warn!(%error, "could not publish the count while idle");
                    }
                    self.published_idle = true;
                }
                self.keep_leading(lease);
            }
            None => self.look_for_leader(file, lease, gone),
        }
    }

    /// A follower that found nobody to forward to looks again while idle, so that readiness
    /// turns back to 200 without a request (an unready replica receives none, so it would
    /// never find out otherwise): a leader whose block moved and who takes connections again,
    /// or else the lock, free once the filesystem has given away the one a cut-off leader held.
    fn look_for_leader<'f>(
        &mut self,
        file: &'f CounterFile,
        lease: &mut Option<Lease<'f>>,
        gone: &mut Vec<u64>,
    ) {
        if let Ok(Some(block)) = self.read_block(file) {
            let leadership = self.leadership.as_mut().expect("leader mode");
            if leadership.worth_forwarding_to(&block) && leadership.mode.forward.reachable(&block) {
                leadership.suspect = None;
                leadership.reach.reached();
                leadership.target = Some(block);
                return;
            }
        }
        match self.try_lease(file, lease) {
            Ok(true) => {
                if let Err(error) = self.take_over(lease, gone) {
                    *lease = None;
                    self.lock = None;
                    self.unreached(error.to_string());
                }
            }
            Ok(false) => {}
            Err(error) => self.unreached(error.to_string()),
        }
    }

    /// The leader block, read through the lock file kept open.
    fn read_block(&mut self, file: &CounterFile) -> crate::Result<Option<LeaderBlock>> {
        let lock = self.record_file(file)?;
        let read = lock.read_leader_block().map(|(block, _)| block);
        if read.is_err() {
            self.lock = None;
        }
        read
    }

    /// The lock file kept open (see [`RecordFile`]), opened if it is not.
    pub(super) fn record_file(&mut self, file: &CounterFile) -> crate::Result<Arc<RecordFile>> {
        if let Some(lock) = &self.lock {
            return Ok(lock.clone());
        }
        let lock = Arc::new(RecordFile::open(file.paths(), file.volume_kind())?);
        self.lock = Some(lock.clone());
        Ok(lock)
    }

    /// Takes the lock if nobody holds it, never waiting; true if this writer holds it now.
    fn try_lease<'f>(
        &mut self,
        file: &'f CounterFile,
        lease: &mut Option<Lease<'f>>,
    ) -> crate::Result<bool> {
        if lease.is_some() {
            return Ok(true);
        }
        let lock = self.record_file(file)?;
        match Lease::try_acquire(file.lock_site(), lock) {
            Ok(Some(mut taken)) => {
                self.lock = Some(taken.lock_file().clone());
                self.publish_from(&mut taken);
                *lease = Some(taken);
                Ok(true)
            }
            Ok(None) => {
                // The kept lock file left the path (lock_at_path went on to the one there):
                // opened again, so that the next read of the block reads that one.
                if self
                    .lock
                    .as_ref()
                    .is_some_and(|lock| matches!(lock.left_path_unlooked(), Ok(true)))
                {
                    self.lock = None;
                }
                Ok(false)
            }
            Err(error) => {
                self.lock = None;
                Err(error)
            }
        }
    }

    /// A follower's batch: forwarded to the leader, or, when nobody can be forwarded to, the
    /// lock taken without waiting and the batch left for this writer to write as the leader.
    /// The callers stay in the queue (they can leave it) until there is somewhere to send them.
    pub(super) fn follow<'f>(
        &mut self,
        inbox: &Inbox,
        file: &'f CounterFile,
        lease: &mut Option<Lease<'f>>,
        batch: &mut Vec<Waiter>,
        gone: &mut Vec<u64>,
        observer: &mut impl Observe,
    ) -> Followed {
        let started = Instant::now();
        let mut poll = POLL_MIN;
        loop {
            let target = self.leadership.as_ref().and_then(|leadership| {
                leadership
                    .target
                    .clone()
                    .filter(|block| leadership.worth_forwarding_to(block))
            });
            if let Some(target) = target {
                if batch.is_empty() {
                    inbox.take_increments(batch);
                    batch.retain(Waiter::claim);
                    // Forwarded to a follower: not chained on.
                    refuse_forwarded(batch, |_| true);
                    if batch.is_empty() {
                        return Followed::Done;
                    }
                }
                if let Some(done) = self.forward(&target, batch, gone, observer) {
                    return done;
                }
            }
            // Who leads, before the lock: a follower that tried the lock first would take it
            // from a healthy leader during its courtesy turn.
            match self.read_block(file) {
                Ok(Some(block)) => {
                    let leadership = self.leadership.as_mut().expect("leader mode");
                    let worth = leadership.worth_forwarding_to(&block);
                    leadership.role.follow(block.epoch);
                    leadership.target = Some(block);
                    if worth {
                        continue;
                    }
                    let why = format!(
                        "another process holds the counter's lock, and the leader block names {}{}",
                        block_address(&self.leadership.as_ref().expect("leader mode").target),
                        " (not answering, stepped down, or this replica)"
                    );
                    self.unreached(why);
                }
                Ok(None) => {
                    self.unreached("the lock is held and no leader has said where it is".into())
                }
                Err(error) => self.unreached(error.to_string()),
            }
            match self.try_lease(file, lease) {
                Ok(true) => match self.take_over(lease, gone) {
                    Ok(()) => return Followed::Leading,
                    Err(error) => {
                        *lease = None;
                        self.lock = None;
                        self.unreached(error.to_string());
                    }
                },
                Ok(false) => {}
                Err(error) => self.unreached(error.to_string()),
            }
            if batch.is_empty() && inbox.waiting() == 0 {
                return Followed::Done;
            }
            if !batch.is_empty() && started.elapsed() > ROUTE_WAIT {
                let reason = self
                    .leadership
                    .as_ref()
                    .and_then(|l| l.reach.unreached())
                    .map_or_else(String::new, |(_, why)| why);
                refuse(
                    batch,
                    &Error::NoLeader {
                        waited: started.elapsed(),
                        reason,
                    },
                );
                return Followed::Done;
            }
            thread::sleep(poll);
            // Backing off only while a leader is named that may come back. Without one (no
            // block, a stepped-down one, or one naming this replica, which lost the lock at a
            // courtesy turn), whoever holds the lock knows only `flock` (a replica of a previous
            // release, `counter set`): it takes the lock back every `MAX_HOLD` within
            // `HANDOVER`, a gap only a short poll hits.
            let flock_only = self.leadership.as_ref().is_some_and(|leadership| {
                leadership.target.as_ref().is_none_or(|block| {
                    block.stepped_down || block.address == leadership.mode.address
                })
            });
            poll = if flock_only {
                POLL_MIN
            } else {
                (poll * 2).min(POLL_MAX)
            };
        }
    }

    /// Forwards the claimed batch to `target`: `Some` when the batch is done with (answered or
    /// failed), `None` when nothing was written and it may be sent elsewhere.
    fn forward(
        &mut self,
        target: &LeaderBlock,
        batch: &mut Vec<Waiter>,
        gone: &mut Vec<u64>,
        observer: &mut impl Observe,
    ) -> Option<Followed> {
        let leadership = self.leadership.as_mut().expect("leader mode");
        let n = numbers(batch);
        debug_assert!(
            n <= MAX_FORWARDED,
            "a batch is bounded by the requests in flight"
        );
        let failed = |reason: String| Error::Forward {
            leader: target.address.to_string(),
            reason,
        };
        // A forward waiting for its answer does not make this replica unready: a leader that is
        // slow (a write waiting for CephFS's MDS tick during a rollout) or frozen with its lock
        // is every replica's outage, and all of them unready would turn waits into refusals.
        // Only a forward that failed counts (after FORWARD_TIMEOUT for one with no answer).
        match leadership.mode.forward.forward(target, n) {
            Forwarded::Durable { first } => {
                leadership.reach.reached();
                if leadership.followed != Some(target.epoch) {
                    tracing::info!(leader = %target.address, epoch = target.epoch, "following");
                    leadership.followed = Some(target.epoch);
                }
                observer.forwarded(n);
                hand_out(batch, first, gone);
            }
            Forwarded::Failed(reason) => {
                leadership.reach.reached();
                refuse(batch, &failed(reason));
            }
            Forwarded::Unknown(reason) => {
                tracing::warn!(leader = %target.address, n, %reason, "a forwarded batch got no answer: its numbers may have been used, none is handed out");
                leadership.suspect = Some((target.epoch, target.heartbeat));
                leadership.target = None;
                leadership.reach.failed(format!(
                    "the leader at {} did not answer: {reason}",
                    target.address
                ));
                observer.unknown(n);
                refuse(
                    batch,
                    &failed(format!(
                        "no answer ({reason}): they may have been made durable, and are never handed out"
                    )),
                );
            }
            Forwarded::Refused(reason) => {
                leadership.suspect = Some((target.epoch, target.heartbeat));
                leadership.target = None;
                leadership.reach.failed(format!(
                    "the leader at {} did not take the batch: {reason}",
                    target.address
                ));
                return None;
            }
        }
        Some(Followed::Done)
    }

    fn unreached(&self, why: String) {
        if let Some(leadership) = &self.leadership {
            leadership.reach.failed(why);
        }
    }

    /// With the lock just taken: leads. The same epoch again when this writer led it and the
    /// block still names it (after a courtesy turn someone else took); else a new one: the
    /// record written once (the count unchanged, the sequence number moved: the epoch), then
    /// the block with a new token, both durable before anything is served.
    fn take_over(
        &mut self,
        lease: &mut Option<Lease<'_>>,
        gone: &mut Vec<u64>,
    ) -> crate::Result<()> {
        let held = lease.as_mut().expect("the lock was just taken");
        let leadership = self.leadership.as_mut().expect("leader mode");
        let (block, slot) = held.read_leader_block()?;
        if leadership.last_seq.is_some_and(|seq| seq != held.seq()) || held.in_rollout() {
            note_mixed(leadership);
        }
        if let Some(floor) = leadership.floor.take() {
            held.raise_to(floor);
        }
        let resume = match (&leadership.led, &block) {
            (Some(led), Some(block)) => {
                block.epoch == led.epoch && block.address == leadership.mode.address
            }
            _ => false,
        };
        let mut led = if resume {
            let mut led = leadership.led.clone().expect("resumed");
            led.heartbeat += 1;
            led
        } else {
            match held.advance(0) {
                Advance::Durable { .. } => {}
                Advance::Failed { error, skipped } => {
                    gone.extend(skipped.into_iter().flatten());
                    return Err(error);
                }
            }
            let token = Token::random().map_err(|e| Error::io("read", "/dev/urandom", e))?;
            Led {
                epoch: held.seq(),
                token,
                heartbeat: 0,
                next_slot: slot,
                beaten: Instant::now(),
            }
        };
        led.next_slot = slot;
        held.write_leader_block(slot, &led.block(leadership.mode.address, false))?;
        led.next_slot = 1 - slot;
        led.beaten = Instant::now();
        leadership.last_seq = Some(held.seq());
        leadership.role.lead(led.epoch, led.token);
        leadership.reach.reached();
        leadership.target = None;
        leadership.suspect = None;
        if !resume {
            tracing::info!(epoch = led.epoch, address = %leadership.mode.address, "leading");
        }
        leadership.led = Some(led);
        Ok(())
    }

    /// After a batch or an idle wait, while leading: the heartbeat when due, then the courtesy
    /// turn when due.
    pub(super) fn keep_leading<'f>(&mut self, lease: &mut Option<Lease<'f>>) {
        let Some(held) = lease.as_mut() else {
            return;
        };
        let leadership = self.leadership.as_mut().expect("leader mode");
        leadership.last_seq = Some(held.seq());
        if leadership.identity_checked.elapsed() >= LOOK_UP_EVERY {
            leadership.identity_checked = Instant::now();
            if matches!(held.lock_file().left_path_unlooked(), Ok(true)) {
                return self.leave_lock_file(lease);
            }
        }
        let Some(led) = leadership.led.as_mut() else {
            return;
        };
        if led.beaten.elapsed() >= HEARTBEAT {
            led.heartbeat += 1;
            let block = led.block(leadership.mode.address, false);
            if let Err(error) = held.write_leader_block(led.next_slot, &block) {
                tracing::warn!(%error, "the leader's heartbeat failed");
                self.step_down(lease, "its heartbeat failed");
                return;
            }
            led.next_slot = 1 - led.next_slot;
            led.beaten = Instant::now();
        }
        if held.held() >= leadership.hold() {
            self.courtesy(lease);
        }
    }

    /// The lock file this leader holds left the path (deleted, or a file renamed over it: an
    /// operator's reset or restore). Whoever opens the path now locks another file, and one
    /// that finds it new or replaced waits [`crate::lease::REPLACED_LOCK_FILE_WAIT`] before it
    /// reads the count, the published file's included (see [`RecordFile`]): so this leader
    /// stops writing at once, publishes its count on this thread, gives the old lock back and
    /// follows. Asked every [`LOOK_UP_EVERY`] of the file itself, which costs no lookup.
    fn leave_lock_file(&mut self, lease: &mut Option<Lease<'_>>) {
        tracing::warn!(
            "the counter's lock file left its path (deleted, or another file renamed over it): \
             publishing the count and giving that file's lock back"
        );
        if let Some(held) = lease.as_mut() {
            held.publish_in_foreground();
            self.leadership.as_mut().expect("leader mode").floor = Some(held.value());
        }
        give_back(lease);
        self.lock = None;
        self.stepped_down("its lock file left the path");
    }

    /// A lease taken in leader mode on a network volume publishes through the publisher
    /// thread ([`crate::publisher`]).
    fn publish_from(&self, taken: &mut Lease<'_>) {
        if let Some(publication) = &self.publication
            && !taken.lock_file().local
        {
            taken.publish_in_background(publication.clone());
        }
    }

    /// Notes when a batch carries followers' increments (see [`Writer::let_go`]).
    pub(super) fn note_forwarded(&mut self, batch: &[Waiter]) {
        if let Some(leadership) = self.leadership.as_mut()
            && batch.iter().any(|waiter| waiter.epoch.is_some())
        {
            leadership.forwarded_at = Some(Instant::now());
        }
    }

    /// At the end, the lock given back. A leader whose followers forwarded within the last
    /// [`HEARTBEAT`] leaves publishing to its successor: a rename can wait for CephFS's tick,
    /// and they wait for the lock (see [`crate::publisher`]). One alone publishes first, as
    /// without leader mode, so that a volume left without replicas shows the count.
    pub(super) fn let_go(&mut self, lease: &mut Option<Lease<'_>>) {
        let followed = self.leadership.as_ref().is_some_and(|leadership| {
            leadership
                .forwarded_at
                .is_some_and(|at| at.elapsed() < HEARTBEAT)
        });
        if !followed && let Some(held) = lease.as_mut() {
            held.publish_in_foreground();
        }
        give_back(lease);
    }

    /// Gives the lock back for a moment, for whatever knows only `flock`, and takes it again
    /// without waiting; if someone else has it now, this writer follows until it can lead again.
    /// Not while the publisher has a publication in flight: the turn comes after a later batch.
    fn courtesy<'f>(&mut self, lease: &mut Option<Lease<'f>>) {
        if !lease.as_ref().expect("leading").may_let_go() {
            return;
        }
        let held = lease.as_ref().expect("leading");
        if matches!(held.lock_file().left_path_unlooked(), Ok(true)) {
            return self.leave_lock_file(lease);
        }
        let site = lease.as_ref().expect("leading").lock_file().clone();
        let file_site = lease.as_ref().map(|held| held.site()).expect("leading");
        let reached = lease.as_ref().map(Lease::value).expect("leading");
        give_back(lease);
        thread::sleep(HANDOVER);
        let leadership = self.leadership.as_mut().expect("leader mode");
        match Lease::try_acquire_again(file_site, site.clone()) {
            Ok(Some(mut taken)) if !Arc::ptr_eq(taken.lock_file(), &site) => {
                // The file left the path in that moment, its count maybe not all published:
                // the one at the path starts from this leader's count at least, and this
                // writer takes over anew (an epoch of that file's).
                taken.raise_to(reached);
                let mut moved = Some(taken);
                give_back(&mut moved);
                leadership.floor = Some(reached);
                self.lock = None;
                self.stepped_down("its lock file left the path");
            }
            Ok(Some(mut taken)) => {
                self.publish_from(&mut taken);
                let leadership = self.leadership.as_mut().expect("leader mode");
                if leadership.last_seq.is_some_and(|seq| seq != taken.seq()) || taken.in_rollout() {
                    note_mixed(leadership);
                }
                leadership.last_seq = Some(taken.seq());
                self.lock = Some(taken.lock_file().clone());
                *lease = Some(taken);
            }
            Ok(None) => {
                // Someone else writes now: forwarded batches wait for this writer to lead
                // again, or are refused if another replica took over.
                let epoch = leadership.role.epoch();
                leadership.role.follow(epoch);
            }
            Err(error) => {
                tracing::warn!(%error, "could not take the counter's lock back after a courtesy turn");
                self.lock = None;
                self.stepped_down("the lock could not be taken back");
            }
        }
    }

    /// Stops leading: the lease is dropped (the lock given back without publishing: it may be
    /// what failed) and the writer follows.
    pub(super) fn step_down(&mut self, lease: &mut Option<Lease<'_>>, reason: &str) {
        *lease = None;
        self.lock = None;
        self.stepped_down(reason);
    }

    /// Records that this writer no longer leads (its lease is already gone).
    pub(super) fn stepped_down(&mut self, reason: &str) {
        let Some(leadership) = self.leadership.as_mut() else {
            return;
        };
        if let Some(led) = leadership.led.take() {
            tracing::info!(epoch = led.epoch, reason, "stepping down");
            leadership.role.follow(led.epoch);
        }
    }

    /// At the end, while leading: the block says the leader stepped down, so that followers go
    /// straight for the lock (best effort: they find out by being refused anyway).
    pub(super) fn hand_over(&mut self, lease: &mut Option<Lease<'_>>) {
        let (Some(held), Some(leadership)) = (lease.as_mut(), self.leadership.as_mut()) else {
            return;
        };
        if let Some(led) = leadership.led.take() {
            let mut last = led.clone();
            last.heartbeat += 1;
            let block = last.block(leadership.mode.address, true);
            if let Err(error) = held.write_leader_block(led.next_slot, &block) {
                tracing::warn!(%error, "could not say in the leader block that this replica stepped down");
            }
            leadership.role.follow(led.epoch);
            tracing::info!(
                epoch = led.epoch,
                "handing over: giving the counter's lock back"
            );
        }
    }
}

fn block_address(block: &Option<LeaderBlock>) -> String {
    block
        .as_ref()
        .map_or_else(|| "nobody".into(), |block| block.address.to_string())
}

fn note_mixed(leadership: &mut crate::leadership::Leadership) {
    if leadership
        .mixed_until
        .is_none_or(|until| until < Instant::now())
    {
        tracing::info!(
            "someone else wrote the counter during a courtesy turn (a `counter set`, or a replica without leader mode): giving the lock back every MAX_HOLD for a while"
        );
    }
    leadership.mixed_until = Some(Instant::now() + MIXED_FOR);
}
