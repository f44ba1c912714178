//! Distinguished names (RFC 2253) compared as names, not as strings: attribute
//! types in any case or as OIDs, spaces around separators, escaped or quoted
//! values and the case of values (the standard string attributes match
//! case-insensitively) do not make two names different. The order of the RDNs
//! does; the order of the attributes inside a multi-valued RDN does not.

/// Why a text is not a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not an RFC 2253 distinguished name: {problem}")]
pub struct DnError {
    text: String,
    problem: &'static str,
}

/// Attribute types with a short name, by OID.
const KNOWN: [(&str, &str); 11] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("1.2.840.113549.1.9.1", "EMAILADDRESS"),
];

fn attribute_type(raw: &str) -> Option<String> {
    let t = raw.trim();
    let t = t
        .strip_prefix("OID.")
        .or_else(|| t.strip_prefix("oid."))
        .unwrap_or(t);
    if t.is_empty() {
        return None;
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Some(
            KNOWN
                .iter()
                .find(|(oid, _)| *oid == t)
                .map_or_else(|| t.to_owned(), |(_, name)| (*name).to_owned()),
        );
    }
    if !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let upper = t.to_ascii_uppercase();
    Some(match upper.as_str() {
        "S" => "ST".to_owned(),
        "E" => "EMAILADDRESS".to_owned(),
        _ => upper,
    })
}

/// The canonical text of a distinguished name: two names are the same name when
/// their canonical texts are equal.
pub fn canonical(text: &str) -> Result<String, DnError> {
    let fail = |problem| DnError {
        text: text.to_owned(),
        problem,
    };
    let mut rdns: Vec<Vec<(String, String)>> = vec![Vec::new()];
    let mut chars = text.chars().peekable();
    loop {
        // Attribute type, up to '='.
        let mut ty = String::new();
        loop {
            match chars.next() {
                Some('=') => break,
                Some(',' | ';' | '+') => return Err(fail("an attribute lacks '='")),
                Some(c) => ty.push(c),
                None if ty.trim().is_empty() && rdns.len() == 1 && rdns[0].is_empty() => {
                    return Err(fail("it is empty"));
                }
                None => return Err(fail("an attribute lacks '='")),
            }
        }
        let ty = attribute_type(&ty).ok_or_else(|| fail("an attribute type is invalid"))?;
        // Value, up to an unescaped ',', ';' or '+'.
        while chars.peek().is_some_and(|c| *c == ' ') {
            chars.next();
        }
        let mut value = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut hex_form = false;
        let mut quoted = false;
        let mut trailing_escaped = 0usize;
        if chars.peek() == Some(&'#') {
            hex_form = true;
        } else if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
        }
        let mut end = None;
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted => {
                    quoted = false;
                    trailing_escaped = usize::MAX;
                }
                ',' | ';' | '+' if !quoted => {
                    end = Some(c);
                    break;
                }
                '\\' => {
                    let n = chars.next().ok_or_else(|| fail("it ends in '\\'"))?;
                    if n.is_ascii_hexdigit() {
                        let m = chars
                            .next()
                            .filter(char::is_ascii_hexdigit)
                            .ok_or_else(|| fail("a \\XX escape is not two hex digits"))?;
                        let byte = u8::from_str_radix(&format!("{n}{m}"), 16).expect("hex");
                        bytes.push(byte);
                    } else {
                        flush(&mut bytes, &mut value)
                            .map_err(|()| fail("an escape is not UTF-8"))?;
                        value.push(n);
                    }
                    trailing_escaped = value.len() + bytes.len();
                }
                c => {
                    flush(&mut bytes, &mut value).map_err(|()| fail("an escape is not UTF-8"))?;
                    value.push(c);
                }
            }
        }
        if quoted {
            return Err(fail("a quoted value is not closed"));
        }
        flush(&mut bytes, &mut value).map_err(|()| fail("an escape is not UTF-8"))?;
        // Unescaped trailing spaces are not part of the value.
        while value.ends_with(' ') && value.len() > trailing_escaped {
            value.pop();
        }
        let value = if hex_form {
            value.to_ascii_lowercase()
        } else {
            value
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        };
        rdns.last_mut().expect("one rdn").push((ty, value));
        match end {
            Some('+') => {}
            Some(_) => rdns.push(Vec::new()),
            None => break,
        }
    }
    if rdns.iter().any(Vec::is_empty) {
        return Err(fail("an RDN is empty"));
    }
    let mut out = String::new();
    for (i, rdn) in rdns.iter_mut().enumerate() {
        rdn.sort();
        if i > 0 {
            out.push(',');
        }
        for (j, (ty, value)) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(ty);
            out.push('=');
            escape_into(value, &mut out);
        }
    }
    Ok(out)
}

fn flush(bytes: &mut Vec<u8>, value: &mut String) -> Result<(), ()> {
    if !bytes.is_empty() {
        value.push_str(std::str::from_utf8(bytes).map_err(drop)?);
        bytes.clear();
    }
    Ok(())
}

fn escape_into(value: &str, out: &mut String) {
    for (i, c) in value.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' ') && !value.starts_with("#"))
        {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) {
        assert_eq!(canonical(a).unwrap(), canonical(b).unwrap(), "{a} vs {b}");
    }

    #[test]
    fn spacing_and_case_of_types_and_values_do_not_matter() {
        same(
            "CN=devices,O=ACME Corporation",
            "cn = devices , o=ACME  Corporation",
        );
        same("CN=ca,OU=Hono,O=Eclipse", "Cn=CA; ou=hono;o=eclipse ");
        same("2.5.4.3=ca,O=Eclipse", "CN=ca,OID.2.5.4.10=Eclipse");
        same("CN=a+OU=b,O=c", "OU=b + CN=a,O=c");
        same("CN=Acme\\, Inc.,O=x", "CN=\"Acme, Inc.\",O=x");
        same("CN=Acme\\2C Inc.,O=x", "CN=Acme\\, Inc.,O=x");
        assert_eq!(canonical("cn=a\\,b, o = X").unwrap(), "CN=a\\,b,O=x");
    }

    #[test]
    fn different_names_stay_different() {
        let a = canonical("CN=devices,O=ACME").unwrap();
        assert_ne!(a, canonical("O=ACME,CN=devices").unwrap());
        assert_ne!(a, canonical("CN=devices,O=ACME2").unwrap());
        assert_ne!(a, canonical("CN=devices,OU=ACME").unwrap());
        assert_ne!(
            canonical("CN=a\\,O=b").unwrap(),
            canonical("CN=a,O=b").unwrap()
        );
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "",
            "CN",
            "CN=a,",
            "CN=a,,O=b",
            "=a",
            "CN=\"open",
            "CN=a\\",
            "C N=a",
            "CN=\\zz",
        ] {
            // `\z` is a legal escape of `z`; only the others must fail.
            if bad == "CN=\\zz" {
                assert!(canonical(bad).is_ok());
                continue;
            }
            assert!(canonical(bad).is_err(), "{bad:?} accepted");
        }
    }
}
