//! What a configuration says about each catalog feature's switch, read
//! straight from its JSON text: only the members the switches name are looked
//! at, the rest of the document is checked for well-formedness and skipped.
//! A gate call reads a handful of flags from a configuration of a kilobyte or
//! more, and building the whole document as a `serde_json::Value` first (an
//! ordered map per object, every string and number allocated) was most of
//! the call's time.

use super::{CATALOG, Switch};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::sync::LazyLock;

/// Which catalog features a configuration switches on (whatever the tier):
/// bit `i` is [`CATALOG`]`[i]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Switches(u64);

/// What a switch finds at the place it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// `true`.
    True,
    /// A list with at least one entry.
    NonEmptyList,
    /// Anything else, or nothing.
    Other,
}

/// The places the switches read, each as the member names leading to it, and
/// which of them each catalog entry's switch reads.
struct Places {
    members: Vec<Vec<String>>,
    /// By catalog entry: its place, and for a `Both` switch the second one.
    of_entry: Vec<(usize, Option<usize>)>,
}

static PLACES: LazyLock<Places> = LazyLock::new(|| {
    let mut members: Vec<Vec<String>> = Vec::new();
    let mut index = |place: Vec<String>| match members.iter().position(|p| *p == place) {
        Some(i) => i,
        None => {
            members.push(place);
            members.len() - 1
        }
    };
    let pointer = |p: &str| p.split('/').skip(1).map(str::to_owned).collect::<Vec<_>>();
    let of_entry = CATALOG
        .iter()
        .map(|e| match e.switch {
            Switch::Field(p) | Switch::NonEmpty(p) => (index(pointer(p)), None),
            Switch::Both(a, b) => (index(pointer(a)), Some(index(pointer(b)))),
            Switch::OptIn => (
                index(vec![
                    "custom_settings".to_owned(),
                    format!("feature.{}", e.name),
                ]),
                None,
            ),
        })
        .collect();
    assert!(members.len() <= MAX_PLACES, "a set of places is a u64");
    Places { members, of_entry }
});

const MAX_PLACES: usize = 64;

impl Switches {
    /// Reads a configuration's JSON text; text that is not JSON switches
    /// nothing on. Where an object repeats a member, the last one counts, as
    /// when the text is read into a `serde_json::Value`.
    pub fn read(text: &str) -> Self {
        let places = &*PLACES;
        let mut found = [Found::Other; MAX_PLACES];
        let mut de = serde_json::Deserializer::from_str(text);
        let walked = Walk {
            places,
            candidates: u64::MAX >> (MAX_PLACES - places.members.len()),
            depth: 0,
            found: &mut found,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        if walked.is_err() {
            return Self::default();
        }
        Self::from_found(&found)
    }

    fn from_found(found: &[Found; MAX_PLACES]) -> Self {
        let mut bits = 0;
        for (i, (e, &(a, b))) in CATALOG.iter().zip(&PLACES.of_entry).enumerate() {
            let on = match e.switch {
                Switch::NonEmpty(_) => found[a] == Found::NonEmptyList,
                _ => found[a] == Found::True && b.is_none_or(|b| found[b] == Found::True),
            };
            if on {
                bits |= 1 << i;
            }
        }
        Self(bits)
    }

    /// Whether the configuration switches catalog entry `i` on.
    pub(crate) fn on(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
}

/// For callers that hold a configuration as a `Value` (native code and tests):
/// read from its text, so there is one reading.
impl From<&Value> for Switches {
    fn from(config: &Value) -> Self {
        Self::read(&config.to_string())
    }
}

/// Walks one JSON value at `depth` members down, where the places in
/// `candidates` (a set of [`PLACES`] indexes) lead through every member so far.
struct Walk<'a> {
    places: &'a Places,
    candidates: u64,
    depth: usize,
    found: &'a mut [Found; MAX_PLACES],
}

impl Walk<'_> {
    /// A value here replaces what an earlier one (a repeated member) said for
    /// every candidate place: those that end here find `what`, those that go
    /// on below find nothing until a member of this value names them.
    fn leaf(&mut self, what: Found) {
        for i in each(self.candidates) {
            self.found[i] = if self.places.members[i].len() == self.depth {
                what
            } else {
                Found::Other
            };
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(mut self, v: bool) -> Result<(), E> {
        self.leaf(if v { Found::True } else { Found::Other });
        Ok(())
    }

    fn visit_i64<E>(mut self, _: i64) -> Result<(), E> {
        self.leaf(Found::Other);
        Ok(())
    }

    fn visit_u64<E>(mut self, _: u64) -> Result<(), E> {
        self.leaf(Found::Other);
        Ok(())
    }

    fn visit_f64<E>(mut self, _: f64) -> Result<(), E> {
        self.leaf(Found::Other);
        Ok(())
    }

    fn visit_str<E>(mut self, _: &str) -> Result<(), E> {
        self.leaf(Found::Other);
        Ok(())
    }

    fn visit_unit<E>(mut self) -> Result<(), E> {
        self.leaf(Found::Other);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut entries = 0usize;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            entries += 1;
        }
        self.leaf(if entries > 0 {
            Found::NonEmptyList
        } else {
            Found::Other
        });
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.leaf(Found::Other);
        while let Some(next) = map.next_key_seed(Member {
            places: self.places,
            candidates: self.candidates,
            depth: self.depth,
        })? {
            if next == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            map.next_value_seed(Walk {
                places: self.places,
                candidates: next,
                depth: self.depth + 1,
                found: self.found,
            })?;
        }
        Ok(())
    }
}

/// A member name: the candidate places that go on through it.
struct Member<'a> {
    places: &'a Places,
    candidates: u64,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Member<'_> {
    type Value = u64;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Member<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<u64, E> {
        let mut next = 0;
        for i in each(self.candidates) {
            if self.places.members[i]
                .get(self.depth)
                .is_some_and(|m| m == name)
            {
                next |= 1 << i;
            }
        }
        Ok(next)
    }
}

/// The members of a set of places, lowest first.
fn each(mut set: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let i = set.trailing_zeros() as usize;
        set &= set.wrapping_sub(1);
        (i < 64).then_some(i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CATALOG, Tier};
    use serde_json::json;

    /// A switch as the catalog defines it, read with `Value::pointer`: what
    /// both ways of reading must agree with.
    fn by_pointer(config: &Value) -> Switches {
        let flag = |p: &str| config.pointer(p).and_then(Value::as_bool) == Some(true);
        let mut bits = 0;
        for (i, e) in CATALOG.iter().enumerate() {
            let on = match e.switch {
                Switch::Field(p) => flag(p),
                Switch::Both(a, b) => flag(a) && flag(b),
                Switch::NonEmpty(p) => config
                    .pointer(p)
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty()),
                Switch::OptIn => {
                    config
                        .get("custom_settings")
                        .and_then(|c| c.get(format!("feature.{}", e.name)))
                        .and_then(Value::as_bool)
                        == Some(true)
                }
            };
            if on {
                bits |= 1 << i;
            }
        }
        Switches(bits)
    }

    fn defaults() -> Value {
        tg_validator::shared().default_config().clone()
    }

    fn agree(config: &Value) -> Switches {
        let expected = by_pointer(config);
        assert_eq!(Switches::from(config), expected, "{config}");
        assert_eq!(Switches::read(&config.to_string()), expected, "{config}");
        expected
    }

    #[test]
    fn reading_the_text_agrees_with_the_document_at_every_place() {
        let d = defaults();
        let on = agree(&d);
        assert_ne!(on, Switches::default(), "the defaults switch features on");
        for place in &PLACES.members {
            for value in [
                json!(true),
                json!(false),
                json!("true"),
                json!(1),
                json!(null),
                json!([]),
                json!(["10.0.0.0/8"]),
                json!({"enabled": true}),
            ] {
                let mut c = d.clone();
                let (last, parents) = place.split_last().unwrap();
                let mut at = &mut c;
                for m in parents {
                    at = &mut at[m.as_str()];
                }
                at[last.as_str()] = value.clone();
                agree(&c);
                // The parent object replaced by something else.
                let mut c = d.clone();
                c[parents[0].as_str()] = value;
                agree(&c);
            }
        }
    }

    #[test]
    fn text_that_is_not_one_json_value_switches_nothing_on() {
        let d = defaults().to_string();
        for text in [
            "",
            "{",
            &d[..d.len() - 1],
            &format!("{d} {{}}"),
            &format!("{d}x"),
            "[1,]",
            &"[".repeat(200),
        ] {
            assert_eq!(Switches::read(text), Switches::default(), "{text:?}");
        }
        for text in [
            "[]",
            "null",
            "true",
            "\"x\"",
            "{}",
            "[{\"security\":{\"enable_rls\":true}}]",
        ] {
            assert_eq!(Switches::read(text), Switches::default(), "{text}");
        }
    }

    #[test]
    fn the_last_of_a_repeated_member_counts() {
        let on = |t: &str| is_on(Switches::read(t), "row_level_security");
        assert!(on(r#"{"security":{"enable_rls":false,"enable_rls":true}}"#));
        assert!(!on(
            r#"{"security":{"enable_rls":true,"enable_rls":false}}"#
        ));
        assert!(!on(r#"{"security":{"enable_rls":true},"security":{}}"#));
        assert!(!on(r#"{"security":{"enable_rls":true},"security":7}"#));
        assert!(on(r#"{"security":{},"security":{"enable_rls":true}}"#));
        // What the document model makes of the same texts.
        for t in [
            r#"{"security":{"enable_rls":true},"security":{}}"#,
            r#"{"security":{"enable_rls":false,"enable_rls":true}}"#,
        ] {
            let v: Value = serde_json::from_str(t).unwrap();
            assert_eq!(Switches::read(t), by_pointer(&v), "{t}");
        }
    }

    #[test]
    fn escaped_member_names_are_read_as_their_characters() {
        let t = r#"{"secur\u0069ty":{"enable\u005frls":true},"custom_settings":{"feature.ml\u005ffeatures":true}}"#;
        let s = Switches::read(t);
        assert!(is_on(s, "row_level_security"));
        assert!(is_on(s, "ml_features"));
        assert_eq!(s, by_pointer(&serde_json::from_str(t).unwrap()));
    }

    #[test]
    fn both_switches_of_a_pair_must_be_on() {
        let t = |a: bool, b: bool| {
            let c = json!({"replication": {"enabled": a, "enable_auto_failover": b}});
            is_on(agree(&c), "automatic_failover")
        };
        assert!(t(true, true));
        assert!(!t(true, false));
        assert!(!t(false, true));
    }

    fn is_on(s: Switches, name: &str) -> bool {
        crate::is_enabled(Tier::Enterprise, s, name).unwrap()
    }
}
