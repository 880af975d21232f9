//! Where a key is written in a YAML text, for errors and warnings that name
//! a file and line (docs/configuration.md, introduction).
//!
//! The text is read by a YAML parser that keeps positions (`saphyr-parser`),
//! so a key is found where YAML puts it: inside flow mappings
//! (`dcs: {ttl: 30,\n  loop_wait: 10}`), after block scalars, and never in
//! the text of a block scalar (`post_init: |` followed by `key: value`
//! lines), whatever the indentation.

use saphyr_parser::{Event, Parser, Span};

/// The 1-based line of the key at `path` in the first document of `text`;
/// `None` when it is not there (or the text is not YAML). Sequences are
/// transparent: the keys of `- key: v` items count as children of the
/// sequence's key, and a path ending at a sequence's key names its line.
pub(crate) fn find_line(text: &str, path: &[String]) -> Option<usize> {
    if path.is_empty() {
        return None;
    }
    let mut walker = Walker {
        events: Parser::new_from_str(text).map_while(Result::ok),
    };
    loop {
        let (event, _) = walker.events.next()?;
        match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => continue,
            node => return walker.node(node, Some(path)),
        }
    }
}

struct Walker<I> {
    events: I,
}

impl<'t, I: Iterator<Item = (Event<'t>, Span)>> Walker<I> {
    /// Consume the node that starts with `first`. `want`: the rest of the
    /// path when the keys so far matched it (`None`: only skip the node).
    /// The line of the wanted key, once found.
    fn node(&mut self, first: Event<'t>, want: Option<&[String]>) -> Option<usize> {
        match first {
            Event::MappingStart(..) => loop {
                let (key, span) = self.events.next()?;
                let name = match key {
                    Event::MappingEnd => return None,
                    Event::Scalar(name, ..) => Some(name),
                    // A complex key (a mapping or sequence as key): skipped.
                    other => {
                        self.node(other, None);
                        None
                    }
                };
                let (value, _) = self.events.next()?;
                let rest = match (want, name) {
                    (Some([head, rest @ ..]), Some(name)) if *head == *name => Some(rest),
                    _ => None,
                };
                match rest {
                    Some([]) => return Some(span.start.line()),
                    rest => {
                        if let Some(line) = self.node(value, rest) {
                            return Some(line);
                        }
                    }
                }
            },
            Event::SequenceStart(..) => loop {
                let (item, _) = self.events.next()?;
                if matches!(item, Event::SequenceEnd) {
                    return None;
                }
                if let Some(line) = self.node(item, want) {
                    return Some(line);
                }
            },
            // Scalars and aliases hold no keys.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tree::split_path;

    fn line(text: &str, path: &str) -> Option<usize> {
        find_line(text, &split_path(path))
    }

    #[test]
    fn block_style() {
        let text = "scope: s\n# comment\npostgresql:\n  listen: x\n  authentication:\n    replication:\n      username: r\nbootstrap:\n  initdb:\n  - encoding: UTF8\n  - data-checksums\n";
        assert_eq!(line(text, "scope"), Some(1));
        assert_eq!(line(text, "postgresql.listen"), Some(4));
        assert_eq!(
            line(text, "postgresql.authentication.replication.username"),
            Some(7)
        );
        assert_eq!(line(text, "bootstrap.initdb[0].encoding"), Some(10));
        assert_eq!(line(text, "bootstrap.initdb[1]"), Some(9));
        assert_eq!(line(text, "listen"), None);
        assert_eq!(line(text, ""), None);
    }

    #[test]
    fn block_scalars_hold_no_keys() {
        let text = "\
bootstrap:
  post_init: |
    dcs:
      ttl: 5
  dcs:
    ttl: 30
postgresql:
  callbacks:
    on_start: >-
      listen: not a key
  listen: '*:5432'
";
        assert_eq!(line(text, "bootstrap.post_init"), Some(2));
        assert_eq!(line(text, "bootstrap.post_init.dcs"), None);
        assert_eq!(line(text, "bootstrap.dcs.ttl"), Some(6));
        assert_eq!(line(text, "postgresql.callbacks.on_start"), Some(9));
        assert_eq!(line(text, "postgresql.listen"), Some(11));
    }

    #[test]
    fn flow_mappings_and_sequences() {
        let text = "\
scope: s
bootstrap:
  dcs: {ttl: 30,
        loop_wait: 10,
        postgresql: {parameters: {max_connections: 100}}}
  initdb: [{encoding: UTF8}, data-checksums]
postgresql: {listen: '*:5432', authentication: {
    superuser: {username: postgres}}}
";
        assert_eq!(line(text, "bootstrap.dcs"), Some(3));
        assert_eq!(line(text, "bootstrap.dcs.ttl"), Some(3));
        assert_eq!(line(text, "bootstrap.dcs.loop_wait"), Some(4));
        assert_eq!(
            line(text, "bootstrap.dcs.postgresql.parameters.max_connections"),
            Some(5)
        );
        assert_eq!(line(text, "bootstrap.initdb[0].encoding"), Some(6));
        assert_eq!(line(text, "postgresql.listen"), Some(7));
        assert_eq!(
            line(text, "postgresql.authentication.superuser.username"),
            Some(8)
        );
    }

    #[test]
    fn quoted_keys_documents_anchors() {
        let text = "\
--- # one document
\"scope\": s
base: &b {port: 1}
'restapi':
  <<: *b
  listen: \"x: y\" # a comment: here
? [complex, key]
: 1
name: n
";
        assert_eq!(line(text, "scope"), Some(2));
        assert_eq!(line(text, "base.port"), Some(3));
        assert_eq!(line(text, "restapi.listen"), Some(6));
        assert_eq!(line(text, "name"), Some(9));
        assert_eq!(
            line(text, "restapi.port"),
            None,
            "merged, not written there"
        );
    }

    #[test]
    fn not_yaml_finds_nothing() {
        assert_eq!(line("a: [1, 2\nb: 1\n", "b"), None);
        assert_eq!(line("", "a"), None);
    }
}
