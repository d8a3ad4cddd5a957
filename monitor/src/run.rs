//! The event loops: [`run`] draws the dashboard in the terminal, [`run_headless`] prints a line
//! a second instead. Both read the cluster through [`Control`] on a fixed tick and never block
//! the nodes.
//!
//! The terminal is put back as it was however [`run`] ends: on return (quit, Ctrl-C, a stop
//! request, an I/O error) a guard restores it, and on a panic the hook installed by
//! `ratatui::init` does. Ctrl-C arrives as a key because the terminal is in raw mode.
//!
//! Both loops also end when the `stop` flag they are handed is set, which the embedding program
//! does from its signal handlers (SIGTERM, SIGHUP, SIGINT): the dashboard then leaves as the `q`
//! key does, and the headless loop prints its final summary as at the end of its time.
//!
//! # Orderings
//!
//! `stop` is loaded with `Acquire`: whatever the setter wrote before setting it with `Release`
//! (or stronger), such as which signal asked for the stop, is visible to the caller once the
//! loop returns. Nothing else is shared through it, and the loops only need to see it
//! eventually; they look at least once per [`REFRESH`].

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering::Acquire};
use std::time::{Duration, Instant};

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event};

use crate::app::{Action, App};
use crate::control::Control;

/// How often the dashboard samples the cluster and redraws.
pub const REFRESH: Duration = Duration::from_millis(250);

/// Restores the terminal when dropped.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Opens the dashboard on `control` in the terminal and runs it until the person quits, `stop`
/// is set, or, if `limit` is given, until that much time has passed. `seed` drives the random
/// partitions. Returns the final state.
///
/// # Errors
///
/// An I/O error from the terminal (the terminal is restored first).
pub fn run(
    control: &dyn Control,
    seed: u64,
    limit: Option<Duration>,
    stop: &AtomicBool,
) -> io::Result<App> {
    let terminal = ratatui::try_init()?;
    let _restore = Restore;
    let mut app = App::for_control(control, seed);
    event_loop(terminal, control, &mut app, limit, stop)?;
    Ok(app)
}

fn event_loop(
    mut terminal: DefaultTerminal,
    control: &dyn Control,
    app: &mut App,
    limit: Option<Duration>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let start = Instant::now();
    app.ingest(control.sample(), start.elapsed());
    let mut next_tick = start + REFRESH;
    loop {
        terminal.draw(|frame| frame.render_widget(&*app, frame.area()))?;
        let timeout = next_tick.saturating_duration_since(Instant::now());
        // Keys go to `handle_key` (which ignores releases); resizes and everything else are
        // only redrawn, at the top of the loop. A stop request is the `q` key: it leaves by the
        // same `Action::Quit`, so the terminal is restored the same way.
        let action = if stop.load(Acquire) {
            Some(Action::Quit)
        } else if event::poll(timeout)?
            && let Event::Key(key) = event::read()?
        {
            app.handle_key(key)
        } else {
            None
        };
        match action {
            Some(Action::Quit) => return Ok(()),
            Some(action) => app.perform(action, control),
            None => {}
        }
        let now = Instant::now();
        if limit.is_some_and(|limit| now - start >= limit) {
            return Ok(());
        }
        if now >= next_tick {
            app.ingest(control.sample(), now - start);
            next_tick += REFRESH;
            if next_tick < now {
                // Fell behind (the machine was busy): skip the missed ticks.
                next_tick = now + REFRESH;
            }
        }
    }
}

/// Runs for `seconds` without a terminal, writing one summary line per second to `out`, then
/// the final summary. If `stop` is set, it stops within a [`REFRESH`] and writes the final
/// summary at once. Returns the final state.
///
/// # Errors
///
/// An error writing to `out`, which ends the run there: with a broken pipe, for one, nobody
/// reads the rest.
pub fn run_headless(
    control: &dyn Control,
    seconds: u64,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> io::Result<App> {
    let mut app = App::for_control(control, 0);
    let start = Instant::now();
    app.ingest(control.sample(), Duration::ZERO);
    'run: for second in 1..=seconds {
        let deadline = start + Duration::from_secs(second);
        loop {
            if stop.load(Acquire) {
                break 'run;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Sample on the dashboard's tick so events are seen as the dashboard would.
            std::thread::sleep(REFRESH.min(deadline - now));
            app.ingest(control.sample(), start.elapsed());
        }
        writeln!(out, "{}", app.summary_line())?;
        out.flush()?;
    }
    writeln!(out, "{}", app.final_summary(start.elapsed()))?;
    out.flush()?;
    Ok(app)
}
