//! The connector registry: `type = "…"` in a pipeline's `[source]` or
//! `[[sinks]]` table names a factory that parses the rest of the table into
//! its own configuration and builds the connector.
//!
//! Connectors register their factories ([`Registry::add_source`],
//! [`Registry::add_sink`]); the program that runs pipelines builds one
//! registry from what it was compiled with and hands it to the engine, which
//! only ever holds `Box<dyn Source>` and `Box<dyn SinkConnector>`.
//!
//! Parsing and building are apart: a table is first checked for its keys and
//! their types as written ([`Registry::parse_source`], before `${VAR}`
//! expansion, so errors point into the file), and built only once the values
//! are final ([`Registry::build_source`]). Building connects to nothing.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::{ChangeSource, Error, Result, SinkConnector, Source};

/// A connector as `sluice list` shows it.
#[derive(Debug, Clone)]
pub struct ConnectorInfo {
    /// The `type` that selects it.
    pub name: &'static str,
    /// Other spellings of `type` that select it (`postgresql`, `es`).
    pub aliases: &'static [&'static str],
    /// One line on what it reads or writes.
    pub summary: &'static str,
    /// Its keys, each with a line of help.
    pub options: &'static [(&'static str, &'static str)],
}

impl ConnectorInfo {
    /// A connector with no aliases and no options yet.
    pub const fn new(name: &'static str, summary: &'static str) -> Self {
        ConnectorInfo {
            name,
            aliases: &[],
            summary,
            options: &[],
        }
    }

    /// The same connector, also selected by `aliases`.
    pub const fn aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// The same connector with its keys documented.
    pub const fn options(mut self, options: &'static [(&'static str, &'static str)]) -> Self {
        self.options = options;
        self
    }

    fn answers(&self, kind: &str) -> bool {
        self.name.eq_ignore_ascii_case(kind) || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(kind))
    }
}

/// Builds sources of one `type`.
pub trait SourceFactory: Send + Sync {
    /// Name, aliases and options.
    fn info(&self) -> &ConnectorInfo;

    /// Checks the keys and types of a `[source]` table (without `type`).
    fn parse(&self, table: &toml::Table) -> Result<()>;

    /// Builds the source a table describes; `kind` is the `type` as written
    /// (one factory may answer several, such as `csv` and `parquet`).
    fn build(&self, kind: &str, table: &toml::Table) -> Result<Box<dyn Source>>;
}

/// Builds sinks of one `type`.
pub trait SinkFactory: Send + Sync {
    /// Name, aliases and options.
    fn info(&self) -> &ConnectorInfo;

    /// Checks the keys and types of a `[[sinks]]` table (without `type`).
    fn parse(&self, table: &toml::Table) -> Result<()>;

    /// Builds the sink a table describes; `kind` is the `type` as written.
    fn build(&self, kind: &str, table: &toml::Table) -> Result<Box<dyn SinkConnector>>;
}

/// A factory made of a configuration type `C` and a function building the
/// connector from it: what most connectors register.
struct Typed<C, F> {
    info: ConnectorInfo,
    build: F,
    _config: std::marker::PhantomData<fn() -> C>,
}

/// Deserializes a connector's configuration from its table; `role` (`source`,
/// `sinks`) prefixes the key of the error.
fn typed<C: DeserializeOwned>(role: &str, table: &toml::Table) -> Result<C> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| Error::config(role, e.message().to_string()))
}

impl<C, F> SourceFactory for Typed<C, F>
where
    C: DeserializeOwned,
    F: Fn(C, &str) -> Result<Box<dyn Source>> + Send + Sync,
{
    fn info(&self) -> &ConnectorInfo {
        &self.info
    }

    fn parse(&self, table: &toml::Table) -> Result<()> {
        typed::<C>("source", table).map(drop)
    }

    fn build(&self, kind: &str, table: &toml::Table) -> Result<Box<dyn Source>> {
        (self.build)(typed("source", table)?, kind)
    }
}

/// [`Typed`] for sinks; a separate type so one closure type cannot be both.
struct TypedSink<C, F>(Typed<C, F>);

impl<C, F> SinkFactory for TypedSink<C, F>
where
    C: DeserializeOwned,
    F: Fn(C, &str) -> Result<Box<dyn SinkConnector>> + Send + Sync,
{
    fn info(&self) -> &ConnectorInfo {
        &self.0.info
    }

    fn parse(&self, table: &toml::Table) -> Result<()> {
        typed::<C>("sinks", table).map(drop)
    }

    fn build(&self, kind: &str, table: &toml::Table) -> Result<Box<dyn SinkConnector>> {
        (self.0.build)(typed("sinks", table)?, kind)
    }
}

/// Builds a change source ([`ChangeSource`]) from a source table whose
/// `type` a source factory answers, for `sluice sync`.
type ChangeFactory = Arc<dyn Fn(&str, &toml::Table) -> Result<Box<dyn ChangeSource>> + Send + Sync>;

/// Every connector a program can run, by `type`.
#[derive(Clone, Default)]
pub struct Registry {
    sources: Vec<Arc<dyn SourceFactory>>,
    sinks: Vec<Arc<dyn SinkFactory>>,
    /// Change capture, by the source `type` it reads the changes of.
    changes: Vec<(&'static str, ChangeFactory)>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.source_types())
            .field("sinks", &self.sink_types())
            .finish()
    }
}

impl Registry {
    /// Registers a source whose table deserializes into `C`.
    pub fn add_source<C, F>(&mut self, info: ConnectorInfo, build: F)
    where
        C: DeserializeOwned + 'static,
        F: Fn(C, &str) -> Result<Box<dyn Source>> + Send + Sync + 'static,
    {
        self.add_source_factory(Arc::new(Typed {
            info,
            build,
            _config: std::marker::PhantomData,
        }));
    }

    /// Registers a sink whose table deserializes into `C`.
    pub fn add_sink<C, F>(&mut self, info: ConnectorInfo, build: F)
    where
        C: DeserializeOwned + 'static,
        F: Fn(C, &str) -> Result<Box<dyn SinkConnector>> + Send + Sync + 'static,
    {
        self.add_sink_factory(Arc::new(TypedSink(Typed {
            info,
            build,
            _config: std::marker::PhantomData,
        })));
    }

    /// Registers change capture for sources of `type` `kind`: `build`
    /// turns the same `[source]` table into a [`ChangeSource`].
    pub fn add_change_source<C, F>(&mut self, kind: &'static str, build: F)
    where
        C: DeserializeOwned + 'static,
        F: Fn(C) -> Result<Box<dyn ChangeSource>> + Send + Sync + 'static,
    {
        self.changes.retain(|(k, _)| *k != kind);
        self.changes
            .push((kind, Arc::new(move |_, table| build(typed("source", table)?))));
    }

    /// The change source a `[source]` table describes, for `sluice sync`;
    /// an error naming the types that have one when its type has none.
    pub fn build_change_source(&self, table: &toml::Table) -> Result<Box<dyn ChangeSource>> {
        let (kind, rest) = split_type(table, "source")?;
        let info = self.source_factory(kind)?.info();
        match self.changes.iter().find(|(k, _)| info.answers(k)) {
            Some((_, build)) => build(kind, &rest),
            None => Err(Error::config(
                "source.type",
                format!(
                    "`{kind}` has no change capture; sources with one: {}",
                    self.changes.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    /// Registers a source factory; a later one with the same name replaces it.
    pub fn add_source_factory(&mut self, factory: Arc<dyn SourceFactory>) {
        self.sources.retain(|f| f.info().name != factory.info().name);
        self.sources.push(factory);
    }

    /// Registers a sink factory; a later one with the same name replaces it.
    pub fn add_sink_factory(&mut self, factory: Arc<dyn SinkFactory>) {
        self.sinks.retain(|f| f.info().name != factory.info().name);
        self.sinks.push(factory);
    }

    /// The source factories, in registration order.
    pub fn sources(&self) -> impl Iterator<Item = &dyn SourceFactory> {
        self.sources.iter().map(|f| f.as_ref())
    }

    /// The sink factories, in registration order.
    pub fn sinks(&self) -> impl Iterator<Item = &dyn SinkFactory> {
        self.sinks.iter().map(|f| f.as_ref())
    }

    /// Every source `type` with its aliases, sorted.
    pub fn source_types(&self) -> Vec<&'static str> {
        names(self.sources.iter().map(|f| f.info()))
    }

    /// Every sink `type` with its aliases, sorted.
    pub fn sink_types(&self) -> Vec<&'static str> {
        names(self.sinks.iter().map(|f| f.info()))
    }

    /// Checks a `[source]` table as written: a known `type`, known keys,
    /// values of the right types.
    pub fn parse_source(&self, table: &toml::Table) -> Result<()> {
        let (kind, rest) = split_type(table, "source")?;
        self.source_factory(kind)?.parse(&rest)
    }

    /// Checks a `[[sinks]]` table as written.
    pub fn parse_sink(&self, table: &toml::Table) -> Result<()> {
        let (kind, rest) = split_type(table, "sinks")?;
        self.sink_factory(kind)?.parse(&rest)
    }

    /// Builds the source a `[source]` table describes. Connects to nothing.
    pub fn build_source(&self, table: &toml::Table) -> Result<Box<dyn Source>> {
        let (kind, rest) = split_type(table, "source")?;
        self.source_factory(kind)?.build(kind, &rest)
    }

    /// Builds the sink a `[[sinks]]` table describes. Creates nothing.
    pub fn build_sink(&self, table: &toml::Table) -> Result<Box<dyn SinkConnector>> {
        let (kind, rest) = split_type(table, "sinks")?;
        self.sink_factory(kind)?.build(kind, &rest)
    }

    fn source_factory(&self, kind: &str) -> Result<&dyn SourceFactory> {
        self.sources
            .iter()
            .find(|f| f.info().answers(kind))
            .map(|f| f.as_ref())
            .ok_or_else(|| unknown_type("source", kind, &self.source_types()))
    }

    fn sink_factory(&self, kind: &str) -> Result<&dyn SinkFactory> {
        self.sinks
            .iter()
            .find(|f| f.info().answers(kind))
            .map(|f| f.as_ref())
            .ok_or_else(|| unknown_type("sinks", kind, &self.sink_types()))
    }
}

fn names<'a>(infos: impl Iterator<Item = &'a ConnectorInfo>) -> Vec<&'static str> {
    let mut all: Vec<&'static str> = infos
        .flat_map(|i| std::iter::once(i.name).chain(i.aliases.iter().copied()))
        .collect();
    all.sort_unstable();
    all
}

/// The `type` of a connector table and the rest of its keys.
fn split_type<'a>(table: &'a toml::Table, role: &str) -> Result<(&'a str, toml::Table)> {
    let kind = match table.get("type") {
        Some(toml::Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(Error::config(
                format!("{role}.type"),
                format!("must be a string such as \"csv\", not {}", other.type_str()),
            ));
        }
        None => {
            return Err(Error::config(
                format!("{role}.type"),
                "missing: every connector table names its `type` (see `sluice list`)",
            ));
        }
    };
    let mut rest = table.clone();
    rest.remove("type");
    Ok((kind, rest))
}

fn unknown_type(role: &str, kind: &str, known: &[&str]) -> Error {
    Error::config(
        format!("{role}.type"),
        format!(
            "unknown {} type `{kind}`; this build has {} (see `sluice list`)",
            if role == "source" { "source" } else { "sink" },
            known.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StreamSpec, traits::ReadContext};
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Echo {
        rows: u32,
    }

    struct EchoSource(String);

    #[async_trait::async_trait]
    impl Source for EchoSource {
        fn name(&self) -> &str {
            &self.0
        }
        async fn discover(&self) -> Result<Vec<StreamSpec>> {
            Ok(Vec::new())
        }
        async fn read(&self, _: &StreamSpec, _: &crate::PartitionSpec, _: ReadContext) -> Result<()> {
            Ok(())
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::default();
        r.add_source(
            ConnectorInfo::new("echo", "rows from nowhere").aliases(&["repeat"]),
            |c: Echo, kind| Ok(Box::new(EchoSource(format!("{kind}:{}", c.rows))) as Box<dyn Source>),
        );
        r
    }

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_type_and_its_aliases_select_the_factory() {
        let r = registry();
        let s = r.build_source(&table("type = \"echo\"\nrows = 3")).unwrap();
        assert_eq!(s.name(), "echo:3");
        let s = r.build_source(&table("type = \"REPEAT\"\nrows = 4")).unwrap();
        assert_eq!(s.name(), "REPEAT:4", "the factory sees the type as written");
    }

    #[test]
    fn errors_name_the_key_and_the_choices() {
        let r = registry();
        let e = r.parse_source(&table("type = \"eko\"")).unwrap_err().to_string();
        assert!(
            e.contains("source.type") && e.contains("`eko`") && e.contains("echo, repeat"),
            "{e}"
        );
        let e = r.parse_source(&table("rows = 1")).unwrap_err().to_string();
        assert!(e.contains("source.type") && e.contains("missing"), "{e}");
        let e = r
            .parse_source(&table("type = \"echo\"\nrowz = 1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `rowz`") && e.contains("rows"), "{e}");
        let e = r
            .parse_source(&table("type = \"echo\"\nrows = \"x\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid type"), "{e}");
    }
}
