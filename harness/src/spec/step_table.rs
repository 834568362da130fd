//! A suite's step tables, read from the span-keeping TOML tree: a step's own keys
//! (`name`, `expect`, ...) go to `StepFile`, its one action key to the check kind
//! registered under that namespace. Both parse from the same tree, so an error inside an
//! action (`postgres.qurey`) points at its line and column in the suite file.

use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::suite::{StepError, StepFile};
use crate::kinds::{self, Action, CheckKind};

/// The keys a step has besides its action.
const STEP_KEYS: &[&str] = &["name", "service", "expect", "capture", "retry", "within"];

/// A step table read: its own keys, its check kind, its action, and the `${name}`s its
/// action and expectations use (with where), to check against earlier captures.
pub(super) struct ParsedStep {
    pub own: StepFile,
    pub kind: &'static dyn CheckKind,
    pub action: Box<dyn Action>,
    pub references: Vec<(String, Range<usize>)>,
}

/// One `[[check.step]]` table of the file.
#[derive(Default)]
pub(super) struct StepTable<'a> {
    pub span: Range<usize>,
    table: DeTable<'a>,
}

/// The step tables of every check of a parsed file, in file order
/// (`[check index][step index]`).
pub(super) fn steps_of<'a>(root: &DeTable<'a>) -> Vec<Vec<StepTable<'a>>> {
    tables_in(root.get("check"))
        .into_iter()
        .map(|check| tables_in(check.get_ref().get("step")))
        .map(|steps| {
            steps
                .into_iter()
                .map(|s| StepTable {
                    span: s.span(),
                    table: s.into_inner(),
                })
                .collect()
        })
        .collect()
}

/// The tables of an array of tables (anything else is the typed parse's to report).
fn tables_in<'a>(value: Option<&Spanned<DeValue<'a>>>) -> Vec<Spanned<DeTable<'a>>> {
    let Some(DeValue::Array(items)) = value.map(Spanned::get_ref) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item.get_ref() {
            DeValue::Table(t) => Some(Spanned::new(item.span(), t.clone())),
            _ => None,
        })
        .collect()
}

impl StepTable<'_> {
    /// The step's own keys, its check kind and its parsed action.
    pub fn parse(self) -> Result<ParsedStep, StepError> {
        let mut own = DeTable::new();
        let mut actions = Vec::new();
        let mut references = Vec::new();
        for (key, value) in self.table {
            let name = key.get_ref().as_ref();
            if name != "capture" && name != "name" {
                references.extend(references_in(&value)?);
            }
            if STEP_KEYS.contains(&name) {
                own.insert(key, value);
            } else if let Some(kind) = kinds::kind(name) {
                actions.push((kind, key.span(), value));
            } else {
                return Err((
                    key.span(),
                    format!(
                        "unknown field `{name}`: a step takes {} and one action, one of: {}",
                        STEP_KEYS.join(", "),
                        namespaces()
                    ),
                ));
            }
        }
        let own = StepFile::deserialize(ValueDeserializer::from(Spanned::new(
            self.span.clone(),
            DeValue::Table(own),
        )))
        .map_err(|e| toml_error(&e, &self.span))?;
        let mut actions = actions.into_iter();
        let (kind, _, value) = match (actions.next(), actions.next()) {
            (Some(one), None) => one,
            (None, _) => {
                return Err((
                    self.span,
                    format!("give one action, one of: {}", namespaces()),
                ))
            }
            (Some((a, _, _)), Some((b, span, _))) => {
                return Err((
                    span,
                    format!(
                        "give one action per step, found `{}` and `{}`",
                        a.namespace(),
                        b.namespace()
                    ),
                ))
            }
        };
        let value_span = value.span();
        let action = kind
            .parse(ValueDeserializer::from(value))
            .map_err(|e| toml_error(&e, &value_span))?;
        Ok(ParsedStep {
            own,
            kind,
            action,
            references,
        })
    }
}

/// Every `${name}` in the strings of `value`, with the span of its string. Iterative, so
/// deep input cannot overflow the stack.
fn references_in(value: &Spanned<DeValue<'_>>) -> Result<Vec<(String, Range<usize>)>, StepError> {
    let mut found = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v.get_ref() {
            DeValue::String(text) => {
                let keys = crate::template::references(text).map_err(|e| (v.span(), e))?;
                found.extend(keys.into_iter().map(|k| (k, v.span())));
            }
            DeValue::Array(items) => stack.extend(items.iter()),
            DeValue::Table(table) => stack.extend(table.values()),
            _ => {}
        }
    }
    found.sort_by_key(|(_, span)| span.start);
    Ok(found)
}

fn namespaces() -> String {
    kinds::registry()
        .iter()
        .map(|k| k.namespace())
        .collect::<Vec<_>>()
        .join(", ")
}

fn toml_error(e: &toml::de::Error, fallback: &Range<usize>) -> (Range<usize>, String) {
    (
        e.span().unwrap_or_else(|| fallback.clone()),
        e.message().trim().to_string(),
    )
}
