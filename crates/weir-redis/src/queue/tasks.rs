//! The consumer's three tasks: the reader (blocking reads on a connection
//! of its own), the acker (acknowledgements in batches) and the
//! maintenance task (reclaim, heartbeat, the graceful end).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use redis::Value;
use redis::aio::ConnectionManager;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::delivery::{AckHandle, AckRequest, Delivery};
use super::report::Ending;
use super::shared::Shared;
use super::wire::{self, RawEntry};
use crate::error::RedisFailure;

/// Acknowledgements sent in one script call, at most.
const ACK_BATCH: usize = 512;
/// Acknowledgement calls in flight at once, at most.
const ACK_FLIGHTS: usize = 4;
/// Ids renewed in one heartbeat call, at most.
const HEARTBEAT_BATCH: usize = 256;
/// Reclaim calls in one round of the maintenance task, at most.
const RECLAIM_CALLS: usize = 16;

/// Pauses after a failed read: growing, at most a second.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(20))
    }

    fn reset(&mut self) {
        *self = Self::new();
    }

    /// Sleeps the current pause unless `until` is cancelled first; returns
    /// `false` then.
    async fn pause(&mut self, until: &CancellationToken) -> bool {
        let pause = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(pause) => true,
            _ = until.cancelled() => false,
        }
    }
}

/// The reader: creates the group if needed, then reads new entries as
/// fast as the prefetch frees room, until the consumer closes. A read in
/// progress is finished on `close` (its entries are released afterwards),
/// dropped on `cancel`.
pub(crate) async fn read<T: DeserializeOwned + Send + 'static>(
    shared: Arc<Shared>,
    mut conn: ConnectionManager,
    tx: async_channel::Sender<Delivery<T>>,
    done: CancellationToken,
) {
    let _done = done.drop_guard();
    let mut backoff = Backoff::new();
    let mut group_ready = false;
    while !shared.closing.is_cancelled() {
        if !group_ready {
            match create_group(&shared).await {
                Ok(()) => group_ready = true,
                Err(_) => {
                    if !backoff.pause(&shared.closing).await {
                        break;
                    }
                    continue;
                }
            }
        }
        let count = tokio::select! {
            n = take_room(&shared) => n,
            _ = shared.closing.cancelled() => break,
        };
        if count == 0 {
            break;
        }
        let cmd = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&shared.group)
            .arg(&shared.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(u64::try_from(shared.settings.block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(&shared.keys.stream)
            .arg(">")
            .clone();
        let bound = shared.settings.block + shared.settings.timeout;
        let reply = tokio::select! {
            r = shared.call(bound, cmd.query_async::<Value>(&mut conn)) => r,
            _ = shared.ctx.cancelled() => {
                shared.permits.add_permits(count);
                break;
            }
        };
        let entries = reply.and_then(|v| wire::read_reply(v).map_err(RedisFailure::from));
        match entries {
            Ok(entries) => {
                backoff.reset();
                shared.permits.add_permits(count - entries.len().min(count));
                for entry in entries {
                    deliver(&shared, &tx, entry, false).await;
                }
            }
            Err(failure) => {
                shared.permits.add_permits(count);
                if failure.code() == Some("NOGROUP") {
                    group_ready = false;
                }
                if !backoff.pause(&shared.closing).await {
                    break;
                }
            }
        }
    }
}

/// Waits for room, then takes what is free, up to a batch. Returns how
/// many permits it took (0: the semaphore closed).
///
/// It waits for room for half the prefetch (at most a batch), not for one
/// delivery: acknowledgements free room one by one, and a reader that read
/// as soon as one was free would make many small reads while the other
/// half of the prefetch still keeps the workers busy.
async fn take_room(shared: &Shared) -> usize {
    let s = &shared.settings;
    let low = (s.prefetch / 2).clamp(1, s.batch);
    let Ok(first) = shared
        .permits
        .acquire_many(u32::try_from(low).unwrap_or(u32::MAX))
        .await
    else {
        return 0;
    };
    first.forget();
    let mut n = low;
    let extra = shared.permits.available_permits().min(s.batch - low);
    if extra > 0
        && let Ok(more) = shared
            .permits
            .try_acquire_many(u32::try_from(extra).unwrap_or(u32::MAX))
    {
        n += more.num_permits();
        more.forget();
    }
    n
}

/// `XGROUP CREATE … 0 MKSTREAM`: from the first entry, so jobs enqueued
/// before any consumer existed are read too. An existing group is fine.
async fn create_group(shared: &Shared) -> Result<(), RedisFailure> {
    let mut conn = shared.conn.clone();
    let cmd = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&shared.keys.stream)
        .arg(&shared.group)
        .arg("0")
        .arg("MKSTREAM")
        .clone();
    match shared
        .call(shared.settings.timeout, cmd.query_async::<Value>(&mut conn))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => {
            shared.health.succeeded();
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Hands one read entry on (its permit is already taken), or, when it
/// cannot be decoded, moves it to the dead-letter stream.
async fn deliver<T: DeserializeOwned>(
    shared: &Arc<Shared>,
    tx: &async_channel::Sender<Delivery<T>>,
    entry: RawEntry,
    reclaimed: bool,
) {
    shared.held(&entry.id, reclaimed);
    let decoded = serde_json::from_str::<T>(&entry.payload);
    let mut handle = AckHandle::new(
        Arc::clone(shared),
        entry.id,
        entry.payload,
        entry.attempts,
        entry.deliveries,
        reclaimed,
    );
    match decoded {
        Ok(job) => {
            // Never full: the permit taken for it is room in the channel.
            // Closed only when the consumer is gone; the delivery is then
            // dropped (abandoned).
            let _ = tx.try_send(Delivery::new(job, handle));
        }
        Err(e) => {
            let error = format!("cannot decode job: {e}");
            tracing::warn!(queue = %shared.queue, id = %handle.id, error = %error, "undecodable job moved to the dead-letter stream");
            if let Ok(2) = shared.record_failure(&handle, &error, true).await {
                handle.end(Ending::DeadLettered);
            }
        }
    }
}

/// The acker: takes every acknowledgement waiting (up to a batch) and
/// records them in one script call, with up to [`ACK_FLIGHTS`] calls in
/// flight (acknowledgements that arrive meanwhile wait and make the next
/// batch larger), until the consumer has nothing left in flight (or is
/// cancelled).
pub(crate) async fn acknowledge(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<AckRequest>,
    done: CancellationToken,
) {
    let mut flights = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            _ = done.cancelled() => break,
            Some(()) = flights.next(), if !flights.is_empty() => {}
            r = rx.recv(), if flights.len() < ACK_FLIGHTS => {
                let Some(first) = r else { break };
                let mut batch = vec![first];
                while batch.len() < ACK_BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                flights.push(ack_batch(&shared, batch));
            }
        }
    }
    // Cancelled: the batches in flight and what is still queued are
    // abandoned (the handles drop).
    drop(flights);
    rx.close();
    while rx.try_recv().is_ok() {}
}

/// One `MULTI` / `XACK` / `XDEL` / `EXEC` for a batch of acknowledgements
/// (atomic, and cheaper on the server than a script, which converts every
/// id twice); then each waiter hears.
async fn ack_batch(shared: &Shared, mut batch: Vec<AckRequest>) {
    let ids: Vec<&str> = batch.iter().map(|r| &*r.handle.id).collect();
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("XACK")
        .arg(&shared.keys.stream)
        .arg(&shared.group)
        .arg(&ids)
        .ignore()
        .cmd("XDEL")
        .arg(&shared.keys.stream)
        .arg(&ids)
        .ignore();
    let acked: Result<(), _> = shared
        .persist(|| {
            let mut conn = shared.conn.clone();
            let pipe = &pipe;
            async move { pipe.query_async(&mut conn).await }
        })
        .await;
    match acked {
        Ok(_) => {
            let ended: Vec<&str> = batch
                .iter_mut()
                .filter_map(|r| r.handle.mark_ended().then_some(&*r.handle.id))
                .collect();
            shared.ended_many(&ended, Ending::Acknowledged);
            for r in batch {
                let _ = r.reply.send(Ok(()));
            }
        }
        Err(e) => {
            // The handles drop: abandoned, delivered again later.
            for r in batch {
                let _ = r.reply.send(Err(e.clone()));
            }
        }
    }
}

/// The maintenance task: reclaims dead consumers' entries and renews its
/// own while the consumer runs; on `close`, releases what was read but not
/// handed on, waits for the deliveries in flight, leaves the group, and
/// ends the acker.
pub(crate) async fn maintain<T: DeserializeOwned + Send + 'static>(
    shared: Arc<Shared>,
    tx: async_channel::Sender<Delivery<T>>,
    rx: async_channel::Receiver<Delivery<T>>,
    reader_done: CancellationToken,
    acker_done: CancellationToken,
) {
    let _acker = acker_done.drop_guard();
    let visibility = shared.settings.visibility;
    let reclaim_every = visibility / 2;
    let renew_every = visibility / 3;
    // Reclaim at once: a restarted service picks up what its predecessor
    // left.
    let mut next_reclaim = Instant::now();
    let mut next_renew = Instant::now() + renew_every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_reclaim.min(next_renew)) => {}
            _ = shared.closing.cancelled() => break,
        }
        let now = Instant::now();
        if now >= next_reclaim {
            reclaim(&shared, &tx).await;
            next_reclaim = Instant::now() + reclaim_every;
        }
        if now >= next_renew {
            renew(&shared).await;
            next_renew = Instant::now() + renew_every;
        }
    }
    drop(tx);
    // Closing: let the reader finish its read, then give back what nobody
    // took. (Cancelled: the reader drops its read; the buffered deliveries
    // are abandoned.)
    tokio::select! {
        _ = reader_done.cancelled() => {}
        _ = shared.ctx.cancelled() => {}
    }
    rx.close();
    let mut unstarted = Vec::new();
    while let Ok(d) = rx.try_recv() {
        unstarted.push(d.into_parts().1);
    }
    if !shared.ctx.is_cancelled() && !unstarted.is_empty() {
        let _ = shared.release(unstarted).await;
    }
    drop(rx);
    // The deliveries handed on finish and record their outcomes; keep
    // renewing them meanwhile.
    loop {
        let idle = shared.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if shared.in_flight() == 0 || shared.ctx.is_cancelled() {
            break;
        }
        tokio::select! {
            _ = &mut idle => {}
            _ = tokio::time::sleep_until(next_renew) => {
                renew(&shared).await;
                next_renew = Instant::now() + renew_every;
            }
            _ = shared.ctx.cancelled() => break,
        }
    }
    if !shared.ctx.is_cancelled() {
        leave(&shared).await;
    }
}

/// Claims entries idle past the visibility timeout, as many as the
/// prefetch has room for, and hands them on.
async fn reclaim<T: DeserializeOwned>(
    shared: &Arc<Shared>,
    tx: &async_channel::Sender<Delivery<T>>,
) {
    let min_idle = u64::try_from(shared.settings.visibility.as_millis()).unwrap_or(u64::MAX);
    let mut cursor = "0-0".to_owned();
    for _ in 0..RECLAIM_CALLS {
        if shared.closing.is_cancelled() {
            return;
        }
        let room = shared
            .permits
            .available_permits()
            .min(shared.settings.batch);
        let Ok(permits) = shared
            .permits
            .try_acquire_many(u32::try_from(room).unwrap_or(u32::MAX))
        else {
            return;
        };
        if room == 0 {
            return;
        }
        permits.forget();
        let cmd = shared.scripts.reclaim.command(
            &[&shared.keys.stream, &shared.keys.dead],
            (
                &shared.group,
                &shared.consumer,
                min_idle,
                &cursor,
                room,
                shared.settings.max_deliveries,
                shared.settings.dead_max_len,
            ),
        );
        let reply: Result<Value, _> = shared
            .call(
                shared.settings.timeout,
                shared.scripts.reclaim.run(&shared.conn, &cmd),
            )
            .await;
        let parsed = reply.and_then(|v| wire::reclaim_reply(&v).map_err(RedisFailure::from));
        let Ok((next, dead, entries)) = parsed else {
            shared.permits.add_permits(room);
            return;
        };
        shared.permits.add_permits(room - entries.len().min(room));
        if dead > 0 {
            tracing::warn!(queue = %shared.queue, jobs = dead, "jobs delivered too often without an outcome moved to the dead-letter stream");
            for _ in 0..dead {
                shared.counters.read(true);
                shared.counters.ended(Ending::DeadLettered);
            }
        }
        let claimed = entries.len();
        for entry in entries {
            deliver(shared, tx, entry, true).await;
        }
        if next == "0-0" || (claimed == 0 && dead == 0) {
            return;
        }
        cursor = next;
    }
}

/// Resets the idle time of this consumer's entries (buffered and in
/// progress), so that nobody reclaims the jobs of a live consumer.
async fn renew(shared: &Shared) {
    let ids: Vec<Arc<str>> = crate::lock(&shared.held).iter().cloned().collect();
    for chunk in ids.chunks(HEARTBEAT_BATCH) {
        let chunk: Vec<&str> = chunk.iter().map(|id| &**id).collect();
        let cmd = shared.scripts.heartbeat.command(
            &[&shared.keys.stream],
            (&shared.group, &shared.consumer, chunk),
        );
        let renewed: Result<i64, _> = shared
            .call(
                shared.settings.timeout,
                shared.scripts.heartbeat.run(&shared.conn, &cmd),
            )
            .await;
        if renewed.is_err() {
            return;
        }
    }
}

/// Removes this consumer from the group when it has nothing pending, so
/// that finished consumers do not pile up in `XINFO CONSUMERS`.
async fn leave(shared: &Shared) {
    let cmd = shared
        .scripts
        .leave
        .command(&[&shared.keys.stream], (&shared.group, &shared.consumer));
    let _: Result<i64, _> = shared
        .call(
            shared.settings.timeout,
            shared.scripts.leave.run(&shared.conn, &cmd),
        )
        .await;
}
