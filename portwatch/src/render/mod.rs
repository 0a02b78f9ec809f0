//! Views that read the engine's [`crate::engine::Model`]; they never change it.

pub mod batch;
pub mod fmt;
pub mod report;

use crate::engine::callsites::CallSite;

/// Frames a text view shows per call site (JSON has them all).
pub const CALL_SITE_TEXT_FRAMES: usize = 5;

/// One call site as a text line: its share, then its frames innermost
/// first, `<` meaning "called from". Names from the traced host are made
/// terminal-safe.
pub fn call_site_line(c: &CallSite) -> String {
    let mut frames: Vec<String> = c
        .frames
        .iter()
        .take(CALL_SITE_TEXT_FRAMES)
        .map(|f| fmt::clean(f))
        .collect();
    if c.frames.len() > CALL_SITE_TEXT_FRAMES {
        frames.push("...".into());
    }
    if frames.is_empty() {
        frames.push("(no frames)".into());
    }
    format!("{:>4.0}%  {}", c.share * 100.0, frames.join(" < "))
}

/// The "call sites" lines of a verdict in `top --batch` and `report` text;
/// nothing when no stack was sampled.
pub fn write_call_sites(out: &mut impl std::io::Write, sites: &[CallSite]) -> std::io::Result<()> {
    if sites.is_empty() {
        return Ok(());
    }
    let n: u64 = sites.iter().map(|s| s.samples).sum();
    writeln!(
        out,
        "    call sites (top {} of the sampled connects, {n} shown):",
        sites.len()
    )?;
    for s in sites {
        writeln!(out, "      {}", call_site_line(s))?;
        if let Some(note) = &s.note {
            writeln!(out, "            note: {}", fmt::clean(note))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_site_line_shows_share_and_the_first_frames() {
        let c = CallSite {
            frames: (0..7).map(|i| format!("f{i}")).collect(),
            share: 0.75,
            samples: 3,
            note: None,
        };
        assert_eq!(call_site_line(&c), "  75%  f0 < f1 < f2 < f3 < f4 < ...");
    }
}
