//! Reading TOML values into typed fields while collecting every problem.
//!
//! `toml-span` gives each value its byte range; this module turns wrong types, missing keys and
//! unknown keys into [`Diagnostic`]s and keeps going, so one `pic2 check` reports everything.

use crate::diagnostic::{nearest, Code, Diagnostic};
use crate::source::{Span, Spanned};
use toml_span::value::{Table as TomlTable, ValueInner};
use toml_span::Value;

/// Collected diagnostics, threaded through every reader.
pub(crate) type Sink = Vec<Diagnostic>;

/// A value that can be read from one TOML value, reporting why not into the sink.
pub(crate) trait FromToml: Sized {
    fn from_toml(value: Value<'_>, sink: &mut Sink) -> Option<Self>;
}

pub(crate) fn type_name(v: &ValueInner<'_>) -> &'static str {
    match v {
        ValueInner::String(_) => "a string",
        ValueInner::Integer(_) => "an integer",
        ValueInner::Float(_) => "a number",
        ValueInner::Boolean(_) => "a boolean",
        ValueInner::Array(_) => "an array",
        ValueInner::Table(_) => "a table",
    }
}

pub(crate) fn wrong_type(sink: &mut Sink, span: Span, want: &str, found: &ValueInner<'_>) {
    sink.push(
        Diagnostic::new(
            Code::WrongType,
            span,
            format!("expected {want}, found {}", type_name(found)),
        )
        .label(format!("this should be {want}")),
    );
}

impl FromToml for String {
    fn from_toml(mut value: Value<'_>, sink: &mut Sink) -> Option<Self> {
        let span = value.span.into();
        match value.take() {
            ValueInner::String(s) => Some(s.into_owned()),
            other => {
                wrong_type(sink, span, "a string", &other);
                None
            }
        }
    }
}

impl FromToml for bool {
    fn from_toml(mut value: Value<'_>, sink: &mut Sink) -> Option<Self> {
        let span = value.span.into();
        match value.take() {
            ValueInner::Boolean(b) => Some(b),
            other => {
                wrong_type(sink, span, "true or false", &other);
                None
            }
        }
    }
}

macro_rules! unsigned {
    ($t:ty) => {
        impl FromToml for $t {
            fn from_toml(mut value: Value<'_>, sink: &mut Sink) -> Option<Self> {
                let span: Span = value.span.into();
                match value.take() {
                    ValueInner::Integer(i) => match <$t>::try_from(i) {
                        Ok(n) => Some(n),
                        Err(_) => {
                            sink.push(
                                Diagnostic::new(
                                    Code::InvalidValue,
                                    span,
                                    format!("{i} is out of range: expected 0 to {}", <$t>::MAX),
                                )
                                .label("out of range"),
                            );
                            None
                        }
                    },
                    other => {
                        wrong_type(sink, span, "a whole number", &other);
                        None
                    }
                }
            }
        }
    };
}
unsigned!(u16);
unsigned!(u32);
unsigned!(u64);

/// A non-negative decimal amount (prices, sizes); integers are accepted too.
impl FromToml for f64 {
    fn from_toml(mut value: Value<'_>, sink: &mut Sink) -> Option<Self> {
        let span: Span = value.span.into();
        let n = match value.take() {
            ValueInner::Float(f) => f,
            ValueInner::Integer(i) => i as f64,
            other => {
                wrong_type(sink, span, "a number", &other);
                return None;
            }
        };
        if n.is_finite() && n >= 0.0 {
            Some(n)
        } else {
            sink.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    span,
                    format!("{n} is not a non-negative number"),
                )
                .label("must be zero or more"),
            );
            None
        }
    }
}

impl<T: FromToml> FromToml for Spanned<T> {
    fn from_toml(value: Value<'_>, sink: &mut Sink) -> Option<Self> {
        let span = value.span.into();
        T::from_toml(value, sink).map(|v| Spanned::new(v, span))
    }
}

/// Arrays: every element is read, so one bad element does not hide the others.
impl<T: FromToml> FromToml for Vec<T> {
    fn from_toml(mut value: Value<'_>, sink: &mut Sink) -> Option<Self> {
        let span = value.span.into();
        match value.take() {
            ValueInner::Array(items) => {
                let before = sink.len();
                let out: Vec<T> = items
                    .into_iter()
                    .filter_map(|v| T::from_toml(v, sink))
                    .collect();
                (sink.len() == before).then_some(out)
            }
            other => {
                wrong_type(sink, span, "an array", &other);
                None
            }
        }
    }
}

/// A string parsed by a checking constructor that explains itself on failure.
pub(crate) fn parse_str<T>(
    value: Value<'_>,
    sink: &mut Sink,
    parse: impl FnOnce(&str, Span) -> Result<T, Diagnostic>,
) -> Option<T> {
    let span: Span = value.span.into();
    let s = String::from_toml(value, sink)?;
    match parse(&s, span) {
        Ok(v) => Some(v),
        Err(d) => {
            sink.push(d);
            None
        }
    }
}

/// A TOML table being read: keys are taken one by one; what is left at the end is unknown.
pub(crate) struct Table<'de> {
    table: TomlTable<'de>,
    pub span: Span,
    /// How the table is written in the file, for messages: `[accounts.velobs]`.
    pub name: String,
    expected: Vec<&'static str>,
}

impl<'de> Table<'de> {
    /// Reads `value` as a table, or reports that it is not one.
    pub fn new(mut value: Value<'de>, name: impl Into<String>, sink: &mut Sink) -> Option<Self> {
        let span: Span = value.span.into();
        match value.take() {
            ValueInner::Table(table) => Some(Table {
                table,
                span,
                name: name.into(),
                expected: Vec::new(),
            }),
            other => {
                wrong_type(sink, span, "a table", &other);
                None
            }
        }
    }

    fn take(&mut self, key: &'static str) -> Option<Value<'de>> {
        self.expected.push(key);
        self.table.remove(key)
    }

    /// A key that must be present.
    pub fn req<T: FromToml>(&mut self, key: &'static str, sink: &mut Sink) -> Option<T> {
        match self.take(key) {
            Some(v) => T::from_toml(v, sink),
            None => {
                sink.push(
                    Diagnostic::new(
                        Code::MissingKey,
                        self.span,
                        format!("{} has no `{key}`", self.name),
                    )
                    .label(format!("`{key}` is required here"))
                    .hint(format!("add `{key} = …` to {}", self.name)),
                );
                None
            }
        }
    }

    /// A key that may be absent.
    pub fn opt<T: FromToml>(&mut self, key: &'static str, sink: &mut Sink) -> Option<T> {
        self.take(key).and_then(|v| T::from_toml(v, sink))
    }

    /// A key whose string value goes through a checking constructor.
    pub fn opt_with<T>(
        &mut self,
        key: &'static str,
        sink: &mut Sink,
        parse: impl FnOnce(&str, Span) -> Result<T, Diagnostic>,
    ) -> Option<T> {
        self.take(key).and_then(|v| parse_str(v, sink, parse))
    }

    /// A raw value, for keys whose shape varies (`tls = "acme"` or `tls = { cert = … }`).
    pub fn opt_value(&mut self, key: &'static str) -> Option<Value<'de>> {
        self.take(key)
    }

    /// The sub-tables of a table of tables (`[accounts.X]`), with each key's span.
    pub fn entries(self) -> Vec<(Spanned<String>, Value<'de>)> {
        self.table
            .into_iter()
            .map(|(k, v)| (Spanned::new(k.name.into_owned(), k.span.into()), v))
            .collect()
    }

    /// Reports every key nobody asked for, with the nearest known key as a hint.
    pub fn finish(self, sink: &mut Sink) {
        for (key, _) in self.table {
            let name = key.name.as_ref();
            let mut d = Diagnostic::new(
                Code::UnknownKey,
                key.span.into(),
                format!("unknown key `{name}` in {}", self.name),
            )
            .label("not a key pic2 knows here");
            d = match nearest(name, self.expected.iter().copied()) {
                Some(near) => d.hint(format!("did you mean `{near}`?")),
                None => d.hint(format!(
                    "the keys of {} are: {}",
                    self.name,
                    self.expected.join(", ")
                )),
            };
            sink.push(d);
        }
    }
}
