//! The layering rule, checked on the source: a module imports only from the
//! layers below its own (or from the crate root's file, time and memory helpers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules by layer, lowest first.
const LAYERS: &[&[&str]] = &[
    &["config", "telemetry"],
    &["store"],
    &["tenancy"],
    &["security"],
    &["wasm"],
    &["registry", "manage"],
    &["http"],
    &["api", "traffic", "amqp"],
    &["app"],
];

/// Items of the crate root every layer may use.
const ROOT_ITEMS: &[&str] = &[
    "now_rfc3339",
    "write_whole",
    "temp_beside",
    "return_free_memory",
    "connection_worker",
    "set_connection_worker",
    "push_prefixed",
    "prefixed_parts",
];

/// Imports that still point upward, each with what removes it. The test
/// fails when one is gone (take it off the list) as when a new one appears.
const NOT_YET: &[(&str, &str, &str)] = &[];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a source file belongs to (`None`: the crate root and
/// test-only files, which may use anything).
fn owner(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    match name {
        "lib" | "main" | "fuzz" | "layers" => None,
        other => Some(other.to_owned()),
    }
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::name` a file's code (not its comments) names, from outside
/// its own module, with the first line naming it.
fn imports(text: &str) -> BTreeMap<String, usize> {
    let mut found = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.entry(name).or_insert(n + 1);
            }
        }
    }
    found
}

#[test]
fn no_module_imports_upward() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut upward = BTreeSet::new();
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap();
        let Some(module) = owner(relative) else {
            continue;
        };
        let Some(own) = rank(&module) else {
            problems.push(format!("{}: {module} is in no layer", relative.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests may reach anywhere.
        let code = text
            .split("\n#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        for (dep, line) in imports(code) {
            if dep == module || ROOT_ITEMS.contains(&dep.as_str()) {
                continue;
            }
            match rank(&dep) {
                Some(r) if r < own => {}
                Some(_) => {
                    if NOT_YET.iter().any(|(a, b, _)| *a == module && *b == dep) {
                        upward.insert((module.clone(), dep.clone()));
                    } else {
                        problems.push(format!(
                            "{}:{line}: {module} imports {dep}, which is not below it",
                            relative.display()
                        ));
                    }
                }
                None => problems.push(format!(
                    "{}:{line}: crate::{dep} is neither a layer nor a root helper",
                    relative.display()
                )),
            }
        }
    }
    for (a, b, why) in NOT_YET {
        if !upward.contains(&(a.to_string(), b.to_string())) {
            problems.push(format!(
                "{a} no longer imports {b} ({why}): take it off NOT_YET"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(files.len() > 40, "only {} source files found", files.len());
}
