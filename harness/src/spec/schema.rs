//! JSON Schemas of the files users write, generated from the very types that parse them,
//! so editors (taplo / Even Better TOML, through each file's `#:schema` line) complete and
//! check what `validate` accepts. A new check kind appears here through the registry.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use super::suite::{StepFile, SuiteFile};
use crate::kinds;

/// A step: its own keys and exactly one action, keyed by a check kind's namespace.
pub struct StepSchema;

impl JsonSchema for StepSchema {
    fn schema_name() -> Cow<'static, str> {
        "Step".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut step = StepFile::json_schema(generator);
        let kinds = kinds::registry();
        if let Some(props) = step
            .ensure_object()
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            for k in kinds {
                props.insert(k.namespace().into(), k.schema(generator).to_value());
            }
        }
        step.insert(
            "oneOf".into(),
            kinds
                .iter()
                .map(|k| json!({ "required": [k.namespace()] }))
                .collect(),
        );
        step
    }
}

/// The schema of platform files (`fixtures/platform.toml`, `fixtures/platforms/*.toml`).
pub fn platform() -> Value {
    schemars::schema_for!(super::platform::PlatformFile).to_value()
}

/// The schema of `suites/*.toml`.
pub fn suite() -> Value {
    schemars::schema_for!(SuiteFile).to_value()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_is_a_step_property() {
        let schema = super::suite().to_string();
        for k in crate::kinds::registry() {
            assert!(
                schema.contains(&format!("\"{}\"", k.namespace())),
                "{}",
                k.namespace()
            );
        }
    }
}
