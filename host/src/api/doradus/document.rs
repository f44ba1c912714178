//! The documents of `/_tenants`: a tenant definition read from XML or JSON
//! (by `Content-Type`), and answers written in the format the client asked
//! for (`?format=`, then `Accept`, else XML). XML is read and written through
//! quick-xml's serde support; a document is first checked whole (one
//! `<tenant>` root, no document type declaration, so no entity definitions).

use crate::manage::{Created, NewUser};
use crate::tenancy::{Directory, Tenant};
use http::header::ACCEPT;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Xml,
    Json,
}

impl Format {
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "application/xml; charset=utf-8",
            Format::Json => "application/json",
        }
    }

    /// The format of the answer: `?format=` first, else the first media range of
    /// `Accept` that names one, else XML.
    pub(super) fn of(uri: &http::Uri, headers: &http::HeaderMap) -> Format {
        let query = uri.query().unwrap_or("");
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if k == "format" {
                if v.eq_ignore_ascii_case("json") {
                    return Format::Json;
                }
                if v.eq_ignore_ascii_case("xml") {
                    return Format::Xml;
                }
            }
        }
        let accept = headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        accept
            .split(',')
            .find_map(|range| Format::of_media_type(range.split(';').next().unwrap_or("")))
            .unwrap_or(Format::Xml)
    }

    fn of_media_type(media: &str) -> Option<Format> {
        let media = media.trim().to_ascii_lowercase();
        if media == "application/json" || media.ends_with("+json") {
            Some(Format::Json)
        } else if media == "application/xml" || media == "text/xml" || media.ends_with("+xml") {
            Some(Format::Xml)
        } else {
            None
        }
    }
}

/// A tenant definition as a request carries it.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Definition {
    pub(super) name: Option<String>,
    pub(super) users: Vec<NewUser>,
    pub(super) options: Vec<(String, String)>,
}

impl Definition {
    fn add_user(&mut self, name: String, password: String) -> Result<(), String> {
        if self.users.iter().any(|u| u.name == name) {
            return Err(format!("User '{name}' is named twice"));
        }
        self.users.push(NewUser { name, password });
        Ok(())
    }

    fn add_option(&mut self, name: String, value: String) -> Result<(), String> {
        if self
            .options
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            return Err(format!("Option '{name}' is given twice"));
        }
        self.options.push((name, value));
        Ok(())
    }

    /// Reads a body by its `Content-Type` (none: by its first character).
    pub(super) fn parse(
        content_type: Option<&str>,
        body: &[u8],
        path_tenant: Option<&str>,
    ) -> Parsed {
        let format = match content_type {
            Some(ct) => match Format::of_media_type(ct.split(';').next().unwrap_or("")) {
                Some(f) => f,
                None => return Parsed::Unsupported,
            },
            None => match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') => Format::Json,
                _ => Format::Xml,
            },
        };
        let result = match format {
            Format::Xml => parse_xml(body),
            Format::Json => parse_json(body, path_tenant),
        };
        match result {
            Ok(def) => Parsed::Ok(def),
            Err(e) => Parsed::Invalid(e),
        }
    }
}

pub(super) enum Parsed {
    Ok(Definition),
    Invalid(String),
    Unsupported,
}

/// `<tenant name="..."><users><user name=".." password=".."/></users>
/// <options><option name="..">value</option></options></tenant>`, as
/// quick-xml's serde reads it (`@` an attribute, `$text` an element's text).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct XmlTenant {
    #[serde(rename = "@name")]
    name: Option<String>,
    users: Option<XmlUsers>,
    options: Option<XmlOptions>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct XmlUsers {
    #[serde(default)]
    user: Vec<XmlUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct XmlUser {
    #[serde(rename = "@name")]
    name: Option<String>,
    #[serde(rename = "@password")]
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct XmlOptions {
    #[serde(default)]
    option: Vec<XmlOption>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct XmlOption {
    #[serde(rename = "@name")]
    name: Option<String>,
    #[serde(rename = "$text", default)]
    value: String,
}

/// The document as a whole, before serde reads its element: UTF-8, well
/// formed, one `<tenant>` root, and no document type declaration (none of
/// its entity definitions, so no entity expansion: only XML's five entities
/// and character references are read).
fn xml_framing(body: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(body).map_err(|_| "The XML document is not UTF-8")?;
    let malformed = |e: &dyn std::fmt::Display| format!("The XML document is malformed: {e}");
    let mut reader = quick_xml::Reader::from_str(text);
    let (mut depth, mut roots) = (0usize, 0usize);
    loop {
        let event = reader.read_event().map_err(|e| malformed(&e))?;
        match &event {
            Event::DocType(_) => return Err("Document type declarations are not accepted".into()),
            Event::Start(e) | Event::Empty(e) => {
                if depth == 0 {
                    let local = e.local_name();
                    let name = String::from_utf8_lossy(local.as_ref());
                    if name != "tenant" {
                        return Err(format!(
                            "The document must be one <tenant> element, not <{name}>"
                        ));
                    }
                    roots += 1;
                    if roots > 1 {
                        return Err("The document must be one <tenant> element".into());
                    }
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) if depth == 0 && !t.iter().all(u8::is_ascii_whitespace) => {
                return Err("Unexpected text outside <tenant>".into());
            }
            Event::CData(_) if depth == 0 => {
                return Err("Unexpected text outside <tenant>".into());
            }
            Event::GeneralRef(r) if r.resolve_char_ref().map_err(|e| malformed(&e))?.is_none() => {
                let name = r.decode().map_err(|e| malformed(&e))?;
                if quick_xml::escape::resolve_xml_entity(&name).is_none() {
                    return Err(format!("Unknown entity '&{name};'"));
                }
            }
            Event::Eof if depth == 0 => break,
            Event::Eof => return Err("The XML document ends inside an element".into()),
            _ => {}
        }
    }
    if roots == 0 {
        return Err("The document must be one <tenant> element".into());
    }
    Ok(text)
}

/// A tenant definition in XML.
pub(crate) fn parse_xml(body: &[u8]) -> Result<Definition, String> {
    let text = xml_framing(body)?;
    let tenant: XmlTenant = quick_xml::de::from_str(text).map_err(|e| xml_reason(&e))?;
    let mut def = Definition {
        name: tenant.name,
        ..Definition::default()
    };
    for user in tenant.users.map(|u| u.user).unwrap_or_default() {
        let name = user.name.ok_or("A <user> needs a name")?;
        let password = user
            .password
            .ok_or_else(|| format!("User '{name}' needs a password"))?;
        def.add_user(name, password)?;
    }
    for option in tenant.options.map(|o| o.option).unwrap_or_default() {
        let name = option.name.ok_or("An <option> needs a name")?;
        def.add_option(name, option.value.trim().to_owned())?;
    }
    Ok(def)
}

/// Why serde refused a well-framed document, in the API's words: serde names
/// an attribute `@name`, an element `name` and text `$text`.
fn xml_reason(e: &quick_xml::DeError) -> String {
    let text = e.to_string();
    let named = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(field) = named("unknown field `").or_else(|| named("duplicate field `")) {
        return match field.strip_prefix('@') {
            Some(attribute) => format!("Unexpected attribute '{attribute}'"),
            None if field == "$text" => "Unexpected text".to_owned(),
            None => format!("Unexpected element <{field}>"),
        };
    }
    format!("The XML document is malformed: {text}")
}

/// `{"Name": {"users": {"u": {"password": "p"}}, "options": {"o": "v"}}}`; an
/// update may also send the inner object alone.
pub(crate) fn parse_json(body: &[u8], path_tenant: Option<&str>) -> Result<Definition, String> {
    let value = crate::http::json::parse(body)
        .map_err(|e| format!("The JSON document is malformed: {e}"))?;
    let Value::Object(outer) = value else {
        return Err("The JSON document must be an object".into());
    };
    let is_member = |k: &str| k == "users" || k == "options";
    let names_path = |k: &str| path_tenant.is_some_and(|p| p.eq_ignore_ascii_case(k));
    let mut def = Definition::default();
    let inner = match outer.iter().next() {
        Some((name, inner))
            if outer.len() == 1
                && (names_path(name) || !is_member(name) || path_tenant.is_none()) =>
        {
            def.name = Some(name.clone());
            match inner {
                Value::Object(m) => m.clone(),
                Value::Null => Map::new(),
                _ => {
                    return Err(format!(
                        "The definition of tenant '{name}' must be an object"
                    ));
                }
            }
        }
        _ if path_tenant.is_some() && outer.keys().all(|k| is_member(k)) => outer,
        _ => {
            return Err(
                r#"The document must be one member named after the tenant: {"name": {"users": {...}, "options": {...}}}"#
                    .into(),
            );
        }
    };
    for (key, value) in inner {
        let Value::Object(members) = value else {
            return Err(format!("'{key}' must be an object"));
        };
        match key.as_str() {
            "users" => {
                for (user, v) in members {
                    let password = v
                        .get("password")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("User '{user}' needs a password (a string)"))?;
                    def.add_user(user, password.to_owned())?;
                }
            }
            "options" => {
                for (name, v) in members {
                    let v = match v {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        _ => return Err(format!("Option '{name}' must be a string or a number")),
                    };
                    def.add_option(name, v)?;
                }
            }
            other => return Err(format!("Unexpected member '{other}'")),
        }
    }
    Ok(def)
}

/// Answers in XML, written by quick-xml's serde (which escapes).
#[derive(Serialize)]
#[serde(rename = "tenant")]
struct XmlTenantOut<'a> {
    #[serde(rename = "@name")]
    name: &'a str,
    users: XmlUsersOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<XmlOptionsOut<'a>>,
}

#[derive(Serialize)]
struct XmlUsersOut<'a> {
    user: Vec<XmlUserOut<'a>>,
}

#[derive(Serialize)]
struct XmlUserOut<'a> {
    #[serde(rename = "@name")]
    name: &'a str,
    #[serde(rename = "@password", skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
}

#[derive(Serialize)]
struct XmlOptionsOut<'a> {
    option: Vec<XmlOptionOut<'a>>,
}

#[derive(Serialize)]
struct XmlOptionOut<'a> {
    #[serde(rename = "@name")]
    name: &'a str,
    #[serde(rename = "$text")]
    value: &'a str,
}

#[derive(Serialize)]
#[serde(rename = "tenants")]
struct XmlTenantsOut<'a> {
    tenant: Vec<XmlListedOut<'a>>,
}

#[derive(Serialize)]
struct XmlListedOut<'a> {
    #[serde(rename = "@name")]
    name: &'a str,
    applications: XmlApplicationsOut,
}

#[derive(Serialize)]
struct XmlApplicationsOut {
    value: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename = "error")]
struct XmlErrorOut<'a> {
    #[serde(rename = "$text")]
    message: &'a str,
}

/// A tenant in JSON: one member, named after the tenant (in XML:
/// `<tenant name="…"><users><user name="…" password="…"/></users><options><option
/// name="…">value</option></options></tenant>`).
#[derive(Serialize, ToSchema)]
#[schema(as = DoradusTenant, example = json!({"HelloKitty": {"users": {"Katniss": {"password": "Everdeen-1"}}, "options": {"ReplicationFactor": "3"}}}))]
pub(super) struct JsonTenant<'a>(BTreeMap<&'a str, JsonDefinition<'a>>);

/// A tenant's users and options.
#[derive(Serialize, ToSchema)]
#[schema(as = DoradusDefinition)]
pub(super) struct JsonDefinition<'a> {
    /// By name.
    users: BTreeMap<&'a str, JsonUser<'a>>,
    /// `ReplicationFactor` (1-100), `Tier` (Basic, Pro, Enterprise).
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<&'a BTreeMap<String, String>>,
}

/// A user: the password only in requests and in the create answer of a user
/// made up (shown that once).
#[derive(Serialize, ToSchema)]
#[schema(as = DoradusUser)]
pub(super) struct JsonUser<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    password: Option<&'a str>,
}

/// Every tenant with its applications.
#[derive(Serialize, ToSchema)]
#[schema(as = DoradusTenantList)]
pub(super) struct JsonTenants<'a> {
    tenants: BTreeMap<&'a str, JsonListed>,
}

/// A tenant in the list: the apps its routes lead to, and `upstream`.
#[derive(Serialize, ToSchema)]
#[schema(as = DoradusListed)]
pub(super) struct JsonListed {
    applications: Vec<String>,
}

/// An error (in XML: `<error>message</error>`).
#[derive(Serialize, ToSchema)]
#[schema(as = DoradusError)]
pub(super) struct JsonError<'a> {
    error: &'a str,
}

/// `document` as JSON text.
fn json_text(document: &impl Serialize) -> String {
    serde_json::to_string(document).expect("answers serialize to JSON")
}

/// `document` as XML text.
fn xml(document: &impl Serialize) -> String {
    quick_xml::se::to_string(document).expect("answers serialize to XML")
}

/// An error document.
pub(super) fn error_document(format: Format, message: &str) -> String {
    match format {
        Format::Xml => xml(&XmlErrorOut { message }),
        Format::Json => json_text(&JsonError { error: message }),
    }
}

/// A user in an answer: the name, and the password only when just made up.
struct ShownUser<'a> {
    name: &'a str,
    password: Option<&'a str>,
}

fn tenant_document(
    format: Format,
    name: &str,
    users: &[ShownUser<'_>],
    options: &BTreeMap<String, String>,
) -> String {
    match format {
        Format::Xml => xml(&XmlTenantOut {
            name,
            users: XmlUsersOut {
                user: users
                    .iter()
                    .map(|u| XmlUserOut {
                        name: u.name,
                        password: u.password,
                    })
                    .collect(),
            },
            options: (!options.is_empty()).then(|| XmlOptionsOut {
                option: options
                    .iter()
                    .map(|(name, value)| XmlOptionOut { name, value })
                    .collect(),
            }),
        }),
        Format::Json => json_text(&JsonTenant(BTreeMap::from([(
            name,
            JsonDefinition {
                users: users
                    .iter()
                    .map(|u| {
                        (
                            u.name,
                            JsonUser {
                                password: u.password,
                            },
                        )
                    })
                    .collect(),
                options: (!options.is_empty()).then_some(options),
            },
        )]))),
    }
}

/// A tenant as `GET /_tenants/{tenant}` shows it.
pub(super) fn stored_document(format: Format, tenant: &Tenant) -> String {
    let users: Vec<ShownUser<'_>> = tenant
        .doc()
        .users
        .keys()
        .map(|name| ShownUser {
            name,
            password: None,
        })
        .collect();
    tenant_document(format, tenant.name.as_str(), &users, &tenant.doc().options)
}

pub(super) fn created_document(format: Format, created: &Created, given: &[NewUser]) -> String {
    let users: Vec<ShownUser<'_>> = match &created.generated {
        Some(u) => vec![ShownUser {
            name: &u.name,
            password: Some(&u.password),
        }],
        None => given
            .iter()
            .map(|u| ShownUser {
                name: &u.name,
                password: None,
            })
            .collect(),
    };
    tenant_document(
        format,
        created.tenant.name.as_str(),
        &users,
        &created.tenant.doc().options,
    )
}

pub(super) fn list_document(format: Format, dir: &Directory) -> String {
    let mut tenants: Vec<_> = dir.iter().collect();
    tenants.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    match format {
        Format::Xml => xml(&XmlTenantsOut {
            tenant: tenants
                .into_iter()
                .map(|t| XmlListedOut {
                    name: t.name.as_str(),
                    applications: XmlApplicationsOut {
                        value: dir.applications(t),
                    },
                })
                .collect(),
        }),
        Format::Json => json_text(&JsonTenants {
            tenants: tenants
                .into_iter()
                .map(|t| {
                    (
                        t.name.as_str(),
                        JsonListed {
                            applications: dir.applications(t),
                        },
                    )
                })
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn user(name: &str, password: &str) -> NewUser {
        NewUser {
            name: name.into(),
            password: password.into(),
        }
    }

    #[test]
    fn xml_definitions_parse() {
        let def = parse_xml(
            br#"<?xml version="1.0"?>
            <tenant name="HelloKitty">
              <users><user name="Katniss" password="Ever&amp;deen"/></users>
              <!-- a comment -->
              <options><option name="ReplicationFactor"> 3 </option></options>
            </tenant>"#,
        )
        .unwrap();
        assert_eq!(def.name.as_deref(), Some("HelloKitty"));
        assert_eq!(def.users.len(), 1);
        assert_eq!(def.users[0].name, "Katniss");
        assert_eq!(def.users[0].password, "Ever&deen");
        assert_eq!(def.options, vec![("ReplicationFactor".into(), "3".into())]);

        let def =
            parse_xml(b"<tenant><users><user name='a' password='x&#65;y'></user></users></tenant>")
                .unwrap();
        assert_eq!(def.name, None);
        assert_eq!(def.users[0].password, "xAy");
        let def = parse_xml(
            b"<tenant name='t'><options><option name='Tier'>P&lt;ro</option></options></tenant>",
        )
        .unwrap();
        assert_eq!(def.options, vec![("Tier".into(), "P<ro".into())]);
    }

    /// The same user twice is refused in both formats. (Before: the JSON one
    /// silently kept the last.)
    #[test]
    fn a_user_named_twice_is_refused_in_xml_and_json() {
        let xml = parse_xml(
            b"<tenant name='t'><users><user name='kat' password='a'/><user name='kat' password='b'/></users></tenant>",
        );
        assert!(xml.is_err());
        let json = parse_json(
            br#"{"t": {"users": {"kat": {"password": "a"}, "kat": {"password": "b"}}}}"#,
            None,
        )
        .unwrap_err();
        assert!(json.contains("\"kat\" appears twice"), "{json}");
    }

    #[test]
    fn bad_xml_is_refused_with_a_reason() {
        for (doc, expected) in [
            ("<tenants/>", "one <tenant>"),
            (
                "<tenant><user name='a' password='b'/></tenant>",
                "Unexpected element <user>",
            ),
            (
                "<tenant><users><user name='a'/></users></tenant>",
                "needs a password",
            ),
            (
                "<tenant><users><user password='a'/></users></tenant>",
                "needs a name",
            ),
            ("<tenant name='x' size='2'/>", "Unexpected attribute 'size'"),
            ("<tenant>hello</tenant>", "Unexpected text"),
            ("<tenant><users></tenant>", "malformed"),
            ("<tenant name='x'><users>", "ends inside"),
            ("<tenant/><tenant/>", "one <tenant>"),
            ("", "one <tenant>"),
            ("<!DOCTYPE x [<!ENTITY e 'v'>]><tenant/>", "Document type"),
            (
                "<tenant><users><user name='a' password='1'/><user name='a' password='2'/></users></tenant>",
                "named twice",
            ),
        ] {
            let e = parse_xml(doc.as_bytes()).unwrap_err();
            assert!(e.contains(expected), "{doc}: {e}");
        }
    }

    #[test]
    fn json_definitions_parse() {
        let def = parse_json(
            br#"{"HelloKitty": {"users": {"Katniss": {"password": "Everdeen"}}, "options": {"ReplicationFactor": 3}}}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            def,
            Definition {
                name: Some("HelloKitty".into()),
                users: vec![user("Katniss", "Everdeen")],
                options: vec![("ReplicationFactor".into(), "3".into())],
            }
        );
        // An update may name the tenant or send the definition alone.
        let named =
            parse_json(br#"{"t": {"users": {"a": {"password": "p"}}}}"#, Some("T")).unwrap();
        let bare = parse_json(br#"{"users": {"a": {"password": "p"}}}"#, Some("T")).unwrap();
        assert_eq!(named.users, bare.users);
        assert_eq!(bare.name, None);
        assert_eq!(
            parse_json(br#"{"x": null}"#, None).unwrap().name.as_deref(),
            Some("x")
        );
        for (doc, expected) in [
            ("[]", "must be an object"),
            ("{}", "one member"),
            (r#"{"a": {}, "b": {}}"#, "one member"),
            (r#"{"a": {"users": {"u": {}}}}"#, "needs a password"),
            (r#"{"a": {"roles": {}}}"#, "Unexpected member 'roles'"),
            (r#"{"a": {"options": {"o": [1]}}}"#, "string or a number"),
            (r#"{"a": 5}"#, "must be an object"),
            ("{", "malformed"),
        ] {
            let e = parse_json(doc.as_bytes(), None).unwrap_err();
            assert!(e.contains(expected), "{doc}: {e}");
        }
    }

    #[test]
    fn content_types_choose_the_parser() {
        let xml = b"<tenant name='a'/>";
        let json = br#"{"a": {}}"#;
        for (ct, body) in [
            (Some("application/xml"), &xml[..]),
            (Some("text/xml; charset=utf-8"), &xml[..]),
            (Some("application/json"), &json[..]),
            (Some("application/vnd.x+json"), &json[..]),
            (None, &xml[..]),
            (None, &json[..]),
        ] {
            match Definition::parse(ct, body, None) {
                Parsed::Ok(def) => assert_eq!(def.name.as_deref(), Some("a"), "{ct:?}"),
                _ => panic!("{ct:?} not parsed"),
            }
        }
        assert!(matches!(
            Definition::parse(Some("text/plain"), xml, None),
            Parsed::Unsupported
        ));
        assert!(matches!(
            Definition::parse(Some("application/json"), xml, None),
            Parsed::Invalid(_)
        ));
    }

    #[test]
    fn answers_are_xml_unless_json_is_asked_for() {
        let req = |uri: &str, accept: Option<&str>| {
            let mut b = Request::builder().uri(uri);
            if let Some(a) = accept {
                b = b.header(ACCEPT, a);
            }
            b.body(()).unwrap()
        };
        let of = |r: &Request<()>| Format::of(r.uri(), r.headers());
        assert_eq!(of(&req("/_tenants", None)), Format::Xml);
        assert_eq!(of(&req("/_tenants?format=json", None)), Format::Json);
        assert_eq!(
            of(&req("/_tenants?format=JSON", Some("application/xml"))),
            Format::Json
        );
        assert_eq!(
            of(&req("/_tenants?format=xml", Some("application/json"))),
            Format::Xml
        );
        assert_eq!(
            of(&req("/_tenants", Some("text/html, application/json;q=0.9"))),
            Format::Json
        );
        assert_eq!(of(&req("/_tenants", Some("*/*"))), Format::Xml);
    }

    #[test]
    fn documents_escape_and_show_passwords_only_when_given() {
        let mut options = BTreeMap::new();
        options.insert("ReplicationFactor".to_owned(), "3".to_owned());
        let users = [
            ShownUser {
                name: "a\"b",
                password: Some("p<&>"),
            },
            ShownUser {
                name: "c",
                password: None,
            },
        ];
        let xml = tenant_document(Format::Xml, "T", &users, &options);
        assert_eq!(
            xml,
            r#"<tenant name="T"><users><user name="a&quot;b" password="p&lt;&amp;&gt;"/><user name="c"/></users><options><option name="ReplicationFactor">3</option></options></tenant>"#
        );
        // What we write, we read back.
        let back = parse_xml(xml.replace(r#"<user name="c"/>"#, "").as_bytes()).unwrap();
        assert_eq!(back.users, vec![user("a\"b", "p<&>")]);
        let json: Value =
            serde_json::from_str(&tenant_document(Format::Json, "T", &users, &options)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"T": {"users": {"a\"b": {"password": "p<&>"}, "c": {}}, "options": {"ReplicationFactor": "3"}}})
        );
    }
}
