//! Finding the version in a file's text and setting it, without I/O.
//!
//! A pattern is literal text around `{version}` (`newTag: {version}`,
//! `image: shop/checkout:{version}`, `"tag": "{version}"`). The version is
//! what follows the text before `{version}` on the same line: a non-empty
//! run without whitespace, up to the text after `{version}` (the first
//! time it follows) or, when nothing follows `{version}` in the pattern, up
//! to the end of the run. Every match in the file counts: the same image
//! in two containers is set back in both.

use crate::config::VERSION;

/// A pattern, split at `{version}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    before: String,
    after: String,
}

impl Pattern {
    /// `text` split at its one `{version}`, which the config checked.
    pub fn new(text: &str) -> Pattern {
        let (before, after) = text.split_once(VERSION).unwrap_or((text, ""));
        Pattern {
            before: before.to_string(),
            after: after.to_string(),
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{VERSION}{}", self.before, self.after)
    }
}

/// What setting the version does to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Every match already holds the version asked for.
    Unchanged,
    /// The new text, and how many matches changed.
    Changed { text: String, matches: usize },
}

/// Why the version cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("pattern {0} matches nothing")]
    NotFound(String),
    /// A version that is neither: a newer change than the one rolled back,
    /// which a rollback must not undo.
    #[error("found version {found:?}, neither from_version {from:?} nor to_version {to:?}: the file changed since that deploy; nothing committed")]
    Other {
        found: String,
        from: String,
        to: String,
    },
}

/// The byte ranges of the versions `p` finds in `text`.
fn versions(text: &str, p: &Pattern) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..].find(&p.before) {
        let start = at + i + p.before.len();
        let line = &text[start..];
        let line = &line[..line.find('\n').unwrap_or(line.len())];
        let run = line
            .find(char::is_whitespace)
            .map_or(line, |end| &line[..end]);
        let len = if p.after.is_empty() {
            Some(run.len())
        } else {
            line.find(&p.after).filter(|&n| n <= run.len())
        };
        match len.filter(|&n| n > 0) {
            Some(n) => {
                found.push((start, start + n));
                at = start + n + p.after.len();
            }
            None => at = at + i + p.before.len().max(1),
        }
        // `before` is never empty (the config checks), so `at` moves on.
        if at > text.len() {
            break;
        }
    }
    found
}

/// `text` with the version `p` finds set to `to`: every match must hold
/// `from` or `to`.
pub fn set_version(text: &str, p: &Pattern, from: &str, to: &str) -> Result<Edit, Refusal> {
    let found = versions(text, p);
    if found.is_empty() {
        return Err(Refusal::NotFound(p.to_string()));
    }
    if let Some(&(s, e)) = found
        .iter()
        .find(|&&(s, e)| ![from, to].contains(&&text[s..e]))
    {
        return Err(Refusal::Other {
            found: text[s..e].to_string(),
            from: from.to_string(),
            to: to.to_string(),
        });
    }
    let stale: Vec<_> = found
        .into_iter()
        .filter(|&(s, e)| &text[s..e] != to)
        .collect();
    if stale.is_empty() {
        return Ok(Edit::Unchanged);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for &(s, e) in &stale {
        out.push_str(&text[last..s]);
        out.push_str(to);
        last = e;
    }
    out.push_str(&text[last..]);
    Ok(Edit::Changed {
        text: out,
        matches: stale.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUSTOMIZATION: &str = "images:\n- name: shop/checkout\n  newTag: v2 # set by CI\n- name: shop/cart\n  newTag: v7\n";

    fn set(text: &str, pattern: &str) -> Result<Edit, Refusal> {
        set_version(text, &Pattern::new(pattern), "v2", "v1")
    }

    #[test]
    fn a_version_up_to_whitespace_or_the_text_after_it() {
        assert_eq!(
            versions(KUSTOMIZATION, &Pattern::new("newTag: {version}")).len(),
            2
        );
        let Edit::Changed { text, matches } =
            set("image: shop/checkout:v2\n", "shop/checkout:{version}").unwrap()
        else {
            panic!()
        };
        assert_eq!((text.as_str(), matches), ("image: shop/checkout:v1\n", 1));
        let Edit::Changed { text, .. } =
            set("{\"tag\": \"v2\", \"x\": \"v2\"}", "\"tag\": \"{version}\"").unwrap()
        else {
            panic!()
        };
        assert_eq!(text, "{\"tag\": \"v1\", \"x\": \"v2\"}");
        // The text after {version} must follow on the same run.
        assert_eq!(
            set("tag: \"v2 x\"\n", "tag: \"{version}\""),
            Err(Refusal::NotFound("tag: \"{version}\"".into()))
        );
        // An empty version is no match.
        assert!(set("newTag: \nnewTag:v2", "newTag: {version}").is_err());
    }

    #[test]
    fn every_match_is_set_and_a_version_already_there_is_nothing_to_do() {
        let two = "a: img:v2\nb: img:v2\n";
        assert_eq!(
            set(two, "img:{version}"),
            Ok(Edit::Changed {
                text: "a: img:v1\nb: img:v1\n".into(),
                matches: 2
            })
        );
        assert_eq!(set("a: img:v1\n", "img:{version}"), Ok(Edit::Unchanged));
        // Half done (a person fixed one): the rest.
        assert_eq!(
            set("a: img:v1\nb: img:v2\n", "img:{version}"),
            Ok(Edit::Changed {
                text: "a: img:v1\nb: img:v1\n".into(),
                matches: 1
            })
        );
    }

    #[test]
    fn a_newer_version_or_no_match_is_refused() {
        assert_eq!(
            set(KUSTOMIZATION, "newTag: {version}"),
            Err(Refusal::Other {
                found: "v7".into(),
                from: "v2".into(),
                to: "v1".into()
            })
        );
        // Naming the image on its line sets that one only.
        let inline = "- {name: shop/checkout, newTag: v2}\n- {name: shop/cart, newTag: v7}\n";
        assert_eq!(
            set(inline, "{name: shop/checkout, newTag: {version}}"),
            Ok(Edit::Changed {
                text: inline.replace("newTag: v2", "newTag: v1"),
                matches: 1
            })
        );
        let only_checkout = "name: shop/checkout\n  newTag: v3\n";
        assert!(matches!(
            set(only_checkout, "newTag: {version}"),
            Err(Refusal::Other { .. })
        ));
        assert_eq!(
            set(KUSTOMIZATION, "tag: {version}\""),
            Err(Refusal::NotFound("tag: {version}\"".into()))
        );
    }
}
