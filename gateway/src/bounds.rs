//! The bounds on what a client may send, each defined once and used twice: by the
//! validators the handlers call and by the OpenAPI document, which states it as JSON Schema
//! keywords (`minimum`, `maximum`, `pattern`, `maxLength`, `maxItems`, `maxProperties`, …).
//!
//! The numbers themselves live in `instaface_bus::graph` where a node enforces the same
//! bound (`MAX_TYPE_NAME_LEN`, `TYPE_NAME_PATTERN`, `MAX_IDS_PER_READ`, `MAX_ASSOC_LIMIT`,
//! `MAX_ASSOC_OFFSET`, `MAX_TIMELINE_LIMIT`, `MAX_RANDOM_COUNT`, `MAX_TEMPLATE_DEPTH`,
//! `MAX_TEMPLATE_TYPES`, …); what only the gateway decides (defaults, minimums, the node-id
//! shape it documents) is here. `gateway/tests/constraints.rs` walks the generated document
//! and probes every handler at each stated bound and one past it.
//!
//! Integers in paths and query strings are plain decimal digits: [`parse_u64`] refuses a
//! sign, spaces or an empty value, which Rust's `str::parse` would let through (`+5`).

use std::borrow::Cow;

use instaface_bus::graph;
use instaface_bus::shards::{Shards, SHARD_SHIFT};
use serde::{Deserialize, Deserializer};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Required};

use crate::error::ApiError;

/// Largest entity id (ids are MySQL `BIGINT UNSIGNED`; any `u64` may be asked for).
pub const MAX_ENTITY_ID: u64 = u64::MAX;

pub use instaface_bus::{MAX_NODE_ID_LEN, NODE_ID_PATTERN};

/// A bounded integer query parameter: `min..=max`, `default` when absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub name: &'static str,
    pub min: u32,
    pub max: u32,
    pub default: u32,
}

/// `?limit=` of an association list.
pub const ASSOC_LIMIT: Range = Range { name: "limit", min: 0, max: graph::MAX_ASSOC_LIMIT, default: 50 };
/// `?offset=` of an association list.
pub const ASSOC_OFFSET: Range = Range { name: "offset", min: 0, max: graph::MAX_ASSOC_OFFSET, default: 0 };
/// `?limit=` of a timeline.
pub const TIMELINE_LIMIT: Range = Range { name: "limit", min: 1, max: graph::MAX_TIMELINE_LIMIT, default: 20 };
/// `?count=` of random ids.
pub const RANDOM_COUNT: Range = Range { name: "count", min: 1, max: graph::MAX_RANDOM_COUNT, default: 10 };

impl Range {
    /// The value to use: `given` if within bounds (else 400), the default if absent.
    pub fn check(&self, given: Option<u32>) -> Result<u32, ApiError> {
        let value = given.unwrap_or(self.default);
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(ApiError::BadRequest(format!(
                "{} must be between {} and {}, got {value}",
                self.name, self.min, self.max
            )))
        }
    }

    pub fn schema(&self) -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(self.min))
            .maximum(Some(self.max))
            .default(Some(self.default.into()))
            .into()
    }

    /// The optional query parameter.
    pub fn parameter(&self, description: &str) -> Parameter {
        query_parameter(
            self.name,
            &format!("{description}, {} to {} (default {}).", self.min, self.max, self.default),
            false,
            self.schema(),
        )
    }
}

/// A query parameter.
pub fn query_parameter(name: &str, description: &str, required: bool, schema: impl Into<RefOr<Schema>>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(if required { Required::True } else { Required::False })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// A path parameter (always required).
pub fn path_parameter(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// An entity or association type name (`graph::valid_type_name`).
pub fn type_name_schema(example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(graph::MAX_TYPE_NAME_LEN))
        .pattern(Some(graph::TYPE_NAME_PATTERN))
        .examples([serde_json::Value::from(example)])
}

/// A type name as a path parameter.
pub fn type_name_parameter(name: &str, kind: &str, example: &str) -> Parameter {
    path_parameter(
        name,
        &format!(
            "The {kind} type: 1 to {} characters of `a-z`, `0-9` and `_`, starting with a letter",
            graph::MAX_TYPE_NAME_LEN
        ),
        type_name_schema(example),
    )
}

/// An entity id, or any other unsigned 64-bit number (`min_seq`).
pub fn u64_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0u64)).maximum(Some(MAX_ENTITY_ID))
}

/// An entity id as a path parameter, with an example.
pub fn entity_id_parameter(name: &str, description: &str, example: u64) -> Parameter {
    path_parameter(name, description, u64_schema().examples([example]))
}

/// The largest id the shards of `shards` can hold (shard `k` holds the ids below
/// `(k + 1) << SHARD_SHIFT`): the bound on `?near=`.
pub fn last_shard_id(shards: Shards) -> u64 {
    (u64::from(shards.count()) << SHARD_SHIFT) - 1
}

/// `?near=` of a create, for a gateway of `shards` (the document states the bound of the
/// gateway that serves it).
pub fn near_parameter(shards: Shards) -> Parameter {
    let last = last_shard_id(shards);
    let description = format!(
        "Create the entity in the shard of this one (a status in its author's shard, say), so that \
         associations between them are written in one transaction (across shards, the other shard's \
         row follows a moment later). Only the shard is taken from the id (`id >> \
         {SHARD_SHIFT}`); the entity itself is not looked up. Without it, creates go to each shard in turn. \
         This gateway's cluster has {} shard(s): an id past {last} names none and is refused (400).",
        shards.count()
    );
    query_parameter("near", &description, false, u64_schema().maximum(Some(last)).examples([1u64]))
}

/// Checks `?near=`: `id` must name one of `shards`' shards.
pub fn near(shards: Shards, id: u64) -> Result<u64, ApiError> {
    match shards.of(id) {
        Some(_) => Ok(id),
        None => Err(ApiError::BadRequest(format!(
            "near: entity {id} would be in shard {}, and there are {} shard(s) (ids up to {})",
            id >> SHARD_SHIFT,
            shards.count(),
            last_shard_id(shards)
        ))),
    }
}

/// `?ids=1,2,3`: an array of ids, comma-separated (`style: form, explode: false`).
pub fn ids_parameter() -> Parameter {
    let schema =
        ArrayBuilder::new().items(u64_schema()).min_items(Some(1)).max_items(Some(graph::MAX_IDS_PER_READ)).build();
    let mut p = query_parameter(
        "ids",
        &format!("The entity ids, comma-separated (`ids=1,2,3`): 1 to {}", graph::MAX_IDS_PER_READ),
        true,
        schema,
    );
    p.style = Some(ParameterStyle::Form);
    p.explode = Some(false);
    p
}

/// A node id (what [`instaface_bus::valid_node_id`] accepts).
pub fn node_id_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NODE_ID_LEN))
        .pattern(Some(NODE_ID_PATTERN))
        .examples([serde_json::Value::from("n1")])
}

/// Parses an unsigned decimal integer: ASCII digits only (no sign, no spaces, not empty).
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `u32` in digits only; for `#[serde(deserialize_with)]` on query parameters.
pub fn de_opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let s = Cow::<str>::deserialize(d)?;
    parse_u64(&s)
        .and_then(|v| u32::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an integer between 0 and {}", u32::MAX)))
}

/// `u64` in digits only; for `#[serde(deserialize_with)]` on query parameters.
pub fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = Cow::<str>::deserialize(d)?;
    parse_u64(&s)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an integer between 0 and {}", u64::MAX)))
}

/// The unsigned integer a JSON number is, as JSON Schema's `integer` counts them: `7` and
/// `7.0` (or `7e0`) alike, anything from 0 to `u64::MAX`; `None` for a fraction, a negative
/// number or one past `u64::MAX`. (A float is taken at its IEEE value, as a validator in
/// JavaScript or Python takes it.)
pub fn json_u64(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        let f = n.as_f64()?;
        // 2^64 is exactly representable; every integral f64 below it fits a u64.
        (f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f)).then_some(f as u64)
    })
}

/// A JSON array of entity ids ([`json_u64`] each); for `#[serde(deserialize_with)]`.
pub fn de_json_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    let numbers = Vec::<serde_json::Number>::deserialize(d)?;
    numbers
        .iter()
        .map(|n| {
            json_u64(n)
                .ok_or_else(|| serde::de::Error::custom(format!("{n} is not an entity id (0 to {MAX_ENTITY_ID})")))
        })
        .collect()
}

/// An entity id in a path: digits only, at most [`MAX_ENTITY_ID`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id(pub u64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        parse_u64(&s)
            .map(Id)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an entity id (0 to {MAX_ENTITY_ID})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_digits_only() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("007"), Some(7));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "+5", "-1", " 5", "5 ", "1.5", "1e3", "18446744073709551616", "٣"] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn json_integers_are_json_schema_integers() {
        let n = |s: &str| json_u64(&serde_json::from_str(s).unwrap());
        assert_eq!(n("7"), Some(7));
        assert_eq!(n("7.0"), Some(7));
        assert_eq!(n("7e0"), Some(7));
        assert_eq!(n("28672375909.0"), Some(28_672_375_909));
        assert_eq!(n("18446744073709551615"), Some(u64::MAX));
        assert_eq!(n("1e19"), Some(10_000_000_000_000_000_000));
        for bad in ["7.5", "-1", "-1.0", "18446744073709551616", "1.8446744073709552e19", "1e300"] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn near_names_a_shard() {
        let one = Shards::one();
        assert_eq!(last_shard_id(one), (1 << SHARD_SHIFT) - 1);
        assert_eq!(near(one, 0), Ok(0));
        assert_eq!(near(one, last_shard_id(one)), Ok(last_shard_id(one)));
        assert!(near(one, 1 << SHARD_SHIFT).is_err());
        let max = Shards::new(instaface_bus::shards::MAX_SHARDS).unwrap();
        assert_eq!(last_shard_id(max), (1 << 53) - 1);
        assert!(near(max, u64::MAX).unwrap_err().to_string().contains("shard"));
    }

    #[test]
    fn ranges_check_their_bounds_and_default() {
        assert_eq!(TIMELINE_LIMIT.check(None), Ok(20));
        assert_eq!(TIMELINE_LIMIT.check(Some(1)), Ok(1));
        assert!(TIMELINE_LIMIT.check(Some(0)).is_err());
        assert_eq!(ASSOC_OFFSET.check(Some(graph::MAX_ASSOC_OFFSET)), Ok(graph::MAX_ASSOC_OFFSET));
        assert!(ASSOC_OFFSET.check(Some(graph::MAX_ASSOC_OFFSET + 1)).is_err());
    }
}
