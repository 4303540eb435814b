//! Store calls handed to the core's worker, for callers that must not wait on a lock.
//!
//! Every store call may wait up to the busy timeout for another process's write lock (the CLI,
//! the other server, a backup). On Prosody's event loop that wait stalls every session: four
//! registrations behind a held lock once pushed a ping from 0.5 ms to 4 s. A call made through
//! [`Hosting::later`] runs on the worker's blocking pool, on a connection of its own opened with
//! the longer `worker_busy_timeout`, and its caller watches the [`Pending`]'s descriptor instead.
//!
//! A call that is usually quick and must stay quick (a slot decision) goes through
//! [`Hosting::now_or_later`] instead: it is tried on the caller's thread without waiting for any
//! lock, and only when another connection holds the write lock is it handed to the worker. The
//! caller then answers from the [`Pending`], as for `later`.
//!
//! A write nobody waits for (a removed account forgotten, a login counted, a directory or an
//! archive registered) goes through [`Hosting::now_or_in_background`]: the same, except that the
//! worker does not give up when its wait for the lock runs out. A backup may hold the lock for
//! longer than any wait worth making, and the admin expects the write once the lock is free: the
//! worker tries again after a pause that doubles each time ([`BACKGROUND_RETRY`]), and only after
//! its last try does the caller get the error, which says how long it was tried.
//!
//! A call whose caller waits for its answer with a deadline (ejabberd's: the calling Erlang
//! process waits in `receive`, never on a scheduler) goes through [`Hosting::now_or_answer`]: as
//! `now_or_later`, except that the worker makes the call only while its caller still waits. It
//! waits for the lock at most as long as its caller allows from the request (the worker's own
//! wait, or the server's busy timeout for a caller that serves others meanwhile), and a call that
//! gets the worker's connection later than that is not made at all: the caller, who stops
//! waiting a grace later ([`Hosting::answer_within`]), is never told "failed" for a change made
//! after all. Calls queued behind a held lock therefore cost the worker (and DNS checks,
//! housekeeping behind them) at most that long, not one full wait each.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::clock::ManualClock;
use crate::worker::Pending;
use crate::{Error, Hosting, Result};

/// How a call on this thread meets another connection's lock, and what it did before.
#[derive(Clone, Copy)]
struct Tracking {
    /// Whether store calls wait for the lock (the worker's tries) or give up at once (a
    /// [`Hosting::now_or_later`] attempt on the caller's thread).
    waits: bool,
    /// Whether one of the call's transactions has committed.
    committed: bool,
    /// Whether a store call found the handle's connection in use by another thread of this
    /// process (and gave up at once: see [`connection_in_use`]).
    connection_in_use: bool,
    /// When the call's caller stops waiting ([`Hosting::now_or_answer`]): no store call waits for
    /// a lock past it, and none starts after it. After the call's first commit,
    /// [`Tracking::answer_by`].
    until: Option<Instant>,
    /// The last moment the answer can still reach the caller ([`Hosting::answer_sent_by`]): a
    /// call that has committed part of its change goes on until then (its caller is told what
    /// was made), never past it (it would hold the worker's connection, and every call queued
    /// behind it, for an answer nobody gets).
    answer_by: Option<Instant>,
}

thread_local! {
    /// Set while a tracked call runs on this thread: during a [`Hosting::now_or_later`] attempt
    /// the store's transactions give up at once on another connection's lock (SQLITE_BUSY)
    /// instead of waiting for it; in every tracked call a commit is noted, because a call that
    /// wrote part of its change must not be started again.
    static ATTEMPT: Cell<Option<Tracking>> = const { Cell::new(None) };
}

/// Whether store calls on this thread wait for another connection's lock (the handle's busy
/// timeout): not during a [`Hosting::now_or_later`] attempt.
pub(crate) fn waits_for_locks() -> bool {
    ATTEMPT.with(|a| a.get().is_none_or(|t| t.waits))
}

/// How much longer a store call on this thread may wait for another connection's lock, when its
/// caller waits with a deadline ([`Hosting::now_or_answer`]); `None`: no deadline of a caller,
/// the handle's busy timeout applies. `Some(ZERO)`: the caller has stopped waiting, and the call
/// must not start.
pub(crate) fn wait_left() -> Option<Duration> {
    ATTEMPT.with(|a| a.get().and_then(|t| t.until)).map(|until| until.saturating_duration_since(Instant::now()))
}

/// A transaction committed during a tracked call: the call's work is then partly done, and
/// starting it again would do that part twice.
///
/// Its caller's deadline for the lock ([`Hosting::now_or_answer`]) then moves to the last moment
/// its answer can be sent: the deadline is there so that nothing is started after the caller
/// stopped waiting, and once something is made the call should finish while its caller can still
/// be told (the admin who set an upload limit would otherwise be told nothing was done though the
/// limit changed). Past that moment the caller has been told the store did not answer, and to
/// check: a step then fails like any other, and what is left is for the next call.
pub(crate) fn committed() {
    ATTEMPT.with(|a| {
        if let Some(t) = a.get() {
            a.set(Some(Tracking { committed: true, until: t.answer_by, ..t }));
        }
    });
}

/// A store call of a [`Hosting::now_or_later`] attempt found the handle's connection in use by
/// another thread of this process and gave up (SQLITE_BUSY) without waiting for it: noted so that
/// the caller is told why the call went to the worker ([`LaterBecause::ConnectionInUse`]), since
/// no other process held anything.
pub(crate) fn connection_in_use() {
    ATTEMPT.with(|a| {
        if let Some(t) = a.get() {
            a.set(Some(Tracking { connection_in_use: true, ..t }));
        }
    });
}

/// Tracks this thread's store calls for as long as it lives (a panic in the call ends the
/// tracking too), and puts back what was there before.
struct AttemptScope(Option<Tracking>);

impl AttemptScope {
    /// `waits`: whether the call may wait for another connection's lock.
    fn start(waits: bool) -> Self {
        Self::tracking(Tracking { waits, committed: false, connection_in_use: false, until: None, answer_by: None })
    }

    /// A call on the worker that may wait for the lock until `until`, whose answer reaches its
    /// caller until `answer_by`.
    fn until(until: Instant, answer_by: Instant) -> Self {
        Self::tracking(Tracking {
            waits: true,
            committed: false,
            connection_in_use: false,
            until: Some(until),
            answer_by: Some(answer_by),
        })
    }

    fn tracking(tracking: Tracking) -> Self {
        AttemptScope(ATTEMPT.with(|a| a.replace(Some(tracking))))
    }

    /// Whether a store call of the call found the handle's connection in use by another thread.
    fn met_connection_in_use(&self) -> bool {
        ATTEMPT.with(|a| a.get().is_some_and(|t| t.connection_in_use))
    }

    /// Whether a transaction committed during the call.
    fn committed(&self) -> bool {
        ATTEMPT.with(|a| a.get().is_some_and(|t| t.committed))
    }
}

impl Drop for AttemptScope {
    fn drop(&mut self) {
        ATTEMPT.with(|a| a.set(self.0));
    }
}

/// The busy error's text: the store's write lock was held elsewhere for over `waited`; `tried`
/// adds how many times and over how long, for a background write that was tried again.
fn lock_held_text(waited: Duration, tried: Option<(u32, Duration)>) -> String {
    let how_long = match tried {
        None => format!("for over {} s, as long as xmpp-hosting waits for it", waited.as_secs_f64()),
        Some((tries, over)) => format!(
            "for over {} s (as long as xmpp-hosting waits for it) at each of {tries} tries over {} s",
            waited.as_secs_f64(),
            over.as_secs()
        ),
    };
    format!(
        "the store's write lock was held elsewhere (the command line, the other server, a backup, a long \
         sweep) {how_long}; this change was not made, or not all of it: check, and try it again once the lock \
         is free"
    )
}

/// A worker call that waited `waited` for another connection's write lock and gave up: said in
/// an admin's words (SQLite's own is "database is locked"), still a busy store error (code
/// `store`, [`Error::is_busy`]) for callers that tell them apart. The transaction that met the
/// lock was rolled back; a call of several transactions may have committed the ones before it,
/// so the text does not promise that nothing was written. `tried`: how many tries, over how long.
fn gave_up(e: Error, waited: Option<Duration>, tried: Option<(u32, Duration)>) -> Error {
    match (e, waited) {
        (Error::Store(rusqlite::Error::SqliteFailure(code, _)), Some(waited))
            if code.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            Error::Store(rusqlite::Error::SqliteFailure(code, Some(lock_held_text(waited, tried))))
        }
        (e, _) => e,
    }
}

/// How often, and after which pauses, the worker tries a background write again after its wait
/// for another process's lock ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries on the worker in all (each waits up to `worker_busy_timeout` for the lock).
    pub tries: u32,
    /// The pause after the first try that met the lock; each later pause is twice the one
    /// before, up to `longest_pause`.
    pub first_pause: Duration,
    pub longest_pause: Duration,
    /// How many background writes of one store may wait for the lock at once. Each holds a
    /// descriptor pair the server watches; past this, a new one is refused at once (its caller
    /// logs it) rather than letting a lock stuck for an hour of logins exhaust the server's
    /// open files.
    pub most_waiting: usize,
}

impl Retry {
    /// How long a write's tries take, from its request: every try's wait for the lock and every
    /// pause. A write is given up once twice this has gone by (time waiting for its turn behind
    /// other writes counts, so a queue behind a stuck lock does not stretch it without end; the
    /// factor leaves room for waits that run a little long on a busy machine).
    fn budget(&self, waited: Duration) -> Duration {
        let mut pauses = Duration::ZERO;
        let mut pause = self.first_pause;
        for _ in 1..self.tries {
            pauses += pause;
            pause = (pause * 2).min(self.longest_pause);
        }
        waited * self.tries + pauses
    }
}

/// Background writes: 8 tries, pauses of 1, 2, 4, 8, 16, 32 and 60 s between them. With the
/// default 10 s wait for the lock each, a write is tried for about 3 minutes and 20 s (at most
/// twice that from its request when it waited for its turn behind others): a backup or an audit holding the lock for half a
/// minute delays it, and only a lock held for minutes (something stuck) makes it fail, then
/// with the error in the log. At most 256 wait at once per store.
pub const BACKGROUND_RETRY: Retry =
    Retry { tries: 8, first_pause: Duration::from_secs(1), longest_pause: Duration::from_secs(60), most_waiting: 256 };

/// How many background tries wait for another process's lock at once, in this process: one,
/// since the worker has one connection per store and a second try would only wait for the
/// first on that connection's mutex, holding a thread. The others wait their turn without a
/// thread; once the lock is free they go through one after the other in milliseconds.
const BACKGROUND_TRIES_AT_ONCE: usize = 1;

/// The turns of [`BACKGROUND_TRIES_AT_ONCE`].
static BACKGROUND_TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(BACKGROUND_TRIES_AT_ONCE);

/// Counts a background write as waiting for the lock while it lives.
struct Waiting(Hosting);

impl Waiting {
    fn enter(h: &Hosting, most: usize) -> Option<Waiting> {
        use std::sync::atomic::Ordering::SeqCst;
        let counted = h.background_waiting().fetch_update(SeqCst, SeqCst, |n| (n < most).then_some(n + 1));
        counted.ok().map(|_| Waiting(h.clone()))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.background_waiting().fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The most a caller of [`Hosting::now_or_answer`] waits beyond the call's own wait for the lock
/// (half that wait when shorter): room for the transaction that got the lock at the last moment
/// to commit, and for the answer to reach the caller, on a loaded machine.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// The most an answer of [`Hosting::now_or_answer`] is sent before its caller stops waiting
/// ([`Hosting::answer_sent_by`]): room for the message to reach the caller first.
const SEND_MARGIN: Duration = Duration::from_millis(200);

/// How many calls of [`Hosting::now_or_answer`] may be on the worker at once, in this process.
/// Each holds a descriptor pair and, while it waits for the worker's connection, a thread of the
/// worker's blocking pool; past this, a new one is refused at once with a store error (a lock
/// stuck while thousands register must not exhaust the server's open files or the pool, which
/// DNS checks and housekeeping need too).
const MOST_ANSWERING: usize = 256;

/// The calls of [`Hosting::now_or_answer`] on the worker now (see [`MOST_ANSWERING`]).
static ANSWERING: AtomicUsize = AtomicUsize::new(0);

/// Counts a call of [`Hosting::now_or_answer`] as on the worker while it lives.
struct Answering;

impl Answering {
    fn enter() -> Option<Answering> {
        let counted =
            ANSWERING.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < MOST_ANSWERING).then_some(n + 1));
        counted.ok().map(|_| Answering)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        ANSWERING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A store busy error with `text` (code `store`, [`Error::is_busy`]).
fn busy(text: String) -> Error {
    Error::Store(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), Some(text)))
}

/// The longest wait for another process's lock an admin may set for the worker's store calls
/// (`worker_busy_timeout`): an hour. A longer one would hold a call, and what waits for it,
/// past anything a person would wait for.
const LONGEST_LOCK_TIMEOUT: Duration = Duration::from_secs(3600);

/// `seconds`, an admin's setting of how long the worker's store calls wait for another
/// process's write lock (Prosody's `xmpp_hosting_store_lock_timeout`), as a
/// [`crate::OpenOptions::worker_busy_timeout`]; refused, with why, when it is not a number of
/// seconds from 0.1 to 3600. (`setting` names it in the error.)
pub fn lock_timeout_setting(setting: &str, seconds: f64) -> Result<Duration> {
    if !seconds.is_finite() || !(0.1..=LONGEST_LOCK_TIMEOUT.as_secs_f64()).contains(&seconds) {
        return Err(Error::InvalidArgument(format!(
            "{setting} is {seconds}: it is how many seconds a store write made off the server's event loop waits for \
             another process's lock (the command line, the other server, a backup), from 0.1 to 3600 (default 10)"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `seconds`, how long store calls on the server's own thread wait for a lock (Prosody's
/// `xmpp_hosting_busy_timeout`), as a [`crate::OpenOptions::busy_timeout`]; refused when it is not
/// 0 to 60 seconds: every session of the server waits with such a call.
pub fn busy_timeout_setting(seconds: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| *d <= Duration::from_secs(60))
        .ok_or_else(|| Error::InvalidArgument(format!("busy_timeout {seconds} is not 0 to 60 seconds")))
}

/// The outcome of [`Hosting::now_or_later`]: the result, or the same call still running on the
/// worker because another process held the store's write lock.
pub enum NowOrLater<T> {
    Now(T),
    Later(Pending<Result<T>>),
}

/// The outcome of [`Hosting::now_or_answer`]: the result, or the call handed to the worker with
/// the times its caller must keep to.
pub enum NowOrAnswer<T> {
    Now(T),
    Later(Answer<T>),
}

/// A call of [`Hosting::now_or_answer`] on the worker, and the deadlines the worker keeps to: a
/// binding that sends the answer on (ejabberd's NIF, by message) sends it only until
/// [`Answer::sent_by`], the same instant up to which a call that has committed runs on, so the
/// two never disagree.
pub struct Answer<T> {
    /// The call's result, once the worker has made it (or given up).
    pub pending: Pending<Result<T>>,
    /// How long its caller waits for the answer ([`Hosting::answer_within`]).
    pub within: Duration,
    /// The last moment to send the answer: a margin before the caller stops waiting, never
    /// before the call's own wait for the lock has passed.
    pub sent_by: Instant,
}

impl<T> Answer<T> {
    /// What the caller is told when no answer came [`Answer::within`] (a stalled machine): a busy
    /// store (a panel answers it 503, try again), and the call may have been made, so check.
    pub fn unanswered(&self) -> Error {
        busy(format!(
            "the store's write lock was held elsewhere (the command line, the other server, a backup, a long sweep) \
             and no answer came within {}: check whether it was done, and try it again once the lock is free",
            seconds(self.within)
        ))
    }
}

/// `d` as an admin reads it, never longer than it is: "3 s", "2.5 s", "300 ms".
fn seconds(d: Duration) -> String {
    match (d.as_secs(), d.subsec_millis()) {
        (0, ms) => format!("{ms} ms"),
        (s, 0) => format!("{s} s"),
        (s, ms) => format!("{s}.{} s", ms / 100),
    }
}

/// Why a call tried at once went to the worker ([`Hosting::now_or_in_background_saying_why`]).
/// The server logs the two differently: only the first is something an admin may have to look
/// at (what holds the lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaterBecause {
    /// Another connection held the store's write lock: another process (the command line, the
    /// other server, a backup, a long sweep), or the worker's own connection.
    LockHeldElsewhere,
    /// The handle's connection was in use by another call of this process, on another thread
    /// (on ejabberd every scheduler shares one handle): nothing held by anyone else, and the
    /// worker usually makes the call at once.
    ConnectionInUse,
}

/// The outcome of [`Hosting::now_or_in_background_saying_why`]: [`NowOrLater`] with why the call
/// went to the worker.
pub enum NowOrLaterBecause<T> {
    Now(T),
    Later(Pending<Result<T>>, LaterBecause),
}

impl<T> From<NowOrLaterBecause<T>> for NowOrLater<T> {
    fn from(outcome: NowOrLaterBecause<T>) -> Self {
        match outcome {
            NowOrLaterBecause::Now(value) => NowOrLater::Now(value),
            NowOrLaterBecause::Later(pending, _) => NowOrLater::Later(pending),
        }
    }
}

impl Hosting {
    /// Runs `call` on the worker with this store's own worker handle; the result arrives through
    /// the returned [`Pending`] (descriptor, callback or wait). A panic in `call` becomes an
    /// internal error for the caller, never a silent loss.
    pub fn later<T, F>(&self, call: F) -> Result<Pending<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&Hosting) -> Result<T> + Send + 'static,
    {
        let worker = self.worker_handle()?;
        let waited = self.reopen_options().map(|(_, o)| o.worker_busy_timeout);
        Pending::spawn(async move {
            tokio::task::spawn_blocking(move || call(&worker).map_err(|e| gave_up(e, waited, None)))
                .await
                .unwrap_or_else(|e| Err(Error::Internal(format!("a store call on the worker failed: {e}"))))
        })
        .map_err(|e| Error::Internal(format!("cannot start work on the worker: {e}")))
    }

    /// Runs `call` on this thread, where no store call waits for another connection's lock: when
    /// one is held (another process writing: the CLI, the other server, a backup), the call gives
    /// up at once and runs again on the worker, which waits `worker_busy_timeout` for it. The fast
    /// path costs what the call costs; a held lock costs the caller nothing but a descriptor to
    /// watch. `call` must be safe to start again after failing: if one of its transactions
    /// had committed before it met the lock, its error is returned instead (nothing is done
    /// twice). A result is [`NowOrLater::Now`]; any other error is returned as it is.
    pub fn now_or_later<T, F>(&self, call: F) -> Result<NowOrLater<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Hosting) -> Result<T> + Clone + Send + 'static,
    {
        match self.attempt(call.clone()) {
            (Err(e), false, _) if e.is_busy() => self.later(call).map(NowOrLater::Later),
            (other, _, _) => other.map(NowOrLater::Now),
        }
    }

    /// [`Hosting::now_or_later`] for a caller that waits for the answer with a deadline,
    /// [`Hosting::answer_within`]`(wait)` from now (ejabberd: the NIF answers at once, and the
    /// calling process waits in `receive`). On the worker the call waits for another process's
    /// lock at most `wait` from now, and is not started at all once that has passed (it answers
    /// the busy error saying "not made"): whatever is queued behind a held lock, no call starts
    /// after its caller stopped waiting. A call that has committed part of its change goes on
    /// until its answer can no longer be sent ([`Answer::sent_by`]); only on a stalled
    /// machine does it then end with its answer unsent, and its caller, told the store did not
    /// answer in time, is asked to check what was made.
    /// `wait` is [`Hosting::worker_wait`] for a caller that may wait as long as the worker does,
    /// [`Hosting::caller_wait`] for one that serves others meanwhile. At most [`MOST_ANSWERING`]
    /// such calls are on the worker at once.
    pub fn now_or_answer<T, F>(&self, call: F, wait: Duration) -> Result<NowOrAnswer<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Hosting) -> Result<T> + Clone + Send + 'static,
    {
        match self.attempt(call.clone()) {
            (Err(e), false, _) if e.is_busy() => self.answer_later(call, wait).map(NowOrAnswer::Later),
            (other, _, _) => other.map(NowOrAnswer::Now),
        }
    }

    /// How long a caller of [`Hosting::now_or_answer`] waits for an answer handed to the worker
    /// that may wait `wait` for the lock: that and a grace ([`ANSWER_GRACE`], or half of `wait`
    /// when shorter).
    pub fn answer_within(wait: Duration) -> Duration {
        wait + (wait / 2).min(ANSWER_GRACE)
    }

    /// The last moment to send the answer of a call of [`Hosting::now_or_answer`] made at
    /// `requested` with `wait`: its caller stops waiting [`Hosting::answer_within`] after (a
    /// little later, in fact: its timer starts once the call has returned), and an answer
    /// arriving then is nobody's (ejabberd: a stray message in the process's mailbox). Less a
    /// margin ([`SEND_MARGIN`], at most half the grace) so that one sent just before still
    /// arrives in time; never before `wait` has passed, so every answer the worker gives within
    /// its wait is sent. Only a call that committed and then ran on (a stalled machine) answers
    /// later.
    pub(crate) fn answer_sent_by(requested: Instant, wait: Duration) -> Instant {
        let within = Self::answer_within(wait);
        let margin = SEND_MARGIN.min((within - wait) / 2);
        requested + (within - margin).max(wait)
    }

    /// How long the worker's store calls wait for another process's lock (`worker_busy_timeout`).
    pub fn worker_wait(&self) -> Duration {
        self.reopen_options().map_or(crate::OpenOptions::default().worker_busy_timeout, |(_, o)| o.worker_busy_timeout)
    }

    /// How long a store call on the caller's own thread would wait for it (`busy_timeout`): for a
    /// caller that serves others while it waits (ejabberd's mod_http_upload process decides
    /// every slot of its host and serves its downloads), which must wait no longer than before.
    pub fn caller_wait(&self) -> Duration {
        self.reopen_options().map_or(crate::OpenOptions::default().busy_timeout, |(_, o)| o.busy_timeout)
    }

    /// The worker's part of [`Hosting::now_or_answer`].
    fn answer_later<T, F>(&self, call: F, wait: Duration) -> Result<Answer<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Hosting) -> Result<T> + Send + 'static,
    {
        let Some(answering) = Answering::enter() else {
            return Err(busy(format!(
                "the store's write lock is held elsewhere and {MOST_ANSWERING} calls already wait for it, so this \
                 one is not made: check what holds the lock (the command line, the other server, a backup, a long \
                 sweep) and try again"
            )));
        };
        let worker = self.worker_handle()?;
        let waited = wait.min(self.worker_wait());
        let requested = Instant::now();
        let (until, answer_by) = (requested + waited, Hosting::answer_sent_by(requested, wait));
        let pending = Pending::spawn(async move {
            let _answering = answering;
            tokio::task::spawn_blocking(move || {
                let _tracked = AttemptScope::until(until, answer_by);
                call(&worker).map_err(|e| gave_up(e, Some(waited), None))
            })
            .await
            .unwrap_or_else(|e| Err(Error::Internal(format!("a store call on the worker failed: {e}"))))
        })
        .map_err(|e| Error::Internal(format!("cannot start work on the worker: {e}")))?;
        Ok(Answer { pending, within: Hosting::answer_within(wait), sent_by: answer_by })
    }

    /// `call` on this thread without waiting for any lock, whether one of its transactions
    /// committed before it ended (then it must not be started again), and why it met a busy
    /// store, if it did.
    fn attempt<T>(&self, call: impl FnOnce(&Hosting) -> Result<T>) -> (Result<T>, bool, LaterBecause) {
        let attempt = AttemptScope::start(false);
        let outcome = call(self);
        let because = if attempt.met_connection_in_use() {
            LaterBecause::ConnectionInUse
        } else {
            LaterBecause::LockHeldElsewhere
        };
        (outcome, attempt.committed(), because)
    }

    /// [`Hosting::now_or_later`] for a write nobody waits for (a removed account forgotten, a
    /// login counted, an upload directory or an archive registered): when the worker's wait for
    /// another process's lock runs out, the worker tries again after a pause instead of giving
    /// up ([`BACKGROUND_RETRY`]); the [`Pending`] has the outcome of the try that got the lock,
    /// or, after the last try, the error that says how long it was tried. Nothing waits on the
    /// caller's thread, and the pauses hold no thread of the worker.
    ///
    /// Every try is made as of the moment the write was asked for (the worker's handle sees the
    /// clock stopped then): a login is counted at its time, an account removed at its removal,
    /// a registration is dated when the server made it, however late the lock came free; a
    /// write that a later one has superseded in the store is then not made, where the rule
    /// compares times (see [`Hosting::register_archive_store`], [`Hosting::account_removed`]).
    /// `call` must be safe to make again after a try that met the lock: a try that committed
    /// part of its change is not started again, and its error is the outcome.
    pub fn now_or_in_background<T, F>(&self, call: F) -> Result<NowOrLater<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Hosting) -> Result<T> + Clone + Send + 'static,
    {
        self.now_or_in_background_saying_why(call).map(NowOrLater::from)
    }

    /// [`Hosting::now_or_in_background`], saying why a call went to the worker: another
    /// connection's write lock, or the handle's connection in use by another thread of this
    /// process. The server then logs the first as something to look at and the second not at
    /// all worth an admin's attention (on ejabberd any concurrent call makes it).
    pub fn now_or_in_background_saying_why<T, F>(&self, call: F) -> Result<NowOrLaterBecause<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Hosting) -> Result<T> + Clone + Send + 'static,
    {
        match self.attempt(call.clone()) {
            (Err(e), false, because) if e.is_busy() => {
                self.in_background(call, BACKGROUND_RETRY).map(|p| NowOrLaterBecause::Later(p, because))
            }
            (other, _, _) => other.map(NowOrLaterBecause::Now),
        }
    }

    /// The worker's tries of a background write (see [`Hosting::now_or_in_background`]).
    pub(crate) fn in_background<T, F>(&self, call: F, retry: Retry) -> Result<Pending<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&Hosting) -> Result<T> + Clone + Send + 'static,
    {
        let Some(waiting) = Waiting::enter(self, retry.most_waiting) else {
            return Err(Error::Store(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some(format!(
                    "the store's write lock is held elsewhere and {} writes already wait for it, so this one \
                     is not made: check what holds the lock (the command line, the other server, a backup, a \
                     long sweep)",
                    retry.most_waiting
                )),
            )));
        };
        // The clock stopped at the request: every try is made as of then.
        let worker = self.worker_handle()?.with_clock(ManualClock::new(self.now()));
        let waited = self.reopen_options().map(|(_, o)| o.worker_busy_timeout);
        let budget = waited.map(|w| retry.budget(w));
        Pending::spawn(async move {
            let _waiting = waiting;
            let started = Instant::now();
            let mut pause = retry.first_pause;
            let mut tries = 0;
            loop {
                tries += 1;
                let (call, worker) = (call.clone(), worker.clone());
                let turn = BACKGROUND_TURNS.acquire().await;
                let outcome = tokio::task::spawn_blocking(move || {
                    let tracked = AttemptScope::start(true);
                    let outcome = call(&worker);
                    (outcome, tracked.committed())
                })
                .await;
                drop(turn);
                let (outcome, partly_done) = match outcome {
                    Ok(done) => done,
                    Err(e) => return Err(Error::Internal(format!("a store call on the worker failed: {e}"))),
                };
                match outcome {
                    Err(e)
                        if e.is_busy()
                            && !partly_done
                            && tries < retry.tries
                            && budget.is_none_or(|b| started.elapsed() + pause < b * 2) =>
                    {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(retry.longest_pause);
                    }
                    Err(e) if e.is_busy() && !partly_done => {
                        return Err(gave_up(e, waited, Some((tries, started.elapsed()))));
                    }
                    other => return other.map_err(|e| gave_up(e, waited, None)),
                }
            }
        })
        .map_err(|e| Error::Internal(format!("cannot start work on the worker: {e}")))
    }

    /// The handle worker calls use: the same file on a connection of its own, seen through the
    /// same clock. In memory there is only the one connection. Work the core starts on the worker
    /// by itself (DNS checks, ACME, purges) uses it too, so that its wait for another process's
    /// lock never holds the connection the server's own thread calls through.
    pub(crate) fn worker_handle(&self) -> Result<Hosting> {
        let Some((path, options)) = self.reopen_options() else { return Ok(self.clone()) };
        let opened = self.worker_slot().get_or_try_init(|| {
            let mut worker_options = options.clone();
            worker_options.busy_timeout = options.worker_busy_timeout;
            Hosting::open_with(path, &worker_options)
        })?;
        Ok(opened.with_clock_of(self))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rusqlite::Connection;

    use super::{lock_timeout_setting, Answer, LaterBecause, NowOrAnswer, NowOrLater, NowOrLaterBecause, Retry};
    use crate::test_store::TestStore;
    use crate::{Hosting, ManualClock, OpenOptions};

    #[test]
    fn a_worker_call_that_waited_its_whole_timeout_says_so_and_changed_nothing() {
        let store = TestStore::new("off-loop-gave-up");
        let options =
            OpenOptions { busy_timeout: Duration::from_millis(10), worker_busy_timeout: Duration::from_millis(200) };
        let h = Hosting::open_with(&store.path, &options).unwrap();
        let other = lock_holder(&store.path);
        let err = h.later(|w| w.add_domain("late.example")).unwrap().wait().unwrap_err();
        other.execute_batch("COMMIT").unwrap();
        assert!(err.is_busy() && err.code() == "store", "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("held elsewhere") && text.contains("for over 0.2 s") && text.contains("not made"),
            "{text}"
        );
        assert!(h.domain("late.example").unwrap().is_none(), "nothing half-made");
    }

    #[test]
    fn a_call_waits_on_the_worker_for_a_lock_the_callers_own_handle_would_give_up_on() {
        let store = TestStore::new("off-loop-lock");
        let path = store.path.clone();
        let h = store.open_as_server();

        // Another process's write lock, held for a while.
        let other = lock_holder(&path);

        // On the caller's thread the short timeout gives up at once ...
        let err = h.add_domain("blocked.example").unwrap_err();
        assert_eq!(err.code(), "store", "{err}");

        // ... while the same write handed to the worker waits the lock out.
        let pending = h.later(|w| w.add_domain("waits.example")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(pending.try_take().is_none(), "the worker call finished while the lock was held");
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(pending.wait().unwrap().name.as_str(), "waits.example");
        assert!(h.domain("waits.example").is_ok());
    }

    /// Another connection's write lock, held until `COMMIT`.
    fn lock_holder(path: &std::path::Path) -> Connection {
        let other = Connection::open(path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        other
    }

    #[test]
    fn an_attempt_is_done_at_once_when_nobody_holds_the_lock() {
        let store = TestStore::new("now-or-later-free");
        let h = Hosting::open(&store.path).unwrap();
        match h.now_or_later(|h| h.add_domain("now.example")).unwrap() {
            NowOrLater::Now(d) => assert_eq!(d.name.as_str(), "now.example"),
            NowOrLater::Later(_) => panic!("handed to the worker although nobody held the lock"),
        }
        // Errors other than a held lock are answers too, not reasons to try again.
        match h.now_or_later(|h| h.add_domain("now.example")) {
            Err(e) => assert_eq!(e.code(), "already-exists"),
            Ok(_) => panic!("a refusal was not given at once"),
        }
    }

    #[test]
    fn a_held_lock_hands_the_call_to_the_worker_without_waiting_for_it() {
        let store = TestStore::new("now-or-later-held");
        // A long busy timeout on the caller's handle: the attempt must not use it. The lock is
        // released a moment later, so a caller that waited would get it and decide "now".
        let options =
            OpenOptions { busy_timeout: Duration::from_secs(30), worker_busy_timeout: Duration::from_secs(30) };
        let h = Hosting::open_with(&store.path, &options).unwrap();
        let other = lock_holder(&store.path);
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        let NowOrLater::Later(pending) = h.now_or_later(|h| h.add_domain("later.example")).unwrap() else {
            panic!("the caller's thread waited for another connection's write lock");
        };
        // The caller's own handle is itself again once the attempt is over: it waits.
        assert!(super::waits_for_locks());
        release.join().unwrap();
        assert_eq!(pending.wait().unwrap().name.as_str(), "later.example");
    }

    #[test]
    fn an_attempt_that_committed_something_is_not_started_again() {
        let store = TestStore::new("now-or-later-partly");
        let h = Hosting::open(&store.path).unwrap();
        let path = store.path.clone();
        let outcome = h.now_or_later(move |h| {
            h.add_domain("first.example")?;
            let other = lock_holder(&path);
            let second = h.add_domain("second.example");
            other.execute_batch("COMMIT").unwrap();
            second
        });
        match outcome {
            Err(e) => assert!(e.is_busy(), "{e}"),
            Ok(_) => panic!("a call that had written something was run again"),
        }
        assert!(h.domain("second.example").unwrap().is_none());
    }

    /// Polls `done` until it holds, for at most 30 s.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what} never happened");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A quick schedule for the tests: the worker waits 50 ms for the lock, pauses 10-40 ms.
    fn quick(tries: u32) -> (OpenOptions, Retry) {
        let options =
            OpenOptions { busy_timeout: Duration::from_millis(10), worker_busy_timeout: Duration::from_millis(50) };
        let retry = Retry {
            tries,
            first_pause: Duration::from_millis(10),
            longest_pause: Duration::from_millis(40),
            most_waiting: 64,
        };
        (options, retry)
    }

    #[test]
    fn a_background_write_is_made_once_a_lock_held_past_the_workers_wait_is_free() {
        let store = TestStore::new("background-retried");
        let (options, retry) = quick(1000);
        let h = Hosting::open_with(&store.path, &options).unwrap();
        let tries = Arc::new(AtomicU32::new(0));
        let counted = tries.clone();
        let other = lock_holder(&store.path);
        let pending = h
            .in_background(
                move |w| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    w.add_domain("patient.example")
                },
                retry,
            )
            .unwrap();
        // Three tries have waited out the worker's wait for the lock; the write is still to come.
        eventually("a third try", || tries.load(Ordering::SeqCst) >= 3);
        assert!(pending.try_take().is_none(), "gave up while the lock was held");
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(pending.wait().unwrap().name.as_str(), "patient.example");
        assert!(h.domain("patient.example").unwrap().is_some());
    }

    #[test]
    fn a_background_write_gives_up_after_its_last_try_and_says_how_long_it_tried() {
        let store = TestStore::new("background-gave-up");
        let (options, retry) = quick(3);
        let h = Hosting::open_with(&store.path, &options).unwrap();
        let other = lock_holder(&store.path);
        let err = h.in_background(|w| w.add_domain("never.example"), retry).unwrap().wait().unwrap_err();
        other.execute_batch("COMMIT").unwrap();
        assert!(err.is_busy() && err.code() == "store", "{err:?}");
        let text = err.to_string();
        assert!(text.contains("held elsewhere") && text.contains("at each of 3 tries over"), "{text}");
        assert!(h.domain("never.example").unwrap().is_none());
    }

    #[test]
    fn a_background_try_that_committed_part_of_its_change_is_not_made_again() {
        let store = TestStore::new("background-partly");
        let (options, retry) = quick(1000);
        let h = Hosting::open_with(&store.path, &options).unwrap();
        let path = store.path.clone();
        let tries = Arc::new(AtomicU32::new(0));
        let counted = tries.clone();
        let err = h
            .in_background(
                move |w| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    w.add_domain("first.example")?;
                    let other = lock_holder(&path);
                    let second = w.add_domain("second.example");
                    other.execute_batch("COMMIT").unwrap();
                    second
                },
                retry,
            )
            .unwrap()
            .wait()
            .unwrap_err();
        assert!(err.is_busy(), "{err}");
        assert_eq!(tries.load(Ordering::SeqCst), 1, "a call that had written something was made again");
        assert!(h.domain("second.example").unwrap().is_none());
    }

    #[test]
    fn a_background_write_is_made_as_of_when_it_was_asked_for() {
        let store = TestStore::new("background-as-of");
        let (options, retry) = quick(1000);
        let clock = ManualClock::new(1_000_000);
        let h = Hosting::open_with(&store.path, &options).unwrap().with_clock(clock.clone());
        let other = lock_holder(&store.path);
        let tries = Arc::new(AtomicU32::new(0));
        let counted = tries.clone();
        let pending = h
            .in_background(
                move |w| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    w.add_domain("dated.example").map(|_| w.now())
                },
                retry,
            )
            .unwrap();
        eventually("a second try", || tries.load(Ordering::SeqCst) >= 2);
        clock.advance(3600);
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(pending.wait().unwrap(), 1_000_000, "made as of the time the lock came free");
    }

    #[test]
    fn a_background_write_is_made_at_once_when_nobody_holds_the_lock_and_else_by_the_worker() {
        let store = TestStore::new("background-now");
        let h = Hosting::open(&store.path).unwrap();
        let NowOrLater::Now(d) = h.now_or_in_background(|w| w.add_domain("now.example")).unwrap() else {
            panic!("handed to the worker although nobody held the lock");
        };
        assert_eq!(d.name.as_str(), "now.example");
        match h.now_or_in_background(|w| w.add_domain("now.example")) {
            Err(e) => assert_eq!(e.code(), "already-exists"),
            Ok(_) => panic!("a refusal was not given at once"),
        }
        let other = lock_holder(&store.path);
        let NowOrLaterBecause::Later(pending, because) =
            h.now_or_in_background_saying_why(|w| w.add_domain("later.example")).unwrap()
        else {
            panic!("the caller's thread waited for another connection's write lock");
        };
        assert_eq!(because, LaterBecause::LockHeldElsewhere);
        assert!(super::waits_for_locks());
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(pending.wait().unwrap().name.as_str(), "later.example");
    }

    #[test]
    fn background_writes_waiting_for_a_held_lock_are_capped_and_the_next_refused_at_once() {
        let store = TestStore::new("background-capped");
        let (options, retry) = quick(1000);
        let retry = Retry { most_waiting: 2, ..retry };
        let h = Hosting::open_with(&store.path, &options).unwrap();
        let other = lock_holder(&store.path);
        let add = |name: &'static str| h.in_background(move |w| w.add_domain(name), retry);
        let (first, second) = (add("one.example").unwrap(), add("two.example").unwrap());
        let Err(refused) = add("three.example") else { panic!("a third write was queued past the cap") };
        assert!(refused.is_busy() && refused.to_string().contains("2 writes already wait for it"), "{refused}");
        other.execute_batch("COMMIT").unwrap();
        first.wait().unwrap();
        second.wait().unwrap();
        // Finished writes leave the count: the next one waits again.
        let again = add("three.example").unwrap();
        assert_eq!(again.wait().unwrap().name.as_str(), "three.example");
    }

    #[test]
    fn a_background_writes_budget_is_every_wait_and_pause_from_its_request() {
        let r = Retry {
            tries: 3,
            first_pause: Duration::from_secs(1),
            longest_pause: Duration::from_secs(60),
            most_waiting: 1,
        };
        assert_eq!(r.budget(Duration::from_secs(10)), Duration::from_secs(30 + 1 + 2));
        assert_eq!(
            super::BACKGROUND_RETRY.budget(Duration::from_secs(10)),
            Duration::from_secs(80 + 1 + 2 + 4 + 8 + 16 + 32 + 60)
        );
    }

    #[test]
    fn background_writes_behind_a_held_lock_wait_on_a_few_threads_at_most() {
        let store = TestStore::new("background-bounded");
        let (options, retry) = quick(1000);
        let h = Hosting::open_with(&store.path, &options).unwrap();
        let other = lock_holder(&store.path);
        let (trying, most, tries) =
            (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let pending: Vec<_> = (0..24)
            .map(|n| {
                let (trying, most, tries) = (trying.clone(), most.clone(), tries.clone());
                h.in_background(
                    move |w| {
                        most.fetch_max(trying.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        tries.fetch_add(1, Ordering::SeqCst);
                        let made = w.add_domain(&format!("d{n}.example"));
                        trying.fetch_sub(1, Ordering::SeqCst);
                        made
                    },
                    retry,
                )
                .unwrap()
            })
            .collect();
        eventually("48 tries", || tries.load(Ordering::SeqCst) >= 48);
        other.execute_batch("COMMIT").unwrap();
        for p in pending {
            p.wait().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= super::BACKGROUND_TRIES_AT_ONCE as u32, "{most:?} at once");
        assert_eq!(h.domains().unwrap().len(), 24);
    }

    #[test]
    fn a_late_background_write_does_not_undo_what_came_after_it() {
        use crate::invites::{Creator, InviteKind, NewInvite};
        use crate::retention::Kind;
        let h = Hosting::open_in_memory().unwrap();
        let at = |t| h.clone().with_clock(ManualClock::new(t));
        at(100).add_domain("example.org").unwrap();
        at(100).set_domain_setting("example.org", "registration.users_may_invite", "true").unwrap();
        // A module reloaded with another database registers it (at 300); the registration it
        // made before (at 200) is still being tried behind a lock and comes in last.
        let register = |t, file: &str| {
            at(t).register_archive_store(
                "example.org",
                Kind::Archive,
                "example.org",
                "prosody_sql",
                Some(file),
                "archive",
            )
        };
        register(300, "/var/lib/prosody/new.sqlite").unwrap();
        register(200, "/var/lib/prosody/old.sqlite").unwrap();
        let stores = h.archive_stores("example.org", Kind::Archive).unwrap();
        assert_eq!(stores[0].location.as_deref(), Some("/var/lib/prosody/new.sqlite"));
        // alice was removed at 200; a new alice made a contact invite at 300; the removal, made
        // late as of 200, revokes only what the old alice left.
        let mut theirs = NewInvite::account("example.org");
        (theirs.kind, theirs.created_by) = (InviteKind::Roster, Creator::User("alice@example.org".into()));
        let old = at(150).create_invite(&theirs).unwrap();
        let new = at(300).create_invite(&theirs).unwrap();
        assert_eq!(at(200).account_removed("example.org", "alice").unwrap().invites_revoked, 1);
        assert!(at(310).check_invite("example.org", &old.token).unwrap().is_none());
        assert!(at(310).check_invite("example.org", &new.token).unwrap().is_some());
        // The new alice's upload exception, set at 300, survives the old alice's late removal;
        // the old alice's own exception, set at 150, goes with her.
        let limits = crate::quotas::UserUploadLimits { storage: Some(5_000_000), ..Default::default() };
        at(150).set_user_upload_limits("example.org", "bob", Some(&limits)).unwrap();
        at(300).set_user_upload_limits("example.org", "alice", Some(&limits)).unwrap();
        assert!(!at(200).account_removed("example.org", "alice").unwrap().upload_limits_cleared);
        assert!(h.user_upload_limits("example.org", "alice").unwrap().is_some());
        assert!(at(200).account_removed("example.org", "bob").unwrap().upload_limits_cleared);
        assert!(h.user_upload_limits("example.org", "bob").unwrap().is_none());
    }

    #[test]
    fn a_late_request_to_host_a_domain_does_not_undo_a_removal_made_after_it() {
        let h = Hosting::open_in_memory().unwrap();
        let at = |t| h.clone().with_clock(ManualClock::new(t));
        // The operator added the domain at 200 and removed it at 300; a server's request to host
        // it, asked at 150 and made only now, leaves it removed and says why.
        at(200).add_domain("removed.example").unwrap();
        at(300).remove_domain("removed.example").unwrap();
        let late = at(150).ensure_hosted("removed.example").unwrap();
        assert!(!late.added && late.domain.is_none(), "{late:?}");
        let log = late.log.unwrap();
        assert!(log.contains("removed.example was not added") && log.contains("removed it at"), "{log}");
        assert!(h.domain("removed.example").unwrap().is_none());
        // A request asked after the removal (the server started again with the host) adds it.
        let later = at(400).ensure_hosted("removed.example").unwrap();
        assert!(later.added && later.domain.is_some(), "{later:?}");
        // A removal in the same second as the request counts as after it (the operator wins:
        // the removal's own transaction is what most often makes the server's request wait).
        at(500).remove_domain("removed.example").unwrap();
        let tie = at(500).ensure_hosted("removed.example").unwrap();
        assert!(!tie.added && tie.domain.is_none(), "{tie:?}");
        assert!(at(501).ensure_hosted("removed.example").unwrap().added);
    }

    #[test]
    fn a_background_request_to_host_a_domain_retried_past_a_removal_leaves_it_removed() {
        use std::sync::{mpsc, Mutex};
        let store = TestStore::new("background-ensure-hosted");
        let (options, retry) = quick(1000);
        let clock = ManualClock::new(1_000);
        let h = Hosting::open_with(&store.path, &options).unwrap().with_clock(clock.clone());
        let other = lock_holder(&store.path);
        // The second try waits for the test's word before it looks at the store.
        let (go, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let tries = Arc::new(AtomicU32::new(0));
        let counted = tries.clone();
        let pending = h
            .in_background(
                move |w| {
                    if counted.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
                        gate.lock().unwrap().recv().unwrap();
                    }
                    w.ensure_hosted("host.example")
                },
                retry,
            )
            .unwrap();
        eventually("a second try", || tries.load(Ordering::SeqCst) >= 2);
        other.execute_batch("COMMIT").unwrap();
        // Meanwhile, later than the server's request: the operator adds the domain and removes it.
        clock.advance(5);
        h.add_domain("host.example").unwrap();
        h.remove_domain("host.example").unwrap();
        go.send(()).unwrap();
        let done = pending.wait().unwrap();
        assert!(!done.added && done.domain.is_none(), "{done:?}");
        assert!(h.domain("host.example").unwrap().is_none(), "the late request undid the removal");
    }

    #[test]
    fn a_slot_watch_behind_a_lock_held_past_the_workers_wait_is_made_once_it_is_free() {
        use crate::quotas::UploadDecision;
        let store = TestStore::new("background-slot-watch");
        let (options, _) = quick(1);
        let h = Hosting::open_with(&store.path, &options).unwrap();
        h.add_domain("example.org").unwrap();
        let UploadDecision::Granted(grant) = h.authorize_upload("example.org", "alice", 1000).unwrap() else {
            panic!("not granted")
        };
        let watched = |h: &Hosting| h.store().read(|c| crate::store::quotas::slot(c, "/srv/up/a/file")).unwrap();
        let other = lock_holder(&store.path);
        // The write of the queued watches a module unload makes (the server runs on).
        h.queue_upload_slot_watch(grant.id, "/srv/up/a/file".into(), 300).unwrap();
        let written = h.write_upload_slot_watches_now_or_in_background().unwrap();
        assert!(matches!(written, NowOrLater::Later(_)), "written although another connection held the lock");
        // Handed to the worker's background tries, not to one wait that would give up after 50 ms
        // and lose the watch (the slot's bytes would stay reserved, its file charged to no one).
        eventually("a background write waiting", || h.background_waiting().load(Ordering::SeqCst) == 1);
        std::thread::sleep(Duration::from_millis(300));
        assert!(watched(&h).is_none());
        other.execute_batch("COMMIT").unwrap();
        eventually("the watch made", || watched(&h).is_some());
        assert_eq!(watched(&h).and_then(|s| s.reservation), Some(grant.id));
        eventually("no background write waiting", || h.background_waiting().load(Ordering::SeqCst) == 0);
    }

    #[test]
    fn an_attempt_does_not_wait_for_the_handles_connection_in_use_by_another_thread() {
        use std::sync::mpsc;
        // ejabberd's schedulers share one handle; a call on one may hold its connection while it
        // waits out another process's lock. A write nobody waits for, tried meanwhile on another
        // scheduler, must go to the worker instead of waiting behind it.
        let store = TestStore::new("attempt-connection-in-use");
        let h = Hosting::open(&store.path).unwrap();
        let (inside, entered) = mpsc::channel::<()>();
        let (go, gate) = mpsc::channel::<()>();
        let holder = {
            let h = h.clone();
            std::thread::spawn(move || {
                h.store()
                    .read(|_| {
                        inside.send(()).unwrap();
                        gate.recv().unwrap();
                        Ok(())
                    })
                    .unwrap()
            })
        };
        entered.recv().unwrap();
        let attempt = {
            let h = h.clone();
            std::thread::spawn(move || {
                match h.now_or_in_background_saying_why(|w| w.add_domain("busy.example")).unwrap() {
                    NowOrLaterBecause::Later(pending, because) => (because, pending.wait().map(|d| d.name.to_string())),
                    NowOrLaterBecause::Now(_) => panic!("made on a connection another thread held"),
                }
            })
        };
        eventually("the attempt handed to the worker", || attempt.is_finished());
        go.send(()).unwrap();
        holder.join().unwrap();
        let (because, made) = attempt.join().unwrap();
        // Said as what it was: no other process held anything (the server logs it differently).
        assert_eq!(because, LaterBecause::ConnectionInUse);
        assert_eq!(made.unwrap(), "busy.example");
    }

    #[test]
    fn the_workers_wait_for_a_lock_is_refused_unless_it_is_a_sane_number_of_seconds() {
        for nonsense in [0.0, 0.05, -1.0, 3601.0, f64::NAN, f64::INFINITY] {
            let e = lock_timeout_setting("xmpp_hosting_store_lock_timeout", nonsense).unwrap_err();
            assert_eq!(e.code(), "invalid-argument");
            assert!(e.to_string().contains("xmpp_hosting_store_lock_timeout") && e.to_string().contains("0.1 to 3600"));
        }
        assert_eq!(lock_timeout_setting("x", 1.0).unwrap(), Duration::from_secs(1));
        assert_eq!(lock_timeout_setting("x", 0.5).unwrap(), Duration::from_millis(500));
        assert_eq!(lock_timeout_setting("x", 3600.0).unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn the_loops_wait_for_a_lock_is_0_to_60_seconds() {
        for nonsense in [-1.0, 60.5, f64::NAN, f64::INFINITY] {
            let e = super::busy_timeout_setting(nonsense).unwrap_err();
            assert_eq!(e.to_string(), format!("invalid argument: busy_timeout {nonsense} is not 0 to 60 seconds"));
        }
        assert_eq!(super::busy_timeout_setting(0.25).unwrap(), Duration::from_millis(250));
        assert_eq!(super::busy_timeout_setting(60.0).unwrap(), Duration::from_secs(60));
    }

    #[test]
    fn answers_are_sent_until_a_margin_before_their_caller_stops_waiting() {
        let requested = Instant::now();
        let by = |wait| Hosting::answer_sent_by(requested, wait);
        // A slot decision: its caller waits 3 s; the answer goes until 200 ms before.
        assert_eq!(by(Duration::from_secs(2)), requested + Duration::from_millis(2800));
        // The worker's default wait (10 s and a 5 s grace).
        assert_eq!(by(Duration::from_secs(10)), requested + Duration::from_millis(14_800));
        // The shortest wait an admin may set: 150 ms in all, the margin half the 50 ms grace.
        assert_eq!(by(Duration::from_millis(100)), requested + Duration::from_millis(125));
        // Never before the wait itself has passed.
        assert_eq!(by(Duration::ZERO), requested);
        for ms in [1, 3, 100, 399, 400, 2000, 10_000, 3_600_000] {
            let wait = Duration::from_millis(ms);
            assert!(by(wait) >= requested + wait && by(wait) < requested + Hosting::answer_within(wait), "{ms}");
        }
    }

    #[test]
    fn the_wait_an_unanswered_caller_is_told_of_is_never_said_longer_than_it_was() {
        let said = |ms| super::seconds(Duration::from_millis(ms));
        assert_eq!([said(20), said(300), said(999)], ["20 ms", "300 ms", "999 ms"]);
        assert_eq!([said(3000), said(2750), said(15_000)], ["3 s", "2.7 s", "15 s"]);
    }

    #[test]
    fn calls_a_caller_waits_for_behind_a_held_lock_are_made_once_it_is_free() {
        let store = TestStore::new("now-or-answer-free");
        let options =
            OpenOptions { busy_timeout: Duration::from_secs(30), worker_busy_timeout: Duration::from_secs(30) };
        let h = Hosting::open_with(&store.path, &options).unwrap();
        assert_eq!(Hosting::answer_within(h.worker_wait()), Duration::from_secs(30) + super::ANSWER_GRACE);
        assert_eq!(Hosting::answer_within(Duration::from_secs(2)), Duration::from_secs(3));
        let other = lock_holder(&store.path);
        let pending: Vec<_> = (0..4)
            .map(|i| match h.now_or_answer(move |w| w.add_domain(&format!("d{i}.example")), h.worker_wait()).unwrap() {
                NowOrAnswer::Later(answer) => answer.pending,
                NowOrAnswer::Now(_) => panic!("made through another connection's write lock"),
            })
            .collect();
        other.execute_batch("COMMIT").unwrap();
        for (i, p) in pending.into_iter().enumerate() {
            assert_eq!(p.wait().unwrap().name.as_str(), format!("d{i}.example"));
        }
        // Errors are answers too.
        let NowOrAnswer::Now(Err(e)) =
            h.now_or_answer(|w| Ok(w.add_domain("d0.example")), h.worker_wait()).map_err(|e| e.to_string()).unwrap()
        else {
            panic!("not answered at once")
        };
        assert_eq!(e.code(), "already-exists");
    }

    #[test]
    fn a_call_that_gets_the_workers_connection_after_its_callers_deadline_is_not_made() {
        use std::sync::mpsc;
        // The worker's connection is busy with something else (a housekeeping pass waiting out
        // the lock, say) until past the deadline of a call queued behind it: the call must not
        // be made then, since its caller has stopped waiting and was told it failed. Before,
        // each queued call waited a full worker wait of its own, and was made whenever it got
        // the connection.
        let store = TestStore::new("now-or-answer-deadline");
        let options =
            OpenOptions { busy_timeout: Duration::from_millis(10), worker_busy_timeout: Duration::from_millis(200) };
        let h = Hosting::open_with(&store.path, &options).unwrap();
        let (inside, entered) = mpsc::channel::<()>();
        let (go, gate) = mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let holding = h
            .later(move |w| {
                w.store().read(|_| {
                    inside.send(()).unwrap();
                    gate.lock().unwrap().recv().unwrap();
                    Ok(())
                })
            })
            .unwrap();
        entered.recv().unwrap();
        let other = lock_holder(&store.path);
        let requested = Instant::now();
        let NowOrAnswer::Later(late) = h.now_or_answer(|w| w.add_domain("late.example"), h.worker_wait()).unwrap()
        else {
            panic!("made through another connection's write lock")
        };
        // The deadlines the binding keeps to are the ones the worker keeps to.
        assert_eq!(late.within, Hosting::answer_within(Duration::from_millis(200)));
        let by = Hosting::answer_sent_by(requested, Duration::from_millis(200));
        assert!(late.sent_by >= by && late.sent_by <= by + (Instant::now() - requested));
        let unanswered = late.unanswered();
        assert!(
            unanswered.is_busy() && unanswered.to_string().contains("no answer came within 300 ms"),
            "{unanswered}"
        );
        let late = late.pending;
        // Past the call's deadline (its worker wait from the request) before anything is free.
        std::thread::sleep(Duration::from_millis(400));
        other.execute_batch("COMMIT").unwrap();
        go.send(()).unwrap();
        holding.wait().unwrap();
        let err = late.wait().unwrap_err();
        assert!(err.is_busy() && err.to_string().contains("not made"), "{err}");
        assert!(h.domain("late.example").unwrap().is_none(), "made after its caller stopped waiting");
        // A call made in time is made, on the same connection.
        let other = lock_holder(&store.path);
        let NowOrAnswer::Later(Answer { pending: in_time, .. }) =
            h.now_or_answer(|w| w.add_domain("in-time.example"), h.worker_wait()).unwrap()
        else {
            panic!("made through another connection's write lock")
        };
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(in_time.wait().unwrap().name.as_str(), "in-time.example");
    }

    #[test]
    fn a_callers_deadline_moves_to_the_answers_last_moment_once_the_call_has_committed() {
        // Past the deadline, a call that has made nothing still starts nothing.
        let h = Hosting::open_in_memory().unwrap();
        {
            let now = Instant::now();
            let _tracked = super::AttemptScope::until(now, now);
            let err = h.domain("any.example").unwrap_err();
            assert!(err.is_busy(), "{err}");
            assert!(h.add_domain("late.example").is_err());
        }
        assert!(h.domain("late.example").unwrap().is_none(), "made after its caller stopped waiting");
        // A call that committed before its deadline goes on after it: its read and its next
        // write are made. Before, both failed with "held elsewhere until the caller stopped
        // waiting" though the first change was in the store.
        // Until its answer can no longer be sent: past that it would hold the worker's connection
        // for nobody.
        let now = Instant::now();
        let (until, answer_by) = (now + Duration::from_secs(1), now + Duration::from_millis(1500));
        let _tracked = super::AttemptScope::until(until, answer_by);
        h.add_domain("first.example").unwrap();
        std::thread::sleep(until.saturating_duration_since(Instant::now()) + Duration::from_millis(10));
        assert_eq!(h.domain("first.example").unwrap().unwrap().name.as_str(), "first.example");
        h.add_domain("second.example").unwrap();
        std::thread::sleep(answer_by.saturating_duration_since(Instant::now()) + Duration::from_millis(10));
        let err = h.add_domain("third.example").unwrap_err();
        assert!(err.is_busy(), "{err}");
    }

    #[test]
    fn a_panicking_call_gives_its_caller_an_internal_error() {
        let h = Hosting::open_in_memory().unwrap();
        let err = h.later(|_| -> crate::Result<()> { panic!("boom") }).unwrap().wait().unwrap_err();
        assert_eq!(err.code(), "internal");
    }
}
