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

/// One step of a path into a TOML document: a key, or an index into an
/// array (of tables, for `[[pool]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// 1-based line and column of what `path` names in `text`: the key of the
/// last step that exists (an absent optional key points at its table),
/// `None` when not even the first step is there or `text` is not TOML.
/// Checks that span several keys (an overlap, a missing companion key)
/// point at the key they name.
pub fn locate(text: &str, path: &[Seg<'_>]) -> Option<(usize, usize)> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut best: Option<usize> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for seg in path {
        let next = match (*seg, table, value) {
            (Seg::Key(k), Some(t), _) => t
                .iter()
                .find(|(key, _)| key.get_ref().as_ref() == k)
                .map(|(key, v)| (key.span().start, v)),
            (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(i).map(|v| (v.span().start, v)),
            _ => None,
        };
        let Some((at, v)) = next else { break };
        best = Some(at);
        let v = v.get_ref();
        table = match v {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
        value = Some(v);
    }
    best.map(|pos| line_col(text, pos))
}

#[cfg(test)]
mod tests {
    use super::{Seg, line_col, locate};

    #[test]
    fn locate_follows_keys_and_array_tables() {
        let t = "[node]\nname = \"h\"\n\n[[pool]]\ncidr = \"10.0.0.0/8\"\n[[pool]]\ncidr = \"10.1.0.0/16\"\nblock_size = 40\n";
        use Seg::{Index, Key};
        assert_eq!(locate(t, &[Key("node"), Key("name")]), Some((2, 1)));
        assert_eq!(
            locate(t, &[Key("pool"), Index(1), Key("block_size")]),
            Some((8, 1))
        );
        assert_eq!(
            locate(t, &[Key("pool"), Index(1), Key("cidr")]),
            Some((7, 1))
        );
        // An absent key: the deepest part that exists.
        let (l, _) = locate(t, &[Key("pool"), Index(0), Key("block_size")]).unwrap();
        assert!((4..=5).contains(&l), "line {l}");
        assert_eq!(locate(t, &[Key("api"), Key("socket")]), None);
        assert_eq!(locate("not = = toml", &[Key("not")]), None);
    }

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
