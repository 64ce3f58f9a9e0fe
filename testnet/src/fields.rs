//! Reading a scenario's values: the error type, times, names, ranges, and
//! [`Table`], the reader of one `[[assert]]` or `[[client]]` table whose
//! fields depend on its `kind`. Every error names the file and the field
//! (`rtt.toml: assert[2].to: missing (the measured peer)`).
//!
//! This module knows nothing of checks, clients or runs: they build on it.

use std::collections::BTreeMap;
use std::time::Duration;

/// One-way latency and jitter of a link, in milliseconds (and so the
/// bound of every latency a check expects).
pub const MAX_LATENCY_MS: f64 = 10_000.0;
/// Names of nodes, clients, programs, vessels.
pub const MAX_NAME: usize = 32;
/// Environment variables of one node (`[[node]] env`, a restart's `env`).
pub const MAX_ENV: usize = 32;
/// The longest value of such a variable.
pub const MAX_ENV_VALUE: usize = 4096;
/// Variables testnet sets for every node itself: a scenario may not set
/// them (each node has a HOME of its own; the user key is given on the
/// command line).
pub const RESERVED_ENV: &[&str] = &[
    "HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "MESHNODE_USER_KEY",
];

/// A scenario error: the file, the field, and what is wrong.
#[derive(Debug)]
pub struct ScenarioError(pub String);

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

/// Parses a duration as every meshnode command line does (`250ms`, `5s`,
/// `1.5s`, `2m`, `1h`): one parser, `protocol::duration`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    protocol::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// `5s`, `1.5s`, `250ms`.
pub fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// The names a scenario declares, in file order: what a field may refer to,
/// and what a check's description says.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub nodes: Vec<String>,
    pub vessels: Vec<String>,
    pub clients: Vec<String>,
}

/// The checker of one file: it words errors and resolves names.
pub struct Ck {
    pub file: String,
    pub names: Names,
}

impl Ck {
    pub fn err(&self, field: &str, msg: impl std::fmt::Display) -> ScenarioError {
        ScenarioError(format!("{}: {field}: {msg}", self.file))
    }

    pub fn dur(&self, field: &str, s: &str) -> Result<Duration, ScenarioError> {
        parse_duration(s).map_err(|m| self.err(field, m))
    }

    pub fn opt_dur(
        &self,
        field: &str,
        s: &Option<String>,
        default: Duration,
    ) -> Result<Duration, ScenarioError> {
        match s {
            Some(s) => self.dur(field, s),
            None => Ok(default),
        }
    }

    pub fn node(&self, field: &str, name: &str) -> Result<usize, ScenarioError> {
        let nodes = &self.names.nodes;
        nodes.iter().position(|n| n == name).ok_or_else(|| {
            self.err(
                field,
                format!("no node named {name:?} (nodes: {})", nodes.join(", ")),
            )
        })
    }

    pub fn vessel(&self, field: &str, name: &str) -> Result<usize, ScenarioError> {
        let vessels = &self.names.vessels;
        vessels
            .iter()
            .position(|v| v == name)
            .ok_or_else(|| self.err(field, format!("no [[vessel]] named {name:?}")))
    }

    pub fn client(&self, field: &str, name: &str) -> Result<usize, ScenarioError> {
        let clients = &self.names.clients;
        clients
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| self.err(field, format!("no [[client]] named {name:?}")))
    }

    pub fn need<'v, T>(
        &self,
        field: &str,
        v: &'v Option<T>,
        why: &str,
    ) -> Result<&'v T, ScenarioError> {
        v.as_ref()
            .ok_or_else(|| self.err(field, format!("missing ({why})")))
    }

    pub fn name(&self, field: &str, name: &str) -> Result<(), ScenarioError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && name.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(())
        } else {
            Err(self.err(
                field,
                format!(
                    "{name:?} is not a name (1 to {MAX_NAME} of a-z, 0-9, - and _, starting with a letter or digit)"
                ),
            ))
        }
    }

    pub fn range(&self, field: &str, v: f64, lo: f64, hi: f64) -> Result<f64, ScenarioError> {
        if v.is_finite() && v >= lo && v <= hi {
            Ok(v)
        } else {
            Err(self.err(field, format!("must be between {lo} and {hi} (got {v})")))
        }
    }

    pub fn window(
        &self,
        field: &str,
        w: &Option<Vec<String>>,
    ) -> Result<(Duration, Duration), ScenarioError> {
        let w = self.need(field, w, "a window [\"FROM\", \"TO\"]")?;
        if w.len() != 2 {
            return Err(self.err(field, "must be two times, [\"FROM\", \"TO\"]"));
        }
        let a = self.dur(field, &w[0])?;
        let b = self.dur(field, &w[1])?;
        if b <= a {
            return Err(self.err(field, "the window ends before it starts"));
        }
        Ok((a, b))
    }

    /// An environment table: names a shell would accept, no variable testnet
    /// sets itself, values without NUL, named limits.
    pub fn env(
        &self,
        field: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, String)>, ScenarioError> {
        if env.len() > MAX_ENV {
            return Err(self.err(field, format!("{} given, at most {MAX_ENV}", env.len())));
        }
        for (k, v) in env {
            self.env_var(&format!("{field}.{k}"), k, v)?;
        }
        Ok(env.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn env_var(&self, field: &str, k: &str, v: &str) -> Result<(), ScenarioError> {
        let ok = !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !k.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(self.err(
                field,
                format!(
                    "{k:?} is not a variable name (A-Z, a-z, 0-9 and _, not starting with a digit)"
                ),
            ));
        }
        if RESERVED_ENV.contains(&k) {
            return Err(self.err(
                field,
                "testnet sets it for every node (each has a HOME of its own; the user key is on the command line)",
            ));
        }
        if v.len() > MAX_ENV_VALUE || v.contains('\0') {
            return Err(self.err(
                field,
                format!("a value is at most {MAX_ENV_VALUE} bytes, without NUL"),
            ));
        }
        Ok(())
    }

    pub fn pair(&self, field: &str, between: &[String]) -> Result<(usize, usize), ScenarioError> {
        if between.len() != 2 {
            return Err(self.err(field, "must name two nodes, [\"a\", \"b\"]"));
        }
        let a = self.node(field, &between[0])?;
        let b = self.node(field, &between[1])?;
        if a == b {
            return Err(self.err(field, "a link joins two different nodes"));
        }
        Ok((a, b))
    }

    /// At most `max` of `what`.
    pub fn count(&self, what: &str, n: usize, max: usize) -> Result<(), ScenarioError> {
        if n > max {
            Err(self.err(what, format!("{n} given, at most {max}")))
        } else {
            Ok(())
        }
    }

    /// No name of `what` twice.
    pub fn unique(&self, what: &str, names: &[&str]) -> Result<(), ScenarioError> {
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(self.err(&format!("{what}[{i}].name"), format!("{n:?} is used twice")));
            }
        }
        Ok(())
    }

    /// A `pending` reason: absent, or words.
    pub fn pending(
        &self,
        field: &str,
        p: &Option<String>,
    ) -> Result<Option<String>, ScenarioError> {
        match p {
            Some(s) if s.trim().is_empty() => Err(self.err(field, "say why it is pending")),
            other => Ok(other.clone()),
        }
    }
}

/// One kind of a table that has kinds (`[[assert]]`, `[[client]]`): its
/// name and the fields it takes beyond the common ones.
pub struct KindFields {
    pub name: &'static str,
    pub fields: &'static [&'static str],
}

/// One `[[assert]]` or `[[client]]` table, read field by field. Fields the
/// kind does not take are refused before any is read ([`Table::new`]), so a
/// typo is an error, never a silently ignored setting.
pub struct Table<'a> {
    pub ck: &'a Ck,
    /// `assert[3]`
    pub at: String,
    map: toml::Table,
}

impl<'a> Table<'a> {
    /// Checks that every field of `map` other than `common` is one that
    /// `kind` takes; `all` are every kind of this table, to tell a field of
    /// another kind from a typo.
    pub fn new(
        ck: &'a Ck,
        at: String,
        map: toml::Table,
        common: &[&str],
        kind: &KindFields,
        all: &[&KindFields],
    ) -> Result<Table<'a>, ScenarioError> {
        for key in map.keys() {
            if common.contains(&key.as_str()) || kind.fields.contains(&key.as_str()) {
                continue;
            }
            let msg = if all.iter().any(|k| k.fields.contains(&key.as_str())) {
                format!("does not apply to kind {:?}", kind.name)
            } else {
                format!("unknown field `{key}`")
            };
            return Err(ck.err(&format!("{at}.{key}"), msg));
        }
        Ok(Table { ck, at, map })
    }

    /// `assert[3].to`
    pub fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.at)
    }

    pub fn err(&self, key: &str, msg: impl std::fmt::Display) -> ScenarioError {
        self.ck.err(&self.field(key), msg)
    }

    fn wrong(&self, key: &str, want: &str, got: &toml::Value) -> ScenarioError {
        self.err(key, format!("must be {want} (got {got})"))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<String>, ScenarioError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    /// A string the kind cannot do without; `why` says what it is.
    pub fn str(&self, key: &str, why: &str) -> Result<String, ScenarioError> {
        self.opt_str(key)?
            .ok_or_else(|| self.err(key, format!("missing ({why})")))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, ScenarioError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(toml::Value::Float(f)) => Ok(Some(*f)),
            Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(v) => Err(self.wrong(key, "a number", v)),
        }
    }

    /// A number in lo..=hi, `default` when absent.
    pub fn f64_in(&self, key: &str, default: f64, lo: f64, hi: f64) -> Result<f64, ScenarioError> {
        let v = self.opt_f64(key)?.unwrap_or(default);
        self.ck.range(&self.field(key), v, lo, hi)
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ScenarioError> {
        match self.map.get(key) {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(v) => Err(self.wrong(key, "true or false", v)),
        }
    }

    pub fn opt_strs(&self, key: &str) -> Result<Option<Vec<String>>, ScenarioError> {
        let Some(v) = self.map.get(key) else {
            return Ok(None);
        };
        let toml::Value::Array(items) = v else {
            return Err(self.wrong(key, "a list of strings", v));
        };
        items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => Ok(s.clone()),
                _ => Err(self.wrong(key, "a list of strings", v)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub fn dur_or(&self, key: &str, default: Duration) -> Result<Duration, ScenarioError> {
        self.ck
            .opt_dur(&self.field(key), &self.opt_str(key)?, default)
    }

    pub fn opt_dur(&self, key: &str) -> Result<Option<Duration>, ScenarioError> {
        self.opt_str(key)?
            .map(|s| self.ck.dur(&self.field(key), &s))
            .transpose()
    }

    pub fn node(&self, key: &str, why: &str) -> Result<usize, ScenarioError> {
        self.ck.node(&self.field(key), &self.str(key, why)?)
    }

    /// A required, non-empty list of node names, as node indices.
    pub fn nodes(&self, key: &str, why: &str) -> Result<Vec<usize>, ScenarioError> {
        let field = self.field(key);
        let list = self.ck.need(&field, &self.opt_strs(key)?, why)?.clone();
        if list.is_empty() {
            return Err(self.err(key, "name at least one node"));
        }
        list.iter().map(|m| self.ck.node(&field, m)).collect()
    }

    pub fn vessel(&self, key: &str, why: &str) -> Result<usize, ScenarioError> {
        self.ck.vessel(&self.field(key), &self.str(key, why)?)
    }

    pub fn client(&self, key: &str, why: &str) -> Result<usize, ScenarioError> {
        self.ck.client(&self.field(key), &self.str(key, why)?)
    }

    pub fn window(&self, key: &str) -> Result<(Duration, Duration), ScenarioError> {
        self.ck.window(&self.field(key), &self.opt_strs(key)?)
    }

    pub fn pending(&self) -> Result<Option<String>, ScenarioError> {
        self.ck
            .pending(&self.field("pending"), &self.opt_str("pending")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        // The same parser as the CLI's: hours and bare seconds work here too.
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("5d"));
    }

    fn ck() -> Ck {
        Ck {
            file: "t.toml".into(),
            names: Names {
                nodes: vec!["a".into(), "b".into()],
                ..Names::default()
            },
        }
    }

    const RTT: KindFields = KindFields {
        name: "rtt",
        fields: &["from", "expect_ms"],
    };
    const SEES: KindFields = KindFields {
        name: "sees",
        fields: &["node"],
    };

    fn table<'a>(ck: &'a Ck, text: &str) -> Result<Table<'a>, ScenarioError> {
        let map: toml::Table = toml::from_str(text).unwrap();
        Table::new(ck, "assert[0]".into(), map, &["kind"], &RTT, &[&RTT, &SEES])
    }

    #[test]
    fn a_field_of_another_kind_and_a_typo_are_told_apart() {
        let ck = ck();
        let e = table(&ck, "node = \"a\"").err().unwrap().0;
        assert_eq!(e, "t.toml: assert[0].node: does not apply to kind \"rtt\"");
        let e = table(&ck, "frm = \"a\"").err().unwrap().0;
        assert_eq!(e, "t.toml: assert[0].frm: unknown field `frm`");
    }

    #[test]
    fn values_are_typed_and_named() {
        let ck = ck();
        let t = table(&ck, "from = \"b\"\nexpect_ms = 20\nkind = \"rtt\"").unwrap();
        assert_eq!(t.node("from", "x").unwrap(), 1);
        assert_eq!(t.opt_f64("expect_ms").unwrap(), Some(20.0));
        let t = table(&ck, "from = 3").unwrap();
        let e = t.node("from", "the measuring node").unwrap_err().0;
        assert_eq!(e, "t.toml: assert[0].from: must be a string (got 3)");
        let t = table(&ck, "").unwrap();
        let e = t.node("from", "the measuring node").unwrap_err().0;
        assert_eq!(e, "t.toml: assert[0].from: missing (the measuring node)");
    }
}
