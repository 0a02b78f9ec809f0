//! The advice pane (`a`): every item of the model's advice in full,
//! word-wrapped to the pane's width, scrolled by whole items so none is
//! ever cut (the header only has room for the most important one).

use super::view::AdviceItem;

/// One wrapped item: its level ("warning", "suggestion", "note") on the
/// first line, then the text, wrapped to `width` columns.
pub fn wrap_item(item: &AdviceItem, width: usize) -> Vec<String> {
    let first = format!("{}: {}", item.level, item.text);
    let opts = textwrap::Options::new(width.max(8)).subsequent_indent("  ");
    textwrap::wrap(&first, opts)
        .into_iter()
        .map(|c| c.into_owned())
        .collect()
}

/// The lines shown when the pane starts at item `top` and has `height`
/// lines of `width` columns: whole items only, a blank line between them.
/// Returns the lines and whether items below were left out.
pub fn visible(
    items: &[AdviceItem],
    top: usize,
    width: usize,
    height: usize,
) -> (Vec<(usize, String)>, bool) {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate().skip(top) {
        let lines = wrap_item(item, width);
        let gap = usize::from(!out.is_empty());
        // The first item shown is shown even if taller than the pane (it
        // can then only be cut at the bottom, and the pane says so).
        if !out.is_empty() && out.len() + gap + lines.len() > height {
            return (out, true);
        }
        if gap == 1 {
            out.push((i, String::new()));
        }
        out.extend(lines.into_iter().map(|l| (i, l)));
    }
    let cut = out.len() > height;
    out.truncate(height);
    (out, cut)
}

/// The last useful first item: from it on, every remaining item fits in
/// the pane (scrolling further would only leave blank lines).
pub fn max_top(items: &[AdviceItem], width: usize, height: usize) -> usize {
    let mut used = 0;
    for (i, item) in items.iter().enumerate().rev() {
        let gap = usize::from(used > 0);
        used += wrap_item(item, width).len() + gap;
        if used > height {
            return (i + 1).min(items.len().saturating_sub(1));
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(level: &str, text: &str) -> AdviceItem {
        AdviceItem {
            level: level.into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_long_item_wraps_to_the_width_without_losing_words() {
        let text = "net.ipv4.tcp_tw_reuse=2 (the default) reuses TIME_WAIT ports for loopback \
                    only; 1 extends it to all destinations (needs TCP timestamps on both ends, \
                    helps only the connecting side)";
        let lines = wrap_item(&item("suggestion", text), 40);
        assert!(lines.len() > 3);
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:?}");
        let joined: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).collect();
        let first = format!("suggestion: {text}");
        let want: Vec<&str> = first.split_whitespace().collect();
        assert_eq!(joined, want);
    }

    #[test]
    fn only_whole_items_are_shown_and_the_rest_is_flagged() {
        let items = [
            item("warning", "one two three four five six"),
            item("note", "seven eight nine ten eleven"),
            item("note", "twelve"),
        ];
        // Width 20: item 0 takes 2 lines, item 1 takes 2, item 2 one.
        let (lines, more) = visible(&items, 0, 20, 4);
        assert_eq!(lines.iter().filter(|(i, _)| *i == 1).count(), 0);
        assert!(more);
        let (lines, more) = visible(&items, 1, 20, 10);
        assert_eq!(lines.first().map(|l| l.0), Some(1));
        assert!(!more);
        assert_eq!(lines.last().map(|l| l.1.as_str()), Some("note: twelve"));
    }

    #[test]
    fn scrolling_stops_once_the_last_items_fill_the_pane() {
        let items = [
            item("warning", "one two three four five six"),
            item("note", "seven eight nine ten eleven"),
            item("note", "twelve"),
        ];
        // Items 1 and 2 take 2 + 1 + 1 lines: they fit in 4, item 0 too does not.
        assert_eq!(max_top(&items, 20, 4), 1);
        assert_eq!(max_top(&items, 20, 100), 0);
        assert_eq!(max_top(&items, 20, 1), 2);
        assert_eq!(max_top(&[], 20, 4), 0);
    }
}
