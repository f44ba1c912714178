//! A tenant configuration document read only as deep as its top level: each
//! section is carried as the JSON text it was read as (`serde_json`'s
//! `RawValue`), not parsed into maps and written again.
//!
//! A document is about 1.2 KB. Parsing all of it into `serde_json` values (maps
//! whose keys are hashed with SipHash), only to change one section or to put
//! `tenant_id` first and `updated_at` last, then writing it all again, was most
//! of the time the validator and config API components spent on an update.
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A member's value: the text it was read as, or text written since.
pub type Text<'a> = Cow<'a, RawValue>;

/// The sections of a configuration document in their order, each as JSON
/// text; the API's read-only fields (`tenant_id`, `updated_at`) are set apart.
/// Written (`Serialize`) as the object of the sections alone.
#[derive(Debug)]
pub struct Sections<'a> {
    /// `(name, value)` in the document's order, names unique.
    pub members: Vec<(Cow<'a, str>, Text<'a>)>,
    /// The document's own `updated_at`, if it had one.
    pub updated_at: Option<&'a RawValue>,
}

impl<'a> Sections<'a> {
    /// Reads the JSON object `text`. A member named twice keeps its first
    /// place and its last value, as a parsed object does. `tenant_id` is
    /// dropped (whoever writes the document sets it).
    pub fn read(text: &'a str) -> serde_json::Result<Self> {
        let Members(read) = serde_json::from_str(text)?;
        let mut members: Vec<(Cow<'a, str>, Text<'a>)> = Vec::with_capacity(read.len());
        let mut updated_at = None;
        for (name, value) in read {
            match name.as_ref() {
                "tenant_id" => {}
                "updated_at" => updated_at = Some(value),
                _ => match members.iter_mut().find(|(n, _)| *n == name) {
                    Some(member) => member.1 = Cow::Borrowed(value),
                    None => members.push((name, Cow::Borrowed(value))),
                },
            }
        }
        Ok(Self {
            members,
            updated_at,
        })
    }

    /// The section called `name`, if the document has it.
    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Sets the section `name` to `value`: in its place if the document has
    /// it, else last.
    pub fn set(&mut self, name: &str, value: Box<RawValue>) {
        match self.members.iter_mut().find(|(n, _)| n == name) {
            Some(member) => member.1 = Cow::Owned(value),
            None => self
                .members
                .push((Cow::Owned(name.to_owned()), Cow::Owned(value))),
        }
    }
}

impl Serialize for Sections<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.members.len()))?;
        for (name, value) in &self.members {
            map.serialize_entry(name.as_ref(), value.as_ref())?;
        }
        map.end()
    }
}

/// The members of a JSON object in their order, each value as its text.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                // serde_json gives no size hint: room for the sections and
                // the two fields the API adds.
                let mut members = Vec::with_capacity(8);
                while let Some(Name(name)) = map.next_key()? {
                    members.push((name, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Object)
    }
}

/// A member's name: borrowed from the text unless it had escapes (as the
/// host's `store::changed_fields` reads names).
#[derive(Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

/// `value` as JSON text, written straight into a buffer the size of a whole
/// configuration (`Value::to_string` goes through `Display` and a formatter, a
/// dynamic call per token, into a string that grows from nothing).
///
/// # Panics
/// Only if `value`'s `Serialize` fails, which none of the components' does:
/// writing to memory cannot fail and `serde_json` writes UTF-8 only.
pub fn json_text<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(2048);
    serde_json::to_writer(&mut out, value).expect("a document is written to memory");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keep_their_text_order_and_last_value() {
        let text = r#"{"tenant_id":"x", "b" : {"n": 1.50,"s":"\u00e9"},"a":[1],"updated_at":"t","b":{"n":2},"c\"d":null}"#;
        let doc = Sections::read(text).unwrap();
        let names: Vec<&str> = doc.members.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["b", "a", "c\"d"], "first place, tenant_id dropped");
        assert_eq!(doc.get("b").unwrap().get(), r#"{"n":2}"#, "last value");
        assert_eq!(doc.updated_at.unwrap().get(), r#""t""#);
        assert_eq!(json_text(&doc), r#"{"b":{"n":2},"a":[1],"c\"d":null}"#);

        let doc = Sections::read(r#"{"a": {"n": 1.50, "s": "\u00e9"}}"#).unwrap();
        assert_eq!(
            json_text(&doc),
            r#"{"a":{"n": 1.50, "s": "\u00e9"}}"#,
            "a section's text as read"
        );
        assert!(doc.updated_at.is_none());
    }

    #[test]
    fn set_replaces_in_place_or_appends() {
        let mut doc = Sections::read(r#"{"a":1,"b":2}"#).unwrap();
        doc.set("a", RawValue::from_string("[3]".into()).unwrap());
        doc.set("z", RawValue::from_string("{}".into()).unwrap());
        assert_eq!(json_text(&doc), r#"{"a":[3],"b":2,"z":{}}"#);
        assert!(doc.get("q").is_none());
    }

    #[test]
    fn only_objects_are_documents() {
        for bad in ["[]", "1", "\"s\"", "null", "{", r#"{"a":}"#, r#"{"a":1} x"#] {
            assert!(Sections::read(bad).is_err(), "{bad}");
        }
    }
}
