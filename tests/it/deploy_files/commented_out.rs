//! Commented-out options in a config's text, told from prose, and the text with a block of
//! them uncommented.
//!
//! Which comment lines are commented-out options (the rule): a line that is `# ` (a hash and
//! one space) followed by text that is TOML on its own: a table header (`# [retry_tiers]`,
//! `# [[catalogs]]`) or a `key = value` line (`# create_topics = false`). A value that opens a
//! multi-line string (`# transform = """`) takes the commented lines after it up to the one
//! that closes it. Prose is not TOML, and an example indented inside a paragraph
//! (`#   "sasl.username" = ...`, more than one space) belongs to the paragraph. Consecutive
//! option lines make one block (a section with its keys, or options that go together); each
//! block is uncommented on its own, as a reader enables it: blocks may be alternatives to
//! each other (two forms of `auth`), and a commented-out table header would capture the
//! options commented out after it. A block's `key = value` whose key its table already sets
//! is an alternative to that line (a list of signing secrets while one is rotated): it
//! replaces it.

use std::ops::Range;

/// The text of a comment line after `# `, when it is written as an option would be.
fn after_hash(line: &str) -> Option<&str> {
    let text = line.trim_start().strip_prefix("# ")?;
    (!text.starts_with(' ')).then_some(text)
}

/// Whether `text` is TOML holding something: a table header or a key with its value.
fn is_toml(text: &str) -> bool {
    text.parse::<toml::Table>().is_ok() && !text.trim().is_empty()
}

/// Where the commented-out option starting at line `i` ends (exclusive), if it is one.
fn option_at(lines: &[&str], i: usize) -> Option<usize> {
    let mut text = after_hash(lines[i])?.to_string();
    let mut end = i + 1;
    while !is_toml(&text) {
        // Only an open multi-line string goes on to the next line.
        let open = text.matches("\"\"\"").count() % 2 == 1 || text.matches("'''").count() % 2 == 1;
        let next = lines.get(end).and_then(|l| uncommented(l));
        text = format!("{text}\n{}", next.filter(|_| open)?);
        end += 1;
    }
    Some(end)
}

/// A comment line without its hash (`#` alone is an empty line of a multi-line string).
fn uncommented(line: &str) -> Option<&str> {
    let text = line.trim_start().strip_prefix('#')?;
    Some(text.strip_prefix(' ').unwrap_or(text))
}

/// The blocks of commented-out options: ranges of consecutive option lines.
pub(super) fn commented_blocks(text: &str) -> Vec<Range<usize>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(end) = option_at(&lines, i) else {
            i += 1;
            continue;
        };
        match blocks.last_mut() {
            Some(last) if last.end == i => last.end = end,
            _ => blocks.push(i..end),
        }
        i = end;
    }
    blocks
}

/// The key a TOML line sets (`"sasl.mechanism" = ...` → `sasl.mechanism`), if it sets one.
fn assigned_key(line: &str) -> Option<String> {
    let line = line.trim();
    if line.starts_with(['#', '[']) {
        return None;
    }
    let (key, _) = line.split_once('=')?;
    Some(key.trim().trim_matches('"').to_string())
}

/// `text` with the block's lines uncommented; a line of its table that sets a key the block
/// sets is commented out (the block is its alternative).
pub(super) fn uncomment(text: &str, block: &Range<usize>) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for i in block.clone() {
        lines[i] = uncommented(&lines[i]).unwrap_or_default().to_string();
    }
    let header = |l: &String| l.trim_start().starts_with('[');
    for i in block.clone() {
        let Some(key) = assigned_key(&lines[i]) else {
            continue;
        };
        let start = (0..i)
            .rev()
            .find(|j| header(&lines[*j]))
            .map_or(0, |j| j + 1);
        let end = (i + 1..lines.len())
            .find(|j| header(&lines[*j]))
            .unwrap_or(lines.len());
        for j in (start..end).filter(|j| !block.contains(j)) {
            if assigned_key(&lines[j]).as_deref() == Some(key.as_str()) {
                lines[j] = format!("# {}", lines[j]);
            }
        }
    }
    lines.join("\n") + "\n"
}

#[test]
fn commented_out_options_are_told_from_prose() {
    let text = "[kafka.options]\n\
                # Quote librdkafka's keys, e.g.\n\
                #   \"sasl.username\" = \"relay\"\n\
                # \"security.protocol\" = \"SASL_SSL\"\n\
                # sasl.mechanism = \"PLAIN\"\n\
                # max_elapsed: 24h by default.\n\
                # [retry_tiers]\n\
                # create_topics = false\n\
                [[targets]]\n\
                signing_secret = \"a\"\n\
                # While rotating:\n\
                # signing_secret = [\"a\", \"b\"]\n\
                # transform = \"\"\"\n\
                # del(.user.email)\n\
                #\n\
                # \"\"\"\n";
    let blocks = commented_blocks(text);
    assert_eq!(blocks, [3..5, 6..8, 11..16]);
    let rotated = uncomment(text, &blocks[2]);
    assert!(
        rotated.contains("\n# signing_secret = \"a\"\n"),
        "{rotated}"
    );
    assert!(
        rotated.contains("\nsigning_secret = [\"a\", \"b\"]\n"),
        "{rotated}"
    );
    assert!(
        rotated.ends_with("transform = \"\"\"\ndel(.user.email)\n\n\"\"\"\n"),
        "{rotated}"
    );
    let sasl = uncomment(text, &blocks[0]);
    assert!(sasl.contains("\nsasl.mechanism = \"PLAIN\"\n"), "{sasl}");
    assert!(
        sasl.contains("\n#   \"sasl.username\""),
        "prose stays: {sasl}"
    );
}
