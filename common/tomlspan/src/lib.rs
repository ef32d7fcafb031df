//! flatnet-tomlspan: where in a configuration text an error is.
//!
//! Parsers (TOML's included) report a byte offset; people want
//! `file:line:column`. Both configuration parsers (flatnetd's and
//! flatnet-bgpd's) use this one helper so their positions agree.

/// 1-based line and column (in characters, not bytes) of byte offset `pos`
/// in `text`. An offset past the end means the end; one inside a multi-byte
/// character means the start of that character.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit_once('\n')
        .map_or(before, |(_, l)| l)
        .chars()
        .count()
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn columns_are_characters_and_offsets_are_clamped() {
        // "é" is two bytes: the offset after it is column 2.
        assert_eq!(line_col("é=1", 2), (1, 2));
        // Inside "é": the start of the character.
        assert_eq!(line_col("x\né", 3), (2, 1));
        assert_eq!(line_col("a\nb", 99), (2, 2));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
