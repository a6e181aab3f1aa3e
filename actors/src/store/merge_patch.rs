//! JSON merge patch (RFC 7396) applied to an entity's attributes.
//!
//! A `null` in the patch deletes the key, an object merges recursively, anything else
//! replaces. The patch itself must be an object: attributes always stay an object.

use serde_json::Value;

use instaface_bus::graph::Attributes;

use super::StoreError;

/// Applies `patch` to `attributes`; [`StoreError::Invalid`] when `patch` is not an object.
pub fn apply_merge_patch(attributes: &mut Attributes, patch: &Value) -> Result<(), StoreError> {
    let Value::Object(patch) = patch else {
        return Err(StoreError::Invalid("a merge patch of attributes must be a JSON object".into()));
    };
    merge_object(attributes, patch);
    Ok(())
}

fn merge_object(target: &mut Attributes, patch: &Attributes) {
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_value(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn merge_value(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = Value::Object(Attributes::new());
            }
            if let Value::Object(target) = target {
                merge_object(target, patch);
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn patched(target: Value, patch: Value) -> Value {
        let Value::Object(mut attributes) = target else { panic!("target must be an object") };
        apply_merge_patch(&mut attributes, &patch).unwrap();
        Value::Object(attributes)
    }

    #[test]
    fn rfc_7396_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!({"a": "foo"}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(patched(target.clone(), patch.clone()), expected, "{target} + {patch}");
        }
    }

    #[test]
    fn non_object_patches_are_invalid() {
        for patch in [json!(null), json!(1), json!("x"), json!(["a"])] {
            let mut attributes = Attributes::new();
            let err = apply_merge_patch(&mut attributes, &patch).unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{patch}: {err}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5i64..5).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-d]", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[a-d]", json_value(), 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        /// Applying the same patch twice changes nothing more (RFC 7396 patches are idempotent).
        #[test]
        fn patches_are_idempotent(target in object(), patch in object()) {
            let once = patched(target, patch.clone());
            let twice = patched(once.clone(), patch);
            prop_assert_eq!(once, twice);
        }

        /// Every non-null key of the patch ends up in the result; no null key survives.
        #[test]
        fn patched_keys_follow_the_patch(target in object(), patch in object()) {
            let result = patched(target, patch.clone());
            for (key, value) in patch.as_object().unwrap() {
                prop_assert_eq!(result.get(key).is_some(), !value.is_null());
            }
        }
    }
}
