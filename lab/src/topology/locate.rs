//! Line numbers for values the YAML parser does not span: a small
//! indentation-aware search over the file's text, good enough to point at
//! the node, link endpoint or bind a problem is about.

/// The file's lines, searched by key path.
pub(super) struct Locator<'a> {
    lines: Vec<&'a str>,
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start_matches([' ', '-']).len()
}

/// The key a line defines (`  - "a.b": x` -> `a.b`), if any.
fn key_of(l: &str) -> Option<&str> {
    let t = l.trim_start_matches([' ', '-']).trim_start();
    if t.starts_with('#') {
        return None;
    }
    let (k, _) = t.split_once(':')?;
    let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
    (!k.is_empty() && !k.contains(' ')).then_some(k)
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '/')
}

/// Whether `line` holds `value` as a whole token.
fn holds(line: &str, value: &str) -> bool {
    let mut from = 0;
    while let Some(i) = line[from..].find(value) {
        let s = from + i;
        let e = s + value.len();
        let before = line[..s].chars().next_back().is_none_or(|c| !is_word(c));
        let after = line[e..].chars().next().is_none_or(|c| !is_word(c));
        if before && after {
            return true;
        }
        from = s + 1;
    }
    false
}

impl<'a> Locator<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Locator {
            lines: text.lines().collect(),
        }
    }

    /// Index range (start, end, indent of its key) of the block under `path`.
    fn block(&self, path: &[&str]) -> Option<(usize, usize, Option<usize>)> {
        let (mut start, mut end, mut ind) = (0, self.lines.len(), None::<usize>);
        for key in path {
            let mut found = None;
            for i in start..end {
                let l = self.lines[i];
                if l.trim().is_empty() {
                    continue;
                }
                if ind.is_some_and(|k| indent(l) <= k) {
                    continue;
                }
                if key_of(l) == Some(key) {
                    found = Some(i);
                    break;
                }
            }
            let i = found?;
            let k = indent(self.lines[i]);
            let mut j = i + 1;
            while j < end {
                let l = self.lines[j];
                if !l.trim().is_empty() && !l.trim_start().starts_with('#') && indent(l) <= k {
                    break;
                }
                j += 1;
            }
            start = i + 1;
            end = j;
            ind = Some(k);
        }
        Some((start, end, ind))
    }

    /// 1-based line of `key` under `path`; falls back to the deepest part
    /// of the path found, then line 1.
    pub(super) fn key_line(&self, path: &[&str], key: &str) -> usize {
        let mut full = path.to_vec();
        full.push(key);
        for n in (0..=full.len()).rev() {
            if n == 0 {
                break;
            }
            if let Some((start, _, _)) = self.block(&full[..n]) {
                return start; // start is the key's index + 1
            }
        }
        1
    }

    /// 1-based line of the `n`-th line holding `value` under `path`.
    pub(super) fn nth_value_line(&self, path: &[&str], value: &str, n: usize) -> usize {
        let Some((start, end, _)) = self.block(path) else {
            return self.key_line(path, "");
        };
        (start..end)
            .filter(|&i| holds(self.lines[i], value))
            .nth(n)
            .map(|i| i + 1)
            .unwrap_or(start)
    }

    /// 1-based line of the first line holding `value` under `path`.
    pub(super) fn value_line(&self, path: &[&str], value: &str) -> usize {
        self.nth_value_line(path, value, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y: &str = "name: t\ntopology:\n  nodes:\n    tor1:\n      kind: linux\n    h1:\n      kind: linux\n  links:\n    - endpoints: [\"tor1:eth1\", \"h1:eth0\"]\n    - endpoints: [\"tor1:eth10\", \"h1:eth1\"]\n";

    #[test]
    fn finds_nested_keys_and_tokens() {
        let l = Locator::new(Y);
        assert_eq!(l.key_line(&[], "name"), 1);
        assert_eq!(l.key_line(&["topology", "nodes"], "h1"), 6);
        assert_eq!(l.key_line(&["topology", "nodes", "h1"], "kind"), 7);
        assert_eq!(l.value_line(&["topology", "links"], "tor1:eth10"), 10);
        assert_eq!(l.value_line(&["topology", "links"], "tor1:eth1"), 9);
        assert_eq!(l.nth_value_line(&["topology", "links"], "h1:eth0", 0), 9);
    }

    #[test]
    fn missing_key_falls_back_to_parent() {
        let l = Locator::new(Y);
        assert_eq!(l.key_line(&["topology", "nodes"], "nope"), 3);
    }
}
