//! Live progress on stderr, so that stdout keeps only the report.
//!
//! On a terminal: one line with a bar and the current rates, redrawn in place with
//! `\r` a few times a second; each finished phase leaves its last line behind. Piped
//! into a file or a CI log: a plain line every few seconds instead, since a log
//! cannot be redrawn and should not get four lines a second.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a plain (non-terminal) progress line is written.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// Width of the bar, in cells.
const BAR_CELLS: usize = 20;

/// The progress line of a run.
pub struct Progress {
    terminal: bool,
    /// When the last plain line was written.
    last_plain: Option<Instant>,
    /// Whether a line is drawn and not yet ended (terminal only).
    open: bool,
}

impl Progress {
    /// Draws in place if stderr is a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            last_plain: None,
            open: false,
        }
    }

    /// Shows `text` after a bar filled to `fraction` (`None`: no bar).
    pub fn draw(&mut self, fraction: Option<f64>, text: &str) {
        let line = match fraction {
            Some(f) => format!("{} {text}", bar(f, BAR_CELLS)),
            None => text.to_owned(),
        };
        let mut err = std::io::stderr().lock();
        if self.terminal {
            // Carriage return, clear the line, draw.
            let _ = write!(err, "\r\x1b[2K{line}");
            self.open = true;
        } else if self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
            let _ = writeln!(err, "{line}");
            self.last_plain = Some(Instant::now());
        }
        let _ = err.flush();
    }

    /// Ends a phase: its final state stays on screen (or in the log) as a line.
    pub fn finish(&mut self, fraction: Option<f64>, text: &str) {
        self.last_plain = None;
        self.draw(fraction, text);
        if self.terminal {
            let _ = writeln!(std::io::stderr());
            self.open = false;
        }
    }

    /// Writes a line of its own (a note, a warning) without breaking the bar.
    pub fn note(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.open {
            let _ = write!(err, "\r\x1b[2K");
            self.open = false;
        }
        let _ = writeln!(err, "{text}");
    }
}

/// A bar of `cells` cells filled to `fraction` (clamped to 0..=1), in eighths.
pub fn bar(fraction: f64, cells: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let f = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let eighths = (f * (cells * 8) as f64).round() as usize;
    let (full, part) = (eighths / 8, eighths % 8);
    let mut s = String::with_capacity(cells + 2);
    s.push('▕');
    s.extend(std::iter::repeat_n('█', full));
    if full < cells {
        s.push(PARTS[part]);
        s.extend(std::iter::repeat_n(' ', cells - full - 1));
    }
    s.push('▏');
    s
}

/// A count or rate in a short form: `950`, `12.3k`, `4.56M`.
pub fn short(n: f64) -> String {
    let a = n.abs();
    if a >= 999_500.0 {
        format!("{:.2}M", n / 1e6)
    } else if a >= 9_995.0 {
        format!("{:.1}k", n / 1e3)
    } else if a >= 1_000.0 {
        format!("{:.2}k", n / 1e3)
    } else if a >= 100.0 || n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_in_eighths_and_keep_their_width() {
        assert_eq!(bar(0.0, 4), "▕    ▏");
        assert_eq!(bar(1.0, 4), "▕████▏");
        assert_eq!(bar(0.5, 4), "▕██  ▏");
        assert_eq!(bar(0.5 + 1.0 / 32.0, 4), "▕██▏ ▏");
        assert_eq!(bar(7.0, 4), bar(1.0, 4));
        assert_eq!(bar(f64::NAN, 4), bar(0.0, 4));
        for i in 0..=100 {
            assert_eq!(bar(i as f64 / 100.0, 20).chars().count(), 22);
        }
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(7.26), "7.3");
        assert_eq!(short(950.0), "950");
        assert_eq!(short(1_234.0), "1.23k");
        assert_eq!(short(98_765.0), "98.8k");
        assert_eq!(short(4_560_000.0), "4.56M");
    }
}
