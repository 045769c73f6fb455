//! Leader mode: one replica writes, the others forward their batches to it (SPEC §2
//! `ADVERTISE_ADDR`, §3 leader block, §4 internal endpoint, §7).
//!
//! Replicas that take turns at the counter's lock pay, at every turn, what a lease costs on a
//! network filesystem (taking the lock, reading the record, publishing): 2 replicas on CephFS
//! answered 0.05× of one. So in leader mode the writer that holds the lock keeps it while it is
//! healthy, and the writers of the other replicas, instead of waiting for the lock, send each of
//! their batches to it as one internal request carrying `n` increments, and hand their callers
//! the numbers it made durable. The lock stays the only arbiter of who writes: a leader writes
//! only under a lease ([`crate::lease`]), with the same trust rules, so a replica that believes it
//! leads after losing the lock writes nothing that is trusted. Forwarding only changes who waits.
//!
//! - **Taking over.** A writer with callers and nobody to forward to tries the lock without
//!   waiting (never a blocking `flock`: Linux's NFS client polls a blocked one at 1 s, 2 s … 30 s
//!   when the server sends no callback), every [`POLL_MIN`] growing to [`POLL_MAX`]. Once it has
//!   it, it writes the record once (the same count, a new sequence number: its *epoch*) and its
//!   leader block ([`crate::leader_block`]) with a new token; only then does it serve.
//! - **Leading.** Its batches carry its own callers and the forwarded ones alike (one durable
//!   write for all). It rewrites the block every [`HEARTBEAT`], busy or idle: that keeps its lease
//!   trusted, finds a fenced descriptor, and shows it alive. Every [`COURTESY`] it gives the lock
//!   back for a moment, so that what knows only `flock` (a `counter set`, a replica of a previous
//!   release, a replica without leader mode) gets its turn; if the record's sequence moved
//!   meanwhile, or the lease finds replicas of the release before the record about
//!   ([`crate::rollout`]: they write only the published file), someone else wrote, and until [`MIXED_FOR`] after the last such write it gives
//!   the lock back every [`crate::lease::MAX_HOLD`] as replicas without leader mode do.
//! - **Following.** A forward that is refused (nothing written: connection refused, 421) sends the
//!   writer back to the lock and the block; one whose outcome is unknown (no answer within
//!   [`FORWARD_TIMEOUT`], a connection broken after sending) fails its callers and its `n` are
//!   counted as possibly used ([`crate::Observe::unknown`]), never handed out. A follower that has
//!   found nobody to forward to for over [`crate::group_commit::UNREADY_AFTER_WAITING`] turns
//!   unready with the reason, and looks again every [`HEARTBEAT`] while it does.
//!
//! The HTTP side (the internal endpoint and the client that forwards) is the service's:
//! [`Forward`] is how this crate asks for a forward.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::leader_block::{LeaderBlock, Token};

/// How often a leader rewrites its block: well within the lease's trust window
/// ([`crate::lease::TRUST`], 2 s), so an idle leader is never distrusted.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a leader keeps the lock before giving it back for a moment (see the module docs):
/// the longest a `counter set` or a replica without leader mode waits for it while a leader
/// serves.
pub const COURTESY: Duration = Duration::from_secs(1);

/// After finding that someone else wrote the record during a courtesy turn, how long a leader
/// gives the lock back every [`crate::lease::MAX_HOLD`]. A busy replica that knows only turns
/// (of a previous release) writes at every turn it gets, so this is renewed while it serves;
/// after a one-off `counter set`, 20 ms turns (each publishing the count) stop soon. An idle
/// one that comes back waits for the next courtesy turn (at most [`COURTESY`]).
pub const MIXED_FOR: Duration = Duration::from_secs(10);

/// The first and the longest interval between two attempts at the lock while nobody can be
/// forwarded to.
pub const POLL_MIN: Duration = Duration::from_millis(1);
pub const POLL_MAX: Duration = Duration::from_millis(50);

/// The longest a follower waits for a forwarded batch's answer: within the callers' request
/// timeout (5 s), so that they get the follower's 503 rather than their own timeout.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest a batch already claimed waits for somebody to forward it to or for the lock:
/// then it fails, with no number used.
pub const ROUTE_WAIT: Duration = Duration::from_secs(4);

/// The most increments one internal request may carry (SPEC §4): a batch is bounded by the
/// requests in flight, far below this; more would let one request burn numbers at will.
pub const MAX_FORWARDED: u64 = 1024;

/// What a forward came to.
#[derive(Debug)]
pub enum Forwarded {
    /// The leader made `first .. first + n` durable: the follower's to hand out.
    Durable { first: u64 },
    /// Nothing was written (the leader was not reachable, or does not lead that epoch): ask
    /// again, elsewhere.
    Refused(String),
    /// The leader answered that its write failed: nothing is handed out (the leader reports
    /// what it may have used).
    Failed(String),
    /// No answer: the increments may have been made durable, or not.
    Unknown(String),
}

/// How a follower's writer sends a batch to the leader; the service implements it over HTTP.
pub trait Forward: Send + 'static {
    /// Sends `n` increments to the leader `to` names, with its epoch and token, and waits at
    /// most [`FORWARD_TIMEOUT`] for the answer.
    fn forward(&mut self, to: &LeaderBlock, n: u64) -> Forwarded;

    /// Whether the leader's internal endpoint can be reached at all (a connection opened): asked
    /// while this replica is unready because it found nobody to forward to.
    fn reachable(&mut self, to: &LeaderBlock) -> bool;
}

/// Leader mode's settings: where this replica's internal endpoint is reached, and how it
/// forwards.
pub struct LeaderMode {
    pub address: SocketAddr,
    pub forward: Box<dyn Forward>,
}

impl std::fmt::Debug for LeaderMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderMode")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// What the internal endpoint checks a request against, and what metrics show: set by the
/// writer when it takes over, cleared when it stops leading.
#[derive(Debug, Default)]
pub struct Role(Mutex<RoleState>);

#[derive(Debug, Default, Clone, Copy)]
struct RoleState {
    leading: Option<(u64, Token)>,
    /// The epoch led or followed, 0 before any.
    epoch: u64,
}

/// An internal request's credentials, checked: token first (403), then epoch (421).
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// This replica does not lead, or leads another epoch.
    NotLeader,
    WrongToken,
}

impl Role {
    fn lock(&self) -> std::sync::MutexGuard<'_, RoleState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn lead(&self, epoch: u64, token: Token) {
        *self.lock() = RoleState {
            leading: Some((epoch, token)),
            epoch,
        };
    }

    pub(crate) fn follow(&self, epoch: u64) {
        *self.lock() = RoleState {
            leading: None,
            epoch,
        };
    }

    /// The epoch this replica leads, if it does.
    pub fn leading(&self) -> Option<u64> {
        self.lock().leading.map(|(epoch, _)| epoch)
    }

    /// The epoch this replica leads or last followed, 0 before any.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Whether an internal request for `epoch` with `token` (lowercase hex) may be served.
    pub fn admit(&self, epoch: u64, token: &[u8]) -> Admission {
        match self.lock().leading {
            None => Admission::NotLeader,
            Some((_, ours)) if !ours.matches(token) => Admission::WrongToken,
            Some((led, _)) if led != epoch => Admission::NotLeader,
            Some(_) => Admission::Admitted,
        }
    }
}

/// Since when, and why, a follower has found nobody to forward to: readiness reports it past
/// a threshold.
#[derive(Debug, Default)]
pub struct Reach(Mutex<Option<(Instant, String)>>);

impl Reach {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, String)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long, and why, if nobody could be reached since then.
    pub fn unreached(&self) -> Option<(Duration, String)> {
        self.lock()
            .as_ref()
            .map(|(since, why)| (since.elapsed(), why.clone()))
    }

    pub(crate) fn failed(&self, why: String) {
        let mut state = self.lock();
        match &mut *state {
            Some((_, reason)) => *reason = why,
            None => *state = Some((Instant::now(), why)),
        }
    }

    pub(crate) fn reached(&self) {
        *self.lock() = None;
    }
}

/// The writer's side of leader mode: its settings, the leader it forwards to, and, while it
/// leads, its epoch and when it last wrote its block.
pub(crate) struct Leadership {
    pub mode: LeaderMode,
    pub role: Arc<Role>,
    pub reach: Arc<Reach>,
    /// The leader to forward to, as last read from the block.
    pub target: Option<LeaderBlock>,
    /// A leader (epoch, heartbeat) a forward failed with: not tried again until its block moves.
    pub suspect: Option<(u64, u64)>,
    /// While leading: the epoch, its token, the heartbeat and the slot of the next block write,
    /// and when the block was last written.
    pub led: Option<Led>,
    /// The record's sequence number after this replica's last write, to see on taking the lock
    /// back whether someone else wrote meanwhile.
    pub last_seq: Option<u64>,
    /// Until when a leader gives the lock back every `MAX_HOLD` (see [`MIXED_FOR`]).
    pub mixed_until: Option<Instant>,
    /// The epoch last forwarded to with success, to log a new leader once.
    pub followed: Option<u64>,
    /// When this replica, leading, last wrote a batch a follower forwarded.
    pub forwarded_at: Option<Instant>,
    /// When the leader last asked its lock file whether it is still at the path.
    pub identity_checked: Instant,
    /// The count this replica reached as leader on a lock file that then left the path: the
    /// next takeover starts from it at least (see `Lease::raise_to`).
    pub floor: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Led {
    pub epoch: u64,
    pub token: Token,
    pub heartbeat: u64,
    pub next_slot: usize,
    pub beaten: Instant,
}

impl Led {
    pub fn block(&self, address: SocketAddr, stepped_down: bool) -> LeaderBlock {
        LeaderBlock {
            epoch: self.epoch,
            heartbeat: self.heartbeat,
            address,
            token: self.token,
            stepped_down,
        }
    }
}

impl Leadership {
    pub fn new(mode: LeaderMode, role: Arc<Role>, reach: Arc<Reach>) -> Self {
        Leadership {
            mode,
            role,
            reach,
            target: None,
            suspect: None,
            led: None,
            last_seq: None,
            mixed_until: None,
            followed: None,
            forwarded_at: None,
            identity_checked: Instant::now(),
            floor: None,
        }
    }

    /// How long a leader keeps the lock before its courtesy turn.
    pub fn hold(&self) -> Duration {
        if self.mixed_until.is_some_and(|until| Instant::now() < until) {
            crate::lease::MAX_HOLD
        } else {
            COURTESY
        }
    }

    /// Whether `block` names another replica that leads and that no forward failed with since
    /// its block last moved.
    pub fn worth_forwarding_to(&self, block: &LeaderBlock) -> bool {
        !block.stepped_down
            && block.address != self.mode.address
            && self.suspect != Some((block.epoch, block.heartbeat))
    }
}
