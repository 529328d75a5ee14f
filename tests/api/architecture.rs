//! The layers of `src/` point one way, as ArchUnit checks for Java: the web edge (`src/web/`:
//! HTTP, the dashboard, wiring, configuration) may use the domain and storage; the domain
//! (`src/domain/`: keys, users, limits, usage, the authorization policy) may use storage but
//! neither the web edge nor the HTTP framework; storage (`src/storage/`: the database, the Redis
//! connection, per-thread structures) uses only itself. A file's layer is its folder; what it
//! uses is read from the `crate::…` paths in its code (its tests excluded), by module name (the
//! crate root re-exports every module under its own name) or by layer (`crate::web::…`).

use std::path::{Path, PathBuf};

const STORAGE: &[&str] = &["db", "shared_redis", "striped"];
const DOMAIN: &[&str] = &[
    "analytics",
    "audit",
    "clock",
    "contract",
    "events",
    "keys",
    "ledger",
    "users",
    "limits",
    "usage",
    "policy",
    "rules",
    "validation",
    "webhooks",
];
/// Crates of the web edge: the domain and storage never name them.
const FRAMEWORK: &[&str] = &["actix_web", "actix_http", "actix_session", "askama", "awc"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Storage,
    Domain,
    Web,
}

fn layer(module: &str) -> Layer {
    if module == "storage" || STORAGE.contains(&module) {
        Layer::Storage
    } else if module == "domain" || DOMAIN.contains(&module) {
        Layer::Domain
    } else {
        Layer::Web
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file of `src/` belongs to, named so that its layer follows from the name
/// (`src/domain/keys/cache.rs` → `keys`; `src/web/config.rs` → `web:config`; `src/main.rs` →
/// `main`, the web edge).
fn module_of(relative: &Path) -> String {
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    match parts.as_slice() {
        [layer, module, ..] if layer == "web" => format!("web:{module}"),
        [layer, module, ..] if layer == "domain" || layer == "storage" => {
            if module == "mod" {
                layer.clone()
            } else {
                module.clone()
            }
        }
        [first, ..] => first.clone(),
        [] => String::new(),
    }
}

/// `source` without its test modules (`#[cfg(test)] mod tests { … }`, to the matching brace,
/// or `mod tests;`): tests may use anything. Code after a test module still counts.
fn without_tests(source: &str) -> String {
    let mut code = String::new();
    let mut rest = source;
    while let Some(at) = rest.find("#[cfg(test)]") {
        code.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find(['{', ';']) else {
            return code;
        };
        if after.as_bytes()[open] == b';' {
            rest = &after[open + 1..];
            continue;
        }
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    code.push_str(rest);
    code
}

/// Every import against the direction in one file's code: `(what, why)`.
fn violations(module: &str, source: &str) -> Vec<String> {
    let code = &without_tests(source);
    let own = layer(module);
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let used: String = code[at + 7..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if layer(&used) > own {
            found.push(format!(
                "{module} ({own:?}) uses crate::{used} ({:?})",
                layer(&used)
            ));
        }
    }
    if own < Layer::Web {
        for framework in FRAMEWORK {
            if code.contains(&format!("{framework}::")) {
                found.push(format!("{module} ({own:?}) uses the web framework {framework}"));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn layers_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let source = std::fs::read_to_string(file).expect("read");
        for problem in violations(&module_of(relative), &source) {
            problems.push(format!("{}: {problem}", relative.display()));
        }
    }
    assert!(files.len() > 40, "read {} files", files.len());
    // Every folder is where it says it is.
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let module = module_of(relative);
        let folder = relative
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        // The edge has two doors: HTTP (`web/`) and the command line (`cli/`, the binary's).
        let expected = match layer(&module) {
            Layer::Storage => "storage",
            Layer::Domain => "domain",
            Layer::Web if folder == "cli" => "cli",
            Layer::Web => "web",
        };
        if folder.ends_with(".rs") {
            assert!(
                ["lib.rs", "main.rs"].contains(&folder.as_str()),
                "{} sits outside the layers",
                relative.display()
            );
        } else {
            assert_eq!(
                folder,
                expected,
                "{} is in the wrong layer's folder",
                relative.display()
            );
        }
    }
    assert!(
        problems.is_empty(),
        "imports against the layers:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_forbidden_import_is_caught() {
    assert_eq!(
        violations("keys", "use crate::routes::admin;\nuse crate::db::DbPool;"),
        ["keys (Domain) uses crate::routes (Web)"]
    );
    assert_eq!(
        violations("db", "use crate::keys::Limits;"),
        ["db (Storage) uses crate::keys (Domain)"]
    );
    assert_eq!(
        violations("limits", "fn f(r: actix_web::HttpRequest) {}"),
        ["limits (Domain) uses the web framework actix_web"]
    );
    assert!(violations("routes", "use crate::keys::Limits; use actix_web::web;").is_empty());
    assert!(violations("keys", "#[cfg(test)]\nmod tests { use crate::routes::x; }").is_empty());
    // Code after a test module still counts.
    assert_eq!(
        violations(
            "keys",
            "#[cfg(test)]\nmod tests { fn f() {} }\nuse crate::routes::x;"
        ),
        ["keys (Domain) uses crate::routes (Web)"]
    );
}

/// The modules `source` (the code of module `module`) uses, by the `crate::…` paths in it
/// (tests excluded), named as [`module_of`] names them.
fn uses(module: &str, source: &str) -> std::collections::BTreeSet<String> {
    let code = &without_tests(source);
    let mut used = std::collections::BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let mut path = code[at + 7..].split("::").map(|part| {
            part.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        });
        let mut name = path.next().unwrap_or_default();
        if ["web", "domain", "storage"].contains(&name.as_str()) {
            let layer = name.clone();
            name = path.next().unwrap_or_default();
            if layer == "web" {
                name = format!("web:{name}");
            }
        } else if layer(&name) == Layer::Web {
            name = format!("web:{name}");
        }
        if name != module && !name.ends_with(':') {
            used.insert(name);
        }
    }
    used
}

/// A cycle in `graph`, if there is one: the modules on it, the first repeated at the end.
fn cycle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// No two modules use each other, directly or around a circle, inside a layer or across: a
/// reader can take the modules in an order where each uses only those before it.
#[test]
fn modules_form_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for file in &files {
        let module = module_of(file.strip_prefix(&src).expect("under src"));
        let source = std::fs::read_to_string(file).expect("read");
        graph
            .entry(module.clone())
            .or_default()
            .extend(uses(&module, &source));
    }
    assert!(
        graph.contains_key("keys") && graph["web:gate"].contains("web:state"),
        "{graph:?}"
    );
    assert_eq!(cycle(&graph), None, "a cycle of modules");
}

#[test]
fn a_cycle_is_caught() {
    let mut graph = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    graph.insert("users".into(), uses("users", "use crate::keys::cache::KeyCache;"));
    graph.insert(
        "keys".into(),
        uses("keys", "use crate::users;\nuse crate::db::DbPool;"),
    );
    graph.insert(
        "web:gate".into(),
        uses("web:gate", "use crate::web::state::AppState;"),
    );
    assert_eq!(graph["web:gate"].iter().collect::<Vec<_>>(), ["web:state"]);
    assert_eq!(
        cycle(&graph),
        Some(vec!["keys".into(), "users".into(), "keys".into()])
    );
    graph.get_mut("users").expect("users").clear();
    assert_eq!(cycle(&graph), None);
}
