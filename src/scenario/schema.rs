//! A small JSON Schema validator for tool-call arguments: `type`, `properties`, `required`,
//! `additionalProperties: false`, `enum`, `minimum`, `maximum`, `minLength`, `maxLength` and
//! `items`. Enough to say what real tool schemas say about arguments; anything else is refused
//! when the scenario is validated, so a schema never silently checks less than it reads.

use serde_json::Value;

const KEYWORDS: [&str; 11] = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "items",
    "description",
];

/// A schema cut down to the keywords agentsim checks (an MCP server's schema carries `title`,
/// `$defs`, `anyOf` …): what is left is what a simulated call is validated against.
pub fn supported_subset(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return Value::Object(Default::default());
    };
    let kept = map
        .iter()
        .filter(|(key, _)| KEYWORDS.contains(&key.as_str()))
        .filter_map(|(key, value)| {
            let value = match key.as_str() {
                "properties" => Value::Object(
                    value
                        .as_object()?
                        .iter()
                        .map(|(name, sub)| (name.clone(), supported_subset(sub)))
                        .collect(),
                ),
                "items" => supported_subset(value),
                "type"
                    if !matches!(
                        value.as_str(),
                        Some("object" | "string" | "number" | "integer" | "boolean" | "array")
                    ) =>
                {
                    return None
                }
                _ => value.clone(),
            };
            Some((key.clone(), value))
        })
        .collect();
    Value::Object(kept)
}

/// Checks that `schema` only uses the supported keywords, with values of the right shape.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let Value::Object(map) = schema else {
        return Err(format!("a schema is a table, found {schema}"));
    };
    for (key, value) in map {
        if !KEYWORDS.contains(&key.as_str()) {
            return Err(format!(
                "keyword `{key}` is not supported (supported: {})",
                KEYWORDS.join(", ")
            ));
        }
        match key.as_str() {
            "type" => {
                let ok = matches!(
                    value.as_str(),
                    Some("object" | "string" | "number" | "integer" | "boolean" | "array")
                );
                if !ok {
                    return Err(format!(
                        "`type` is one of object, string, number, integer, boolean, array; found {value}"
                    ));
                }
            }
            "properties" => {
                let Value::Object(props) = value else {
                    return Err("`properties` is a table of schemas".to_owned());
                };
                for (name, sub) in props {
                    check_schema(sub).map_err(|e| format!("property `{name}`: {e}"))?;
                }
            }
            "items" => check_schema(value).map_err(|e| format!("items: {e}"))?,
            "required" if !value.as_array().is_some_and(|a| a.iter().all(Value::is_string)) => {
                return Err("`required` is a list of property names".to_owned());
            }
            "enum" if !value.is_array() => return Err("`enum` is a list of values".to_owned()),
            "minimum" | "maximum" if !value.is_number() => return Err(format!("`{key}` is a number")),
            "minLength" | "maxLength" if !value.is_u64() => return Err(format!("`{key}` is a whole number")),
            "additionalProperties" if !value.is_boolean() => {
                return Err("`additionalProperties` is true or false".to_owned())
            }
            _ => {}
        }
    }
    Ok(())
}

/// The first way `value` breaks `schema`, with the path to it (`amount: 900 is above the maximum 500`).
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    validate_at(schema, value, "")
}

/// Checks a call's arguments (an object) against an object schema, without building a value.
pub fn validate_object(schema: &Value, fields: &serde_json::Map<String, Value>) -> Result<(), String> {
    match schema {
        Value::Object(map) if map.get("type").and_then(Value::as_str).is_none_or(|t| t == "object") => {
            validate_fields(map, fields, "", "arguments")
        }
        _ => Ok(()),
    }
}

/// An object's `required`, `properties` and `additionalProperties`.
fn validate_fields(
    schema: &serde_json::Map<String, Value>,
    fields: &serde_json::Map<String, Value>,
    path: &str,
    here: &str,
) -> Result<(), String> {
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                return Err(format!("{here}: missing required `{name}`"));
            }
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    for (name, field) in fields {
        let path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        match props.and_then(|p| p.get(name)) {
            Some(sub) => validate_at(sub, field, &path)?,
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                return Err(format!("{here}: unexpected `{name}`"));
            }
            None => {}
        }
    }
    Ok(())
}

fn validate_at(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let here = if path.is_empty() {
        "arguments".to_owned()
    } else {
        path.to_owned()
    };
    let Value::Object(schema) = schema else {
        return Ok(());
    };
    if let Some(kind) = schema.get("type").and_then(Value::as_str) {
        let ok = match kind {
            "object" => value.is_object(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            _ => true,
        };
        if !ok {
            return Err(format!("{here}: expected {kind}, found {value}"));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            return Err(format!(
                "{here}: {value} is not one of {}",
                Value::Array(allowed.clone())
            ));
        }
    }
    if let Some(number) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if number < min {
                return Err(format!("{here}: {value} is below the minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if number > max {
                return Err(format!("{here}: {value} is above the maximum {max}"));
            }
        }
    }
    if let Some(text) = value.as_str() {
        let chars = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if chars < min {
                return Err(format!("{here}: shorter than {min} characters"));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if chars > max {
                return Err(format!("{here}: longer than {max} characters"));
            }
        }
    }
    if let Value::Object(fields) = value {
        validate_fields(schema, fields, path, &here)?;
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate_at(item_schema, item, &format!("{here}[{i}]"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_types_ranges_required_and_extras() {
        let schema = json!({
            "type": "object",
            "required": ["amount"],
            "additionalProperties": false,
            "properties": { "amount": { "type": "number", "maximum": 500 }, "currency": { "enum": ["EUR", "USD"] } }
        });
        assert!(check_schema(&schema).is_ok());
        assert_eq!(validate(&schema, &json!({"amount": 20, "currency": "EUR"})), Ok(()));
        assert_eq!(
            validate(&schema, &json!({"amount": 900})),
            Err("amount: 900 is above the maximum 500".to_owned())
        );
        assert_eq!(
            validate(&schema, &json!({"currency": "EUR"})),
            Err("arguments: missing required `amount`".to_owned())
        );
        assert!(validate(&schema, &json!({"amount": 1, "to": "x"}))
            .unwrap_err()
            .contains("unexpected `to`"));
        assert!(validate(&schema, &json!({"amount": "1"}))
            .unwrap_err()
            .contains("expected number"));
        assert!(check_schema(&json!({"pattern": "x"}))
            .unwrap_err()
            .contains("not supported"));
    }
}
