//! Doradus-style tenant management at `/_tenants`, over the one tenant model:
//! - `POST /_tenants`: creates (201; 409 when the name is taken). With no users
//!   given, a user and password are made up and shown in this response only.
//! - `GET /_tenants`: every tenant with its applications (the apps its routes
//!   lead to, and `upstream`).
//! - `GET /_tenants/{tenant}`: name, user names, options. Passwords are never
//!   returned: they are stored as Argon2id hashes.
//! - `PUT /_tenants/{tenant}`: adds users, changes passwords, sets options.
//! - `DELETE /_tenants/{tenant}`: stops serving the tenant at once; it can be
//!   restored with its configuration (`POST /_tenants/{tenant}/_restore`) for
//!   the restore grace period, or purged now with `?purge=true`.
//!
//! XML by default; JSON with `?format=json` or an `Accept` that prefers it.
//! Request bodies are read as XML or JSON by their `Content-Type` (415 for any
//! other). Errors: `<error>message</error>` or `{"error": "message"}`.
//! Super-user Basic credentials only.

use crate::http::{
    Body, BodyError, Gateway, Param, Router, SuperUser, Surface, full, methods, mount, read_limited,
};
use crate::manage::{self, Created, ManageError, NewUser, TenantSpec, TenantUpdate};
use crate::tenancy::Tenant;
use axum::extract::{Request, State};
use axum::routing::{get, post};
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use http::request::Parts;
use http::{Response, StatusCode};
use quick_xml::escape::escape;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// The API's path.
pub const PREFIX: &str = "/_tenants";

/// Who history names as the author of changes made here.
const PRINCIPAL: &str = "super-user";

/// A document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Xml,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "application/xml; charset=utf-8",
            Format::Json => "application/json",
        }
    }

    /// The format of the answer: `?format=` first, else the first media range of
    /// `Accept` that names one, else XML.
    fn of(uri: &http::Uri, headers: &http::HeaderMap) -> Format {
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
    name: Option<String>,
    users: Vec<NewUser>,
    options: Vec<(String, String)>,
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
    fn parse(content_type: Option<&str>, body: &[u8], path_tenant: Option<&str>) -> Parsed {
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

enum Parsed {
    Ok(Definition),
    Invalid(String),
    Unsupported,
}

/// Where the XML reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XmlPlace {
    Tenant,
    Users,
    User,
    Options,
    Option,
}

fn attributes(e: &BytesStart<'_>, allowed: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("The XML document is malformed: {e}"))?;
        let key = String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned();
        if !allowed.contains(&key.as_str()) {
            return Err(format!(
                "Unexpected attribute '{key}' on <{}>",
                String::from_utf8_lossy(e.local_name().as_ref())
            ));
        }
        let value = attr
            .unescape_value()
            .map_err(|e| format!("The XML document is malformed: {e}"))?;
        out.push((key, value.into_owned()));
    }
    Ok(out)
}

fn attribute(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// `<tenant name="..."><users><user name=".." password=".."/></users>
/// <options><option name="..">value</option></options></tenant>`.
pub(crate) fn parse_xml(body: &[u8]) -> Result<Definition, String> {
    let text = std::str::from_utf8(body).map_err(|_| "The XML document is not UTF-8")?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut def = Definition::default();
    let mut stack: Vec<XmlPlace> = Vec::new();
    let mut seen_root = false;
    let mut option: Option<(String, String)> = None;
    let malformed = |e: &dyn std::fmt::Display| format!("The XML document is malformed: {e}");
    loop {
        let event = reader.read_event().map_err(|e| malformed(&e))?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let local = e.local_name();
            let name = String::from_utf8_lossy(local.as_ref());
            let place = match (stack.last(), name.as_ref()) {
                (None, "tenant") if !seen_root => {
                    seen_root = true;
                    def.name = attribute(&attributes(e, &["name"])?, "name");
                    XmlPlace::Tenant
                }
                (Some(XmlPlace::Tenant), "users") => XmlPlace::Users,
                (Some(XmlPlace::Tenant), "options") => XmlPlace::Options,
                (Some(XmlPlace::Users), "user") => {
                    let attrs = attributes(e, &["name", "password"])?;
                    let user = attribute(&attrs, "name").ok_or("A <user> needs a name")?;
                    let password = attribute(&attrs, "password")
                        .ok_or_else(|| format!("User '{user}' needs a password"))?;
                    def.add_user(user, password)?;
                    XmlPlace::User
                }
                (Some(XmlPlace::Options), "option") => {
                    let attrs = attributes(e, &["name"])?;
                    let name = attribute(&attrs, "name").ok_or("An <option> needs a name")?;
                    option = Some((name, String::new()));
                    XmlPlace::Option
                }
                (None, _) => {
                    return Err(format!(
                        "The document must be one <tenant> element, not <{name}>"
                    ));
                }
                (Some(_), _) => return Err(format!("Unexpected element <{name}>")),
            };
            stack.push(place);
            if !empty {
                continue;
            }
        }
        match event {
            Event::Start(_) | Event::Empty(_) | Event::End(_) => {
                if stack.pop() == Some(XmlPlace::Option)
                    && let Some((name, value)) = option.take()
                {
                    def.add_option(name, value.trim().to_owned())?;
                }
            }
            Event::Text(t) => {
                let t = t.decode().map_err(|e| malformed(&e))?;
                match option.as_mut() {
                    Some((_, value)) => value.push_str(&t),
                    None if t.trim().is_empty() => {}
                    None => return Err(format!("Unexpected text '{}'", t.trim())),
                }
            }
            Event::CData(t) => {
                let t = t.decode().map_err(|e| malformed(&e))?;
                match option.as_mut() {
                    Some((_, value)) => value.push_str(&t),
                    None => return Err(format!("Unexpected text '{t}'")),
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| malformed(&e))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| malformed(&e))?;
                        quick_xml::escape::resolve_xml_entity(&name)
                            .ok_or_else(|| format!("Unknown entity '&{name};'"))?
                            .to_owned()
                    }
                };
                match option.as_mut() {
                    Some((_, value)) => value.push_str(&resolved),
                    None => return Err(format!("Unexpected text '{resolved}'")),
                }
            }
            Event::DocType(_) => return Err("Document type declarations are not accepted".into()),
            Event::Eof if stack.is_empty() => break,
            Event::Eof => return Err("The XML document ends inside an element".into()),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
        }
    }
    if !seen_root {
        return Err("The document must be one <tenant> element".into());
    }
    Ok(def)
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
        Format::Xml => {
            let mut out = format!(r#"<tenant name="{}"><users>"#, escape(name));
            for u in users {
                let _ = write!(out, r#"<user name="{}""#, escape(u.name));
                if let Some(p) = u.password {
                    let _ = write!(out, r#" password="{}""#, escape(p));
                }
                out.push_str("/>");
            }
            out.push_str("</users>");
            if !options.is_empty() {
                out.push_str("<options>");
                for (k, v) in options {
                    let _ = write!(
                        out,
                        r#"<option name="{}">{}</option>"#,
                        escape(k),
                        escape(v)
                    );
                }
                out.push_str("</options>");
            }
            out.push_str("</tenant>");
            out
        }
        Format::Json => {
            let users: Map<String, Value> = users
                .iter()
                .map(|u| {
                    let v = match u.password {
                        Some(p) => json!({ "password": p }),
                        None => json!({}),
                    };
                    (u.name.to_owned(), v)
                })
                .collect();
            let mut def = json!({ "users": users });
            if !options.is_empty() {
                def["options"] = json!(options);
            }
            json!({ name: def }).to_string()
        }
    }
}

/// A tenant as `GET /_tenants/{tenant}` shows it.
fn stored_document(format: Format, tenant: &Tenant) -> String {
    let users: Vec<ShownUser<'_>> = tenant
        .doc
        .users
        .keys()
        .map(|name| ShownUser {
            name,
            password: None,
        })
        .collect();
    tenant_document(format, tenant.name.as_str(), &users, &tenant.doc.options)
}

fn created_document(format: Format, created: &Created, given: &[NewUser]) -> String {
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
        &created.tenant.doc.options,
    )
}

fn list_document(format: Format, gw: &Gateway) -> String {
    let dir = gw.runtime.shared().directory.load();
    let mut tenants: Vec<_> = dir.iter().collect();
    tenants.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    match format {
        Format::Xml => {
            let mut out = String::from("<tenants>");
            for t in tenants {
                let _ = write!(
                    out,
                    r#"<tenant name="{}"><applications>"#,
                    escape(t.name.as_str())
                );
                for app in dir.applications(t) {
                    let _ = write!(out, "<value>{}</value>", escape(app.as_str()));
                }
                out.push_str("</applications></tenant>");
            }
            out.push_str("</tenants>");
            out
        }
        Format::Json => {
            let all: Map<String, Value> = tenants
                .into_iter()
                .map(|t| {
                    let apps = dir.applications(t);
                    (t.name.as_str().to_owned(), json!({ "applications": apps }))
                })
                .collect();
            json!({ "tenants": all }).to_string()
        }
    }
}

fn answer(status: StatusCode, format: Format, body: String) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}

fn fail(status: StatusCode, format: Format, message: &str) -> Response<Body> {
    let body = match format {
        Format::Xml => format!("<error>{}</error>", escape(message)),
        Format::Json => json!({ "error": message }).to_string(),
    };
    answer(status, format, body)
}

fn failure(format: Format, e: ManageError) -> Response<Body> {
    fail(e.status(), format, &e.public_message())
}

/// Reads and parses the body of a create or update.
#[allow(clippy::result_large_err)]
async fn definition(
    gw: &Gateway,
    req: Request,
    format: Format,
    path_tenant: Option<&str>,
) -> Result<Definition, Response<Body>> {
    let req = read_limited(gw, req)
        .await
        .map_err(|e: BodyError| fail(e.status(), format, &e.to_string()))?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?"));
    match Definition::parse(content_type, req.body(), path_tenant) {
        Parsed::Ok(def) => Ok(def),
        Parsed::Invalid(message) => Err(fail(StatusCode::BAD_REQUEST, format, &message)),
        Parsed::Unsupported => Err(fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format,
            "Send the tenant definition as application/xml or application/json",
        )),
    }
}

/// The API's errors (in the request's format), and its label.
struct Doradus;

impl Surface for Doradus {
    const ROUTE: &'static str = "tenants";

    fn error(parts: &Parts, status: StatusCode, message: &str) -> Response<Body> {
        fail(status, Format::of(&parts.uri, &parts.headers), message)
    }
}

/// The routes under [`PREFIX`] (super-user only).
pub fn routes() -> Router {
    mount::<Doradus>(
        PREFIX,
        [
            ("/", methods::<Doradus>(get(list).post(create))),
            (
                "/{tenant}",
                methods::<Doradus>(get(read).put(update).delete(delete)),
            ),
            ("/{tenant}/_restore", methods::<Doradus>(post(restore))),
        ],
    )
}

impl<State: Send + Sync> axum::extract::FromRequestParts<State> for Format {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &State) -> Result<Self, Self::Rejection> {
        Ok(Format::of(&parts.uri, &parts.headers))
    }
}

async fn list(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
) -> Response<Body> {
    answer(StatusCode::OK, format, list_document(format, &gw))
}

async fn create(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
    req: Request,
) -> Response<Body> {
    let def = match definition(&gw, req, format, None).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let Some(name) = def.name else {
        return fail(
            StatusCode::BAD_REQUEST,
            format,
            "The tenant definition needs a name",
        );
    };
    let spec = TenantSpec {
        users: def.users.clone(),
        options: def.options,
        hono: None,
        generate_user: true,
    };
    match manage::create(
        &gw.runtime,
        &gw.auth.hasher,
        PRINCIPAL.to_owned(),
        &name,
        spec,
    )
    .await
    {
        Ok(created) => {
            let body = created_document(format, &created, &def.users);
            let mut resp = answer(StatusCode::CREATED, format, body);
            let location = format!("{PREFIX}/{}", created.tenant.name);
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(LOCATION, v);
            }
            // It may carry a generated password.
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => failure(format, e),
    }
}

/// A tenant as stored (200), or why not.
fn stored(format: Format, result: Result<Arc<Tenant>, ManageError>) -> Response<Body> {
    match result {
        Ok(t) => answer(StatusCode::OK, format, stored_document(format, &t)),
        Err(e) => failure(format, e),
    }
}

async fn restore(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
    Param(name, ..): Param<Doradus>,
) -> Response<Body> {
    stored(
        format,
        manage::restore(&gw.runtime, PRINCIPAL.to_owned(), &name).await,
    )
}

async fn read(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
    Param(name, ..): Param<Doradus>,
) -> Response<Body> {
    match gw.runtime.shared().directory.load().get(&name) {
        Some(t) => answer(StatusCode::OK, format, stored_document(format, t)),
        None => failure(format, ManageError::NotFound(name)),
    }
}

async fn update(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
    Param(name, ..): Param<Doradus>,
    req: Request,
) -> Response<Body> {
    let def = match definition(&gw, req, format, Some(&name)).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    if let Some(other) = def.name.as_deref()
        && !other.eq_ignore_ascii_case(&name)
    {
        return fail(
            StatusCode::BAD_REQUEST,
            format,
            &format!("The document names tenant '{other}', the path '{name}'"),
        );
    }
    let update = TenantUpdate {
        users: def.users,
        options: def.options,
        hono: None,
    };
    let updated = manage::update(
        &gw.runtime,
        &gw.auth.hasher,
        PRINCIPAL.to_owned(),
        &name,
        update,
    )
    .await;
    stored(format, updated)
}

async fn delete(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
    Param(name, ..): Param<Doradus>,
    req: Request,
) -> Response<Body> {
    let rt = &gw.runtime;
    let principal = || PRINCIPAL.to_owned();
    let purge = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .any(|(k, v)| k == "purge" && v.eq_ignore_ascii_case("true"));
    let result = match manage::delete(rt, principal(), &name).await {
        Ok(()) if !purge => Ok(()),
        Ok(()) | Err(ManageError::NotFound(_)) if purge => {
            manage::purge(rt, principal(), &name).await
        }
        other => other,
    };
    match result {
        Ok(()) => {
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
        Err(e) => failure(format, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            json!({"T": {"users": {"a\"b": {"password": "p<&>"}, "c": {}}, "options": {"ReplicationFactor": "3"}}})
        );
    }
}
