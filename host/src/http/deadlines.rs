//! Deadlines on a connection worker's thread (`http::workers`) that cost
//! no timer of tokio's each: the header read deadline hyper sets for every
//! request of a kept-alive connection, and the upstream's deadline for
//! every proxied request.
//!
//! Each was a tokio `Sleep`: made (the runtime's handle looked up and
//! cloned), put in the timer wheel at its first poll and taken out when
//! dropped, each time under the wheel's lock. Side by side on one core at the
//! same moment, the proxy benchmark's load without the two took 3 % less CPU
//! per request. Here a deadline is a slot in a vector of its thread and an
//! entry at the end of a queue of that thread: deadlines made at a fixed
//! distance from now end in the order they were made, so the queue is kept
//! in order by pushing at its end, and one task per thread, asleep on one
//! tokio timer until the earliest deadline, wakes the ones that have passed.
//! Under steady traffic that task wakes about once per deadline length.
//!
//! A deadline that is not later than the last one queued on its thread (a
//! shorter length, which the gateway does not use), or made off the
//! connection workers, is a tokio `Sleep` as before. Memory stays bounded:
//! the slots are as many as the deadlines alive, and the queue, which keeps
//! the entries of ended deadlines until they reach its front, is compacted
//! when it holds more than twice as many entries as live deadlines.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The deadlines of one kind, each made at one fixed distance from now, so
/// that they end in the order they were made; each lane has a queue per
/// thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// hyper's header read deadline ([`Timer`]).
    HeaderRead = 0,
    /// The deadline of an upstream's answer ([`timeout`]).
    Upstream = 1,
}

const LANES: usize = 2;

/// A point in time a future waits for ([`Deadline::poll_passed`]).
pub(crate) struct Deadline(Kind);

enum Kind {
    /// A slot of this thread's queue of a lane.
    Queued {
        lane: Lane,
        slot: u32,
        generation: u32,
    },
    /// Made off the workers or out of order.
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

impl Deadline {
    /// A deadline of `lane`, `length` from now.
    pub(crate) fn after(lane: Lane, length: Duration) -> Self {
        Self::at(lane, Instant::now() + length)
    }

    /// A deadline of `lane` at `when`.
    pub(crate) fn at(lane: Lane, when: Instant) -> Self {
        if crate::connection_worker() != 0
            && let Some(Pushed {
                slot,
                generation,
                start,
                wake,
            }) = queue(lane, |q| q.push(when))
        {
            // Outside the queue's borrow.
            if start {
                tokio::spawn(wake_passed(lane));
            }
            if let Some(waker) = wake {
                waker.wake();
            }
            return Deadline(Kind::Queued {
                lane,
                slot,
                generation,
            });
        }
        Deadline(Kind::Tokio(Box::pin(tokio::time::sleep_until(when.into()))))
    }

    /// Ready once the deadline has passed; until then, `cx` is woken when it
    /// does.
    pub(crate) fn poll_passed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Kind::Queued {
                lane,
                slot,
                generation,
            } => queue(*lane, |q| q.poll(*slot, *generation, cx.waker())),
            Kind::Tokio(sleep) => sleep.as_mut().poll(cx),
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Kind::Queued {
            lane,
            slot,
            generation,
        } = self.0
        {
            // A worker's tasks never leave its thread; at exit the queues
            // may already be gone.
            let _ = QUEUES.try_with(|q| q[lane as usize].borrow_mut().free(slot, generation));
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_passed(cx)
    }
}

impl hyper::rt::Sleep for Deadline {}

/// hyper's timer on the connection workers: its sleeps are [`Deadline`]s.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Timer;

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline::after(Lane::HeaderRead, duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline::at(Lane::HeaderRead, deadline))
    }
}

pin_project_lite::pin_project! {
    /// `future`, or `None` once the deadline passes first ([`timeout`]).
    pub(crate) struct Timeout<F> {
        #[pin]
        future: F,
        deadline: Deadline,
    }
}

/// `future`'s output, or `None` if it is not ready within `length` (the
/// lane's length: an upstream's answer).
pub(crate) fn timeout<F: Future>(length: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        deadline: Deadline::after(Lane::Upstream, length),
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(Some(out));
        }
        this.deadline.poll_passed(cx).map(|()| None)
    }
}

thread_local! {
    static QUEUES: [RefCell<Queue>; LANES] = Default::default();
}

/// `f` on this thread's queue of `lane`.
fn queue<R>(lane: Lane, f: impl FnOnce(&mut Queue) -> R) -> R {
    QUEUES.with(|q| f(&mut q[lane as usize].borrow_mut()))
}

/// One thread's deadlines.
#[derive(Default)]
struct Queue {
    slots: Vec<Slot>,
    /// Slots not in use.
    free: Vec<u32>,
    /// Deadlines in the order they end: when, slot, its generation then.
    order: VecDeque<(Instant, u32, u32)>,
    /// Deadlines alive (slots in use).
    live: usize,
    /// The waking task ([`wake_passed`]), when it has nothing to wait for.
    idle_waker: Option<Waker>,
    /// Whether this thread's waking task runs.
    waking: bool,
}

/// A deadline just queued, and what its thread's waking task needs.
struct Pushed {
    slot: u32,
    generation: u32,
    /// The lane has no waking task on this thread yet: start it.
    start: bool,
    /// The waking task waits for a deadline: this one.
    wake: Option<Waker>,
}

#[derive(Default)]
struct Slot {
    /// Counts the slot's uses: an entry of the queue whose generation
    /// differs belongs to a deadline since dropped.
    generation: u32,
    passed: bool,
    waker: Option<Waker>,
}

impl Queue {
    /// Queues a deadline at `when`; `None` if it is earlier than the last
    /// one queued (the queue would be out of order).
    fn push(&mut self, when: Instant) -> Option<Pushed> {
        if self.order.back().is_some_and(|&(last, _, _)| when < last) {
            return None;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.slots.len()).ok()?;
                self.slots.push(Slot::default());
                slot
            }
        };
        let generation = self.slots[slot as usize].generation;
        self.live += 1;
        // Ended deadlines at the front go; past a bound, everywhere.
        while let Some(&(_, s, g)) = self.order.front()
            && self.slots[s as usize].generation != g
        {
            self.order.pop_front();
        }
        if self.order.len() > 2 * self.live + 64 {
            let slots = &self.slots;
            self.order
                .retain(|&(_, s, g)| slots[s as usize].generation == g);
        }
        self.order.push_back((when, slot, generation));
        let start = !std::mem::replace(&mut self.waking, true);
        Some(Pushed {
            slot,
            generation,
            start,
            wake: self.idle_waker.take(),
        })
    }

    fn poll(&mut self, slot: u32, generation: u32, waker: &Waker) -> Poll<()> {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return Poll::Ready(());
        };
        debug_assert_eq!(s.generation, generation, "a deadline outlived its slot");
        if s.passed || s.generation != generation {
            return Poll::Ready(());
        }
        match &mut s.waker {
            Some(w) if w.will_wake(waker) => {}
            w => *w = Some(waker.clone()),
        }
        Poll::Pending
    }

    fn free(&mut self, slot: u32, generation: u32) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if s.generation != generation {
            return;
        }
        s.generation = s.generation.wrapping_add(1);
        s.passed = false;
        s.waker = None;
        self.free.push(slot);
        self.live -= 1;
    }

    /// Marks the deadlines passed by `now`, their futures' wakers put in
    /// `wake`; the earliest deadline still to come.
    fn pass(&mut self, now: Instant, wake: &mut Vec<Waker>) -> Option<Instant> {
        while let Some(&(when, slot, generation)) = self.order.front() {
            let s = &mut self.slots[slot as usize];
            if s.generation == generation {
                if when > now {
                    return Some(when);
                }
                s.passed = true;
                wake.extend(s.waker.take());
            }
            self.order.pop_front();
        }
        None
    }
}

/// The waking task of this thread's queue of `lane`: asleep until the
/// earliest deadline, it wakes those that have passed; with none queued, it
/// waits for the next.
async fn wake_passed(lane: Lane) {
    let mut sleep = Box::pin(tokio::time::sleep(Duration::ZERO));
    let mut wake = Vec::new();
    loop {
        let next = queue(lane, |q| q.pass(Instant::now(), &mut wake));
        // Outside the queue's borrow.
        wake.drain(..).for_each(Waker::wake);
        match next {
            Some(when) => {
                sleep.as_mut().reset(when.into());
                (&mut sleep).await;
            }
            None => {
                std::future::poll_fn(|cx| {
                    queue(lane, |q| {
                        if q.order.is_empty() {
                            q.idle_waker = Some(cx.waker().clone());
                            Poll::Pending
                        } else {
                            Poll::Ready(())
                        }
                    })
                })
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own marked as a connection worker, in a
    /// current-thread runtime, as `http::workers` does.
    fn on_a_worker<R: Send + 'static>(
        f: impl FnOnce() -> Pin<Box<dyn Future<Output = R>>> + Send + 'static,
    ) -> R {
        std::thread::spawn(move || {
            crate::set_connection_worker(1);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f())
        })
        .join()
        .unwrap()
    }

    fn entries(lane: Lane) -> (usize, usize, usize) {
        queue(lane, |q| (q.order.len(), q.live, q.slots.len()))
    }

    #[test]
    fn deadlines_pass_in_order_and_dropped_ones_leave_nothing() {
        on_a_worker(|| {
            Box::pin(async {
                let lane = Lane::Upstream;
                // A future that is never ready ends at its deadline; one that
                // is ready first is its own answer.
                let started = Instant::now();
                assert_eq!(
                    timeout(Duration::from_millis(30), std::future::pending::<()>()).await,
                    None
                );
                assert!(started.elapsed() >= Duration::from_millis(30));
                assert!(matches!(
                    Deadline::after(lane, Duration::from_millis(1)).0,
                    Kind::Queued { .. }
                ));
                assert_eq!(timeout(Duration::from_secs(60), async { 7 }).await, Some(7));

                // Three deadlines pass in order, each at its time.
                let mut waiting: Vec<_> = (1..=3)
                    .map(|i| Deadline::after(lane, Duration::from_millis(20 * i)))
                    .collect();
                let from = Instant::now();
                for (i, d) in (1..).zip(&mut waiting) {
                    d.await;
                    assert!(from.elapsed() >= Duration::from_millis(20 * i));
                }

                // One long deadline at the front and many short-lived ones
                // behind it: the queue stays within twice the live ones.
                let front = Deadline::after(lane, Duration::from_secs(60));
                for _ in 0..10_000 {
                    drop(Deadline::after(lane, Duration::from_secs(60)));
                }
                let (order, live, slots) = entries(lane);
                assert!(order <= 2 * live + 65, "{order} entries for {live} live");
                assert!(slots <= 8, "{slots} slots");
                drop(front);
                drop(waiting);
                assert_eq!(entries(lane).1, 0);
            })
        });
    }

    #[test]
    fn an_earlier_deadline_or_one_off_the_workers_is_tokios() {
        on_a_worker(|| {
            Box::pin(async {
                let lane = Lane::HeaderRead;
                let late = Deadline::after(lane, Duration::from_secs(60));
                let early = Deadline::after(lane, Duration::from_millis(10));
                assert!(matches!(late.0, Kind::Queued { .. }));
                assert!(matches!(early.0, Kind::Tokio(_)));
                // It still passes, before the later one.
                tokio::time::timeout(Duration::from_secs(10), early)
                    .await
                    .expect("the earlier deadline passes");
            })
        });
        // This test's thread is no connection worker.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let d = Deadline::after(Lane::Upstream, Duration::from_millis(5));
            assert!(matches!(d.0, Kind::Tokio(_)));
            d.await;
        });
    }

    #[test]
    fn hypers_timer_sleeps_until_its_deadline() {
        on_a_worker(|| {
            Box::pin(async {
                use hyper::rt::Timer as _;
                let started = Instant::now();
                Timer.sleep(Duration::from_millis(20)).await;
                Timer
                    .sleep_until(Instant::now() + Duration::from_millis(20))
                    .await;
                assert!(started.elapsed() >= Duration::from_millis(40));
            })
        });
    }
}
