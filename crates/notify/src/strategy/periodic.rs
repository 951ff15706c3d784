//! [`Periodic`]: learn the arrival period, park until just before the next expected arrival,
//! then spin.

use std::time::{Duration, Instant};

use super::super::sync::spin_loop;
use super::blocking::park;
use super::{Signal, TimedOut, earliest, expired};

/// Intervals the period is the median of.
pub const WINDOW: usize = 8;
/// Intervals needed before predicting.
pub const MIN_INTERVALS: usize = 4;
/// Spinning after the park that the guard aims for, by default.
pub const TARGET_SPIN: Duration = Duration::from_micros(10);
/// Parks shorter than this are not worth a futex round trip: spin instead.
const MIN_PARK: Duration = Duration::from_micros(50);
/// Polls between reads of the clock while spinning.
const POLLS_PER_CLOCK_READ: u32 = 16;

/// A wait strategy for periodic traffic (an audio block every 5.33 ms, a timer-driven feed):
/// busy-poll latency at a small fraction of a core.
///
/// Each wait has up to three phases:
///
/// 1. **Park** on the futex until `expected − guard` (a notify ends it early: the data came
///    earlier than predicted).
/// 2. **Spin** until `expected + window`: the data normally arrives here, and is seen within a
///    cache-line transfer, as with busy polling.
/// 3. **Block** (as [`Blocking`](super::Blocking)) if it did not: a gap in the traffic or a
///    change of period.
///
/// The period is the median of the last [`WINDOW`] intervals between *fresh* arrivals (a wait
/// that found the data already there is backlog, not an arrival), so bursts and single gaps
/// do not disturb it. The guard adapts: it doubles whenever the data arrived before the
/// spinning began (the park overslept: timer slack, the wake-up of an idle core, jitter), and
/// shrinks by a quarter of the excess whenever spinning lasted longer than the target spin
/// ([`TARGET_SPIN`] unless [set](Periodic::target_spin)). Until [`MIN_INTERVALS`] intervals are known, it blocks.
///
/// Aperiodic traffic degrades it gracefully, to blocking with spinning near each predicted
/// arrival; traffic faster than the guard makes it spin like [`BusySpin`](super::BusySpin).
/// Pin the waiting thread and the publisher to different cores: when they share one, the
/// publisher runs only after the waiter's spin and the learnt period stretches.
#[derive(Debug, Clone)]
pub struct Periodic {
    /// The last intervals between fresh arrivals, in ns, as a ring.
    intervals: [u64; WINDOW],
    /// Intervals recorded so far (the ring index is this modulo `WINDOW`).
    recorded: usize,
    last_arrival: Option<Instant>,
    guard: Duration,
    min_guard: Duration,
    target_spin: Duration,
    recheck: Option<Duration>,
    stats: PeriodicStats,
}

/// What a [`Periodic`] strategy learnt and how its predictions fared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodicStats {
    /// Fresh arrivals seen (waits that did not find the data already there).
    pub arrivals: u64,
    /// Arrivals seen while spinning after a park or before the predicted time: busy-poll
    /// latency.
    pub on_time: u64,
    /// Arrivals that ended a park early through a notify (sooner than predicted).
    pub early: u64,
    /// Arrivals already there when a park's timer expired (the park overslept).
    pub overslept: u64,
    /// Waits in which nothing arrived by the end of the spin window, so it blocked.
    pub missed: u64,
    /// The learnt period, once known.
    pub period: Option<Duration>,
    /// How long before the expected arrival parking ends.
    pub guard: Duration,
}

impl Periodic {
    /// A strategy with a 200 µs starting guard (it adapts), a 5 µs minimum guard, a 10 µs
    /// target spin, and a 100 ms re-check while blocking (see [`Blocking`](super::Blocking)).
    pub const fn new() -> Self {
        Periodic {
            intervals: [0; WINDOW],
            recorded: 0,
            last_arrival: None,
            guard: Duration::from_micros(200),
            min_guard: Duration::from_micros(5),
            target_spin: TARGET_SPIN,
            recheck: Some(Duration::from_millis(100)),
            stats: PeriodicStats {
                arrivals: 0,
                on_time: 0,
                early: 0,
                overslept: 0,
                missed: 0,
                period: None,
                guard: Duration::ZERO,
            },
        }
    }

    /// The guard to start from, before any adaptation.
    pub const fn initial_guard(mut self, guard: Duration) -> Self {
        self.guard = guard;
        self
    }

    /// The guard never shrinks below this.
    pub const fn min_guard(mut self, guard: Duration) -> Self {
        self.min_guard = guard;
        self
    }

    /// How long spinning after a park should last: the guard shrinks while spinning lasts
    /// longer. Longer spins cost CPU; shorter ones risk waking after the data arrived.
    pub const fn target_spin(mut self, spin: Duration) -> Self {
        self.target_spin = spin;
        self
    }

    /// While blocking, re-polls at least this often without a notify; `None` trusts notifies
    /// alone.
    pub const fn recheck_every(mut self, recheck: Option<Duration>) -> Self {
        self.recheck = recheck;
        self
    }

    /// The learnt period: the median of the recent intervals, once enough are known.
    pub fn period(&self) -> Option<Duration> {
        let known = self.recorded.min(WINDOW);
        if known < MIN_INTERVALS {
            return None;
        }
        let mut recent = self.intervals;
        let recent = &mut recent[..known];
        recent.sort_unstable();
        Some(Duration::from_nanos(recent[known / 2]))
    }

    /// What it learnt, and how its predictions fared.
    pub fn stats(&self) -> PeriodicStats {
        PeriodicStats { period: self.period(), guard: self.guard, ..self.stats }
    }

    /// Forgets the learnt period (the traffic changed); the guard and statistics stay.
    pub fn reset(&mut self) {
        self.recorded = 0;
        self.last_arrival = None;
    }

    fn record_arrival(&mut self, at: Instant) {
        if let Some(last) = self.last_arrival {
            let interval = at.saturating_duration_since(last).as_nanos();
            self.intervals[self.recorded % WINDOW] = interval.try_into().unwrap_or(u64::MAX);
            self.recorded += 1;
        }
        self.last_arrival = Some(at);
        self.stats.arrivals += 1;
    }

    /// The next expected arrival whose spin window has not yet ended at `now`, and that
    /// window's end.
    fn expected_arrival(&self, now: Instant) -> Option<(Instant, Instant)> {
        let period = self.period()?.max(Duration::from_nanos(1));
        let window = self.guard.max(self.min_guard);
        let mut expected = self.last_arrival? + period;
        if expected + window <= now {
            // Arrivals were skipped: move on by whole periods.
            let behind = (now - (expected + window)).as_nanos() / period.as_nanos();
            let skip = u32::try_from(behind + 1).ok()?;
            expected += period.checked_mul(skip)?;
        }
        Some((expected, expected + window))
    }

    /// The park ended before the spinning began: park less next time.
    fn grow_guard(&mut self) {
        let cap = self.period().map_or(Duration::MAX, |p| p / 2).max(self.min_guard);
        self.guard = (self.guard * 2).clamp(self.min_guard, cap);
    }

    /// Spinning after the park lasted `spun`: if longer than needed, park a little longer.
    fn shrink_guard(&mut self, spun: Duration) {
        if let Some(excess) = spun.checked_sub(self.target_spin) {
            self.guard = self.guard.saturating_sub(excess / 4).max(self.min_guard);
        }
    }

    /// Phase 3: block until the data comes; it counts as an arrival.
    fn block<S: Signal + ?Sized, T>(
        &mut self,
        signal: &S,
        deadline: Option<Instant>,
        poll: &mut impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        let value = park(signal, deadline, self.recheck, poll)?;
        self.record_arrival(Instant::now());
        Ok(value)
    }
}

impl Default for Periodic {
    fn default() -> Self {
        Periodic::new()
    }
}

impl Periodic {
    fn wait<S: Signal + ?Sized, T>(
        &mut self,
        signal: &S,
        deadline: Option<Instant>,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Result<T, TimedOut> {
        if let Some(value) = poll() {
            return Ok(value); // backlog, not an arrival
        }
        let now = Instant::now();
        let Some((expected, window_end)) = self.expected_arrival(now) else {
            return self.block(signal, deadline, &mut poll);
        };
        let park_until = expected.checked_sub(self.guard).filter(|&t| t > now + MIN_PARK);
        let parked = park_until.is_some();
        if let Some(park_until) = park_until {
            // Phase 1.
            match park(signal, earliest(Some(park_until), deadline), self.recheck, &mut poll) {
                Ok(value) => {
                    // Found by the park's last poll after its timer, or ended by a notify.
                    if Instant::now() >= park_until {
                        self.stats.overslept += 1;
                    } else {
                        self.stats.early += 1;
                    }
                    self.grow_guard();
                    self.record_arrival(Instant::now());
                    return Ok(value);
                }
                Err(TimedOut) if expired(deadline) => return poll().ok_or(TimedOut),
                Err(TimedOut) => {}
            }
            if let Some(value) = poll() {
                self.stats.overslept += 1;
                self.grow_guard();
                self.record_arrival(Instant::now());
                return Ok(value);
            }
        }
        // Phase 2.
        let spin_start = Instant::now();
        let spin_end = earliest(Some(window_end), deadline).unwrap_or(window_end);
        loop {
            for _ in 0..POLLS_PER_CLOCK_READ {
                if let Some(value) = poll() {
                    let now = Instant::now();
                    if parked {
                        self.shrink_guard(now - spin_start);
                    }
                    self.stats.on_time += 1;
                    self.record_arrival(now);
                    return Ok(value);
                }
                spin_loop();
            }
            if Instant::now() >= spin_end {
                break;
            }
        }
        // Phase 3 (unless it was the caller's deadline that ended the spinning).
        if expired(deadline) {
            return poll().ok_or(TimedOut);
        }
        self.stats.missed += 1;
        self.block(signal, deadline, &mut poll)
    }
}

impl_wait_strategy!(Periodic);

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A strategy that saw fresh arrivals at `start + at[i]` ms.
    fn arrivals(start: Instant, at: &[u64]) -> Periodic {
        let mut strategy = Periodic::new();
        for &ms in at {
            strategy.record_arrival(start + MS * ms as u32);
        }
        strategy
    }

    #[test]
    fn the_period_is_the_median_interval_and_ignores_a_gap_and_a_burst() {
        let start = Instant::now();
        assert_eq!(arrivals(start, &[0, 5, 10, 15]).period(), None, "three intervals: unknown");
        // Intervals 5, 5, 5, 5, 20 (a gap), 1 (a burst), 5: the median is 5.
        let strategy = arrivals(start, &[0, 5, 10, 15, 20, 40, 41, 46]);
        assert_eq!(strategy.period(), Some(5 * MS));
        assert_eq!(strategy.stats().arrivals, 8);
    }

    #[test]
    fn the_window_forgets_intervals_older_than_the_last_eight() {
        let start = Instant::now();
        let mut at: Vec<u64> = (0..10).map(|i| i * 2).collect(); // period 2
        at.extend((1..=8).map(|i| 18 + i * 7)); // then period 7
        assert_eq!(arrivals(start, &at).period(), Some(7 * MS));
    }

    #[test]
    fn expected_arrival_follows_the_last_and_skips_whole_missed_periods() {
        let start = Instant::now();
        let strategy = arrivals(start, &[0, 5, 10, 15, 20]);
        let window = strategy.guard.max(strategy.min_guard);
        let (expected, end) = strategy.expected_arrival(start + 21 * MS).unwrap();
        assert_eq!((expected, end), (start + 25 * MS, start + 25 * MS + window));
        // Two periods later nothing came: the next prediction is the one still ahead.
        let (expected, _) = strategy.expected_arrival(start + 36 * MS).unwrap();
        assert_eq!(expected, start + 40 * MS);
    }

    #[test]
    fn the_guard_doubles_up_to_half_the_period_and_shrinks_to_its_floor() {
        let start = Instant::now();
        let mut strategy = arrivals(start, &[0, 1, 2, 3, 4]).initial_guard(MS / 10);
        for _ in 0..10 {
            strategy.grow_guard();
        }
        assert_eq!(strategy.guard, MS / 2, "capped at half the 1 ms period");
        strategy.shrink_guard(TARGET_SPIN);
        assert_eq!(strategy.guard, MS / 2, "spinning exactly the target changes nothing");
        strategy.shrink_guard(TARGET_SPIN + Duration::from_micros(400));
        assert_eq!(strategy.guard, Duration::from_micros(400), "a quarter of the excess");
        for _ in 0..100 {
            strategy.shrink_guard(MS);
        }
        assert_eq!(strategy.guard, strategy.min_guard);
    }

    #[test]
    fn reset_forgets_the_period() {
        let mut strategy = arrivals(Instant::now(), &[0, 5, 10, 15, 20]);
        assert!(strategy.period().is_some());
        strategy.reset();
        assert_eq!(strategy.period(), None);
    }
}
