//! Startup errors for the config: every one names the file, line, column and key path.

use std::fmt;

/// A config error, rendered as `file:line:col: key.path: message` (ripgrep-style prose).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// `routes[0].auth.kind`; empty for syntax errors that belong to no key.
    pub key_path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: the file itself could not be read, so no position means anything.
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        f.write_str(&self.message)
    }
}

/// A key path inside the document, built while validating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        KeyPath(segments)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        KeyPath(segments)
    }

    /// Parses the `a.b[2].c` form that `serde_path_to_error` prints.
    pub fn parse(text: &str) -> Self {
        let mut path = KeyPath::root();
        for part in text
            .split('.')
            .filter(|part| !part.is_empty() && *part != "?")
        {
            let (key, indexes) = match part.find('[') {
                Some(at) => (&part[..at], &part[at..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                path = path.key(key);
            }
            for index in indexes
                .split(['[', ']'])
                .filter_map(|digits| digits.parse::<usize>().ok())
            {
                path = path.index(index);
            }
        }
        path
    }

    /// The byte span of this key (or of the nearest enclosing key that exists) in the document.
    pub fn locate(&self, document: &toml_edit::ImDocument<&str>) -> Option<std::ops::Range<usize>> {
        self.walk(document).0
    }

    /// The byte span of this key's value, where the mistake usually is (`kind = "basci"` points
    /// at `"basci"`); a table, or a key that is missing, is located as by [`KeyPath::locate`].
    pub fn locate_value(
        &self,
        document: &toml_edit::ImDocument<&str>,
    ) -> Option<std::ops::Range<usize>> {
        let (key, value) = self.walk(document);
        value.or(key)
    }

    /// The span of the last key found on the path, and of the value the whole path names when
    /// it names a plain value.
    fn walk(
        &self,
        document: &toml_edit::ImDocument<&str>,
    ) -> (
        Option<std::ops::Range<usize>>,
        Option<std::ops::Range<usize>>,
    ) {
        let mut node = Node::Table(document.as_table());
        let mut best = None;
        for segment in &self.0 {
            let next = match (segment, node) {
                (Segment::Key(key), node) => node.table_like().and_then(|table| {
                    let (key_repr, item) = table.get_key_value(key)?;
                    best = key_repr.span().or(best.clone());
                    Some(Node::Item(item))
                }),
                (Segment::Index(index), Node::Item(toml_edit::Item::ArrayOfTables(tables))) => {
                    tables.get(*index).map(|table| {
                        best = table.span().or(best.clone());
                        Node::Table(table)
                    })
                }
                (Segment::Index(index), Node::Item(item)) => item
                    .as_array()
                    .and_then(|array| array.get(*index))
                    .map(|value| {
                        best = value.span().or(best.clone());
                        Node::Value(value)
                    }),
                (Segment::Index(_), _) => None,
            };
            match next {
                Some(next) => node = next,
                None => return (best, None),
            }
        }
        let value = match node {
            Node::Item(toml_edit::Item::Value(value)) | Node::Value(value) => value.span(),
            _ => None,
        };
        (best, value)
    }
}

/// Where a key-path walk stands: `toml_edit` hands out tables of an array of tables and
/// values of an inline array as different types from items.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn table_like(self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Table(table) => Some(table),
            Node::Value(value) => value
                .as_inline_table()
                .map(|t| t as &dyn toml_edit::TableLike),
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
