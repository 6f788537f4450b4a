//! The crate's shape, checked from its source: no dependency cycle between the files of
//! `src/`, and no file too long to read.
//!
//! Every `.rs` file under `src/` is a node (the binaries in `src/bin/` are crates of their own,
//! and test-only files, `tests.rs` or a `#[cfg(test)] mod x;`, may reach anywhere). A file
//! depends on another when it names something in it: a `crate::…` path, in a `use` or inline,
//! or a `super::…` path, resolved from the file's own module (`a/mod.rs` is module `a`). A path
//! belongs to the longest existing file its leading segments name: `crate::a::b::C` is
//! `src/a/b.rs` or `src/a/b/mod.rs` if there is one, else `src/a.rs` or `src/a/mod.rs`.
//! Comments, string literals and `#[cfg(test)]` items do not count. A module naming its own
//! child by its bare name (`use protocol::Protocol;` in `connection/mod.rs`) is not an edge:
//! a parent is made of its children.
//!
//! Why: a cycle means neither file can be understood, changed or tested without the other, and
//! a file past [`MAX_LINES`] (its tests aside) holds more than one job.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// Longest a file may be, counting the lines before its first `#[cfg(test)]`.
const MAX_LINES: usize = 550;

/// The file-level dependency graph: each file (as `src/…`) and the files it depends on.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn no_file_depends_on_itself_through_others() {
    let graph = SourceTree::read().graph();
    let cycles = cycles(&graph);
    let listed: Vec<String> = cycles.iter().map(|cycle| format!("  {}", cycle.join(" → "))).collect();
    assert!(
        cycles.is_empty(),
        "{} dependency cycles between files in src/:\n{}",
        cycles.len(),
        listed.join("\n")
    );
}

#[test]
fn no_file_is_too_long() {
    let tree = SourceTree::read();
    let long: Vec<String> = tree
        .files
        .iter()
        .filter(|(path, _)| !tree.test_only.contains(*path))
        .map(|(path, text)| (path, lines_before_tests(text)))
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(path, lines)| format!("  {path}: {lines} lines"))
        .collect();
    assert!(long.is_empty(), "files in src/ over {MAX_LINES} lines (tests aside):\n{}", long.join("\n"));
}

#[test]
fn the_graph_is_read_from_uses_paths_and_super() {
    let graph = SourceTree::read().graph();
    let depends = |from: &str, to: &str| graph.get(from).is_some_and(|deps| deps.contains(to));
    // `use crate::config::Config;`, `use super::{…}` in a child, an inline `crate::rate::MAX_RATE`.
    assert!(depends("src/settings.rs", "src/config.rs"));
    assert!(depends("src/connection/handshake.rs", "src/connection/mod.rs"));
    assert!(depends("src/settings.rs", "src/rate.rs"));
    // A macro exported at the crate root is its defining file's.
    assert!(depends("src/connection/reading.rs", "src/logline.rs"));
    assert!(!graph.contains_key("src/chat/tests.rs"), "test-only files are no nodes");
}

#[test]
fn comments_strings_and_test_items_are_not_code() {
    let text = r####"
        use crate::a::{b::C, d::{self, E as F}, g::*}; // crate::commented::Out
        /* crate::block /* nested */ crate::still::Comment */
        const S: &str = "crate::in::String";
        const R: &str = r#"crate::raw"#;
        const Q: char = '"';
        fn f<'a>(x: &'a str) -> usize { crate::h::i(x) + super::j::K }
        #[cfg(test)]
        mod tests { use crate::only::InTests; }
        #[cfg(test)]
        use crate::only::ForTests;
        #[cfg(test)]
        mod more;
    "####;
    let (code, test_modules) = code_of(text);
    let paths: Vec<String> = paths_in(&code).iter().map(|path| path.join("::")).collect();
    assert_eq!(
        paths,
        ["crate::a::b::C", "crate::a::d", "crate::a::d::E", "crate::a::g", "crate::h::i", "super::j::K"]
    );
    assert_eq!(test_modules, ["more"]);
}

#[test]
fn every_edge_on_a_cycle_is_shown_in_one() {
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "a"), ("b", "c"), ("c", "d"), ("d", "b"), ("d", "e")] {
        graph.entry(from.to_string()).or_default().insert(to.to_string());
    }
    let shown: Vec<String> = cycles(&graph).iter().map(|cycle| cycle.join(" → ")).collect();
    assert_eq!(shown, ["a → b → a", "b → c → d → b"]);
}

/// The files of `src/`, as text.
struct SourceTree {
    /// Each file by its path from the package root (`src/chat/mod.rs`).
    files: BTreeMap<String, String>,
    /// Files that only tests compile.
    test_only: BTreeSet<String>,
}

impl SourceTree {
    fn read() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = BTreeMap::new();
        collect(root, Path::new("src"), &mut files);
        let mut test_only: BTreeSet<String> =
            files.keys().filter(|path| path.ends_with("/tests.rs")).cloned().collect();
        for path in files.keys() {
            let (_, test_modules) = code_of(&files[path]);
            for name in test_modules {
                let dir = module_dir(path);
                test_only.extend([format!("{dir}/{name}.rs"), format!("{dir}/{name}/mod.rs")]);
            }
        }
        Self { files, test_only }
    }

    /// Who depends on whom, test-only files left out.
    fn graph(&self) -> Graph {
        let roots = self.root_items();
        let mut graph = Graph::new();
        for (path, text) in &self.files {
            if self.test_only.contains(path) {
                continue;
            }
            let (code, _) = code_of(text);
            let deps = graph.entry(path.clone()).or_default();
            for segments in paths_in(&code) {
                let Some(full) = absolute(path, &segments) else { continue };
                let target = self.resolve(&full).or_else(|| roots.get(full.first()?).cloned());
                let target = target.unwrap_or_else(|| "src/lib.rs".to_string());
                if target != *path && !self.test_only.contains(&target) {
                    deps.insert(target);
                }
            }
        }
        graph
    }

    /// The file a module path's longest existing prefix names.
    fn resolve(&self, segments: &[String]) -> Option<String> {
        (1..=segments.len()).rev().find_map(|len| {
            let module = segments[..len].join("/");
            [format!("src/{module}.rs"), format!("src/{module}/mod.rs")]
                .into_iter()
                .find(|candidate| self.files.contains_key(candidate))
        })
    }

    /// Names the crate root offers that live elsewhere: `pub use config::Config;` in `lib.rs`,
    /// and `#[macro_export]` macros, which `crate::name!` reaches wherever they are defined.
    fn root_items(&self) -> BTreeMap<String, String> {
        let mut roots = BTreeMap::new();
        if let Some(lib) = self.files.get("src/lib.rs") {
            let (code, _) = code_of(lib);
            for segments in paths_in_uses(&tokens(&code)) {
                if let (Some(name), Some(file)) = (segments.last(), self.resolve(&segments)) {
                    roots.insert(name.clone(), file);
                }
            }
        }
        for (path, text) in &self.files {
            let (code, _) = code_of(text);
            let tokens = tokens(&code);
            for window in tokens.windows(3) {
                if window[0] == "macro_rules" && window[1] == "!" {
                    roots.insert(window[2].clone(), path.clone());
                }
            }
        }
        roots
    }
}

/// Reads every `.rs` file under `dir` (relative to `root`) into `files`, `src/bin` aside.
fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    let entries = std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let name = entry.expect("a directory entry").file_name();
        let path = dir.join(&name);
        if root.join(&path).is_dir() {
            if path != Path::new("src/bin") {
                collect(root, &path, files);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(root.join(&path)).expect("a readable source file");
            files.insert(path.to_string_lossy().replace('\\', "/"), text);
        }
    }
}

/// The module path of a file: `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`, `src/lib.rs` is
/// the crate root.
fn module_of(path: &str) -> Vec<String> {
    let inner = path.strip_prefix("src/").unwrap_or(path).trim_end_matches(".rs");
    let mut segments: Vec<String> = inner.split('/').map(str::to_string).collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib")) {
        segments.pop();
    }
    segments
}

/// The directory a file's child modules live in: `src/a` for `src/a/mod.rs` and `src/a.rs`.
fn module_dir(path: &str) -> String {
    match module_of(path) {
        segments if segments.is_empty() => "src".to_string(),
        segments => format!("src/{}", segments.join("/")),
    }
}

/// A `crate::`, `super::` or `self::` path as a path from the crate root; None for anything
/// else (other crates, a module's bare children).
fn absolute(file: &str, segments: &[String]) -> Option<Vec<String>> {
    let (mut base, rest) = match segments.first()?.as_str() {
        "crate" => (Vec::new(), &segments[1..]),
        "self" => (module_of(file), &segments[1..]),
        "super" => {
            let supers = segments.iter().take_while(|s| *s == "super").count();
            let mut base = module_of(file);
            for _ in 0..supers {
                base.pop()?;
            }
            (base, &segments[supers..])
        }
        _ => return None,
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Lines before the first `#[cfg(test)]` line.
fn lines_before_tests(text: &str) -> usize {
    text.lines().take_while(|line| !line.trim_start().starts_with("#[cfg(test)]")).count()
}

/// A file's code: comments removed, string and character literals emptied, `#[cfg(test)]`
/// items dropped; and the names of the modules declared as test-only (`#[cfg(test)] mod x;`).
fn code_of(text: &str) -> (String, Vec<String>) {
    drop_test_items(&strip_comments_and_literals(text))
}

fn strip_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if let Some((start, hashes)) = raw_string_start(&chars, i) {
            // A raw string: r"…", r#"…"#, br#"…"#; it ends at a quote followed by as many #.
            i = start + hashes + 1;
            while i < chars.len() && !(chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                i += 1;
            }
            i += 1 + hashes;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // A character literal ('x', '\n', '\u{1F600}'); a lifetime ('a) has no closing quote.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Where a raw string starting at `i` (`r"`, `r#"`, `br#"`) has its `#`s, and how many.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    let start = match (chars[i], chars.get(i + 1)) {
        ('r', _) => i + 1,
        ('b', Some('r')) => i + 2,
        _ => return None,
    };
    let hashes = chars[start.min(chars.len())..].iter().take_while(|c| **c == '#').count();
    (starts_word && chars.get(start + hashes) == Some(&'"')).then_some((start, hashes))
}

/// Removes each item marked `#[cfg(test)]`: up to its `;`, or through its braced body.
fn drop_test_items(code: &str) -> (String, Vec<String>) {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut test_modules = Vec::new();
    let mut rest = code;
    while let Some(found) = rest.find(MARK) {
        out.push_str(&rest[..found]);
        let item = &rest[found + MARK.len()..];
        let mut depth = 0i32;
        let mut end = item.len();
        for (offset, c) in item.char_indices() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' => depth -= 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = offset + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = offset + 1;
                    if let [.., "mod", name] =
                        tokens(&item[..offset]).iter().map(String::as_str).collect::<Vec<_>>()[..]
                    {
                        test_modules.push(name.to_string());
                    }
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    (out, test_modules)
}

/// Identifiers (`$crate` counts as `crate`), `::`, and single punctuation characters; numbers
/// and literals are left out.
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' || c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            if !c.is_ascii_digit() {
                tokens.push(chars[start..i].iter().collect());
            }
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".to_string());
            i += 2;
        } else if c == '$' && chars[i + 1..].starts_with(&['c', 'r', 'a', 't', 'e']) {
            i += 1;
        } else {
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    tokens
}

/// Every path the code names that may lead into the crate: all `use` paths, and the inline
/// paths that start with `crate::` or `super::`.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let tokens = tokens(code);
    let mut paths = paths_in_uses(&tokens);
    let mut i = 0;
    while i < tokens.len() {
        let starts_path = i == 0 || tokens[i - 1] != "::";
        if starts_path && tokens[i] == "use" {
            while i < tokens.len() && tokens[i] != ";" {
                i += 1;
            }
        } else if starts_path
            && (tokens[i] == "crate" || tokens[i] == "super")
            && tokens.get(i + 1).is_some_and(|t| t == "::")
        {
            let mut path = vec![tokens[i].clone()];
            i += 1;
            while tokens.get(i).is_some_and(|t| t == "::") && tokens.get(i + 1).is_some_and(|t| is_ident(t)) {
                path.push(tokens[i + 1].clone());
                i += 2;
            }
            paths.push(path);
            continue;
        }
        i += 1;
    }
    paths
}

/// The paths of every `use` declaration, trees expanded: `use a::{b, c::{self, d}};` is
/// `a::b`, `a::c`, `a::c::d`.
fn paths_in_uses(tokens: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if token == "use" && (i == 0 || tokens[i - 1] != "::") && tokens.get(i + 1).is_some_and(|t| t != "<")
        {
            let mut at = i + 1;
            use_tree(tokens, &mut at, &[], &mut paths);
        }
    }
    paths
}

fn use_tree(tokens: &[String], at: &mut usize, prefix: &[String], paths: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    if tokens.get(*at).is_some_and(|t| t == "::") {
        *at += 1;
    }
    while let Some(token) = tokens.get(*at) {
        match token.as_str() {
            "{" => {
                *at += 1;
                while tokens.get(*at).is_some_and(|t| t != "}") {
                    use_tree(tokens, at, &path, paths);
                    if tokens.get(*at).is_some_and(|t| t == ",") {
                        *at += 1;
                    }
                }
                *at += 1;
                return;
            }
            "*" => {
                *at += 1;
                break;
            }
            "self" if !path.is_empty() => *at += 1,
            name if is_ident(name) => {
                path.push(name.to_string());
                *at += 1;
            }
            _ => break,
        }
        if tokens.get(*at).is_some_and(|t| t == "::") {
            *at += 1;
        } else {
            break;
        }
    }
    if tokens.get(*at).is_some_and(|t| t == "as") {
        *at += 2;
    }
    if !path.is_empty() {
        paths.push(path);
    }
}

fn is_ident(token: &str) -> bool {
    token.starts_with(|c: char| c.is_alphabetic() || c == '_') && token != "as"
}

/// Every cycle of the graph that some edge needs to be shown: for each edge on a cycle, the
/// shortest cycle through it, each written once, starting at its least file.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut found = BTreeSet::new();
    for component in strongly_connected(graph).into_iter().filter(|c| c.len() > 1) {
        for from in &component {
            for to in graph[from].iter().filter(|to| component.contains(*to)) {
                // The way back closes the cycle: `to`, …, `from`, then the edge to `to`.
                let Some(mut cycle) = shortest_path(graph, &component, to, from) else { continue };
                let least = (0..cycle.len()).min_by_key(|&i| &cycle[i]).expect("a cycle has files");
                cycle.rotate_left(least);
                cycle.push(cycle[0].clone());
                found.insert(cycle);
            }
        }
    }
    found.into_iter().collect()
}

/// The files on the shortest path from `from` to `to` (both included), within `within`.
fn shortest_path(graph: &Graph, within: &BTreeSet<String>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(file) = queue.pop_front() {
        if file == to {
            let mut path = vec![to.to_string()];
            let mut at = to;
            while at != from {
                at = came_from[at];
                path.push(at.to_string());
            }
            path.reverse();
            return Some(path);
        }
        for next in graph.get(file).into_iter().flatten().filter(|next| within.contains(*next)) {
            if next != from && !came_from.contains_key(next.as_str()) {
                came_from.insert(next, file);
                queue.push_back(next);
            }
        }
    }
    None
}

/// Tarjan's strongly connected components: the sets of files that all reach each other.
fn strongly_connected(graph: &Graph) -> Vec<BTreeSet<String>> {
    struct Search<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        components: Vec<BTreeSet<String>>,
    }
    impl<'g> Search<'g> {
        fn visit(&mut self, file: &'g str) {
            let graph = self.graph;
            let n = self.index.len();
            self.index.insert(file, n);
            self.low.insert(file, n);
            self.stack.push(file);
            self.on_stack.insert(file);
            for next in graph.get(file).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    self.low.insert(file, self.low[file].min(self.low[next]));
                } else if self.on_stack.contains(next) {
                    self.low.insert(file, self.low[file].min(self.index[next]));
                }
            }
            if self.low[file] == self.index[file] {
                let mut component = BTreeSet::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.insert(member.to_string());
                    if member == file {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for file in graph.keys() {
        if !search.index.contains_key(file.as_str()) {
            search.visit(file);
        }
    }
    search.components
}
