//! Every ```rust block in README.md and docs/**/*.md is a whole program, as
//! a reader sees it, that builds and runs with the one dependency block that
//! docs/README.md states.
//!
//! The blocks are written out as binaries of a scratch crate whose
//! `[dependencies]` are exactly docs/README.md's ```toml block (with `weir`
//! pointed at this checkout), built with `cargo build` in a target directory
//! of their own (so the workspace's dev-dependencies, such as tokio's
//! `test-util`, cannot leak in), and each is run and must exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one snippet may run; they are meant to finish in well under a
/// second.
const RUN_LIMIT: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The markdown pages whose ```rust blocks must be programs.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    let mut dirs = vec![repo().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages.sort();
    pages
}

/// One fenced block: its page, its first line number and its text.
struct Block {
    page: String,
    line: usize,
    lang: String,
    code: String,
}

fn blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap();
    let page = path
        .strip_prefix(repo())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut out = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(lang) = line.trim_start().strip_prefix("```") {
                    open = Some((i + 2, lang.trim().to_owned(), String::new()));
                }
            }
            Some((start, lang, code)) => {
                if line.trim_start().starts_with("```") {
                    out.push(Block {
                        page: page.clone(),
                        line: *start,
                        lang: std::mem::take(lang),
                        code: std::mem::take(code),
                    });
                    open = None;
                } else {
                    code.push_str(line);
                    code.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "{page}: a code block is never closed");
    out
}

fn rust_blocks() -> Vec<Block> {
    pages()
        .iter()
        .flat_map(|p| blocks(p))
        .filter(|b| b.lang == "rust" || b.lang.starts_with("rust,"))
        .collect()
}

/// The ```toml block of docs/README.md that holds `[dependencies]`.
fn dependency_block() -> String {
    let readme = repo().join("docs/README.md");
    let block = blocks(&readme)
        .into_iter()
        .find(|b| b.lang == "toml" && b.code.contains("[dependencies]"))
        .expect("docs/README.md states the dependencies in a ```toml block");
    block.code
}

#[test]
fn every_rust_block_is_a_whole_program_as_displayed() {
    let mut problems = Vec::new();
    for b in rust_blocks() {
        let hidden: Vec<usize> = b
            .code
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                let t = l.trim_start();
                t == "#" || (t.starts_with("# ") && !t.starts_with("# ["))
            })
            .map(|(i, _)| b.line + i)
            .collect();
        if !hidden.is_empty() {
            problems.push(format!(
                "{}:{}: hidden `#` lines at {hidden:?}; a reader pasting the block gets them",
                b.page, b.line
            ));
        }
        if b.lang != "rust" {
            problems.push(format!(
                "{}:{}: ```{} — write plain ```rust blocks that build and run",
                b.page, b.line, b.lang
            ));
        }
        if !b.code.contains("fn main") {
            problems.push(format!(
                "{}:{}: no `fn main`; every block is a whole program",
                b.page, b.line
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_dependency_block_names_weir_and_no_test_util() {
    let deps = dependency_block();
    assert!(deps.contains("\nweir = ") || deps.starts_with("weir = ") || deps.contains("\nweir="));
    assert!(
        !deps.contains("test-util"),
        "the docs must run without tokio's test-util: a reader's tokio has no paused clock"
    );
}

/// The scratch crate's manifest: docs/README.md's block with `weir` pointed
/// at this checkout.
fn manifest() -> String {
    let weir = repo().join("crates/weir");
    let mut deps = String::new();
    for line in dependency_block().lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("weir") {
            let rest = rest.trim_start();
            if let Some(value) = rest.strip_prefix('=') {
                // `weir = "0.1"` or `weir = { version = "0.1", features = [...] }`
                let value = value.trim();
                let features = value
                    .find("features")
                    .map(|at| {
                        let tail = &value[at..];
                        let end = tail.find(']').map_or(tail.len(), |e| e + 1);
                        format!(", {}", &tail[..end])
                    })
                    .unwrap_or_default();
                writeln!(
                    deps,
                    "weir = {{ path = {:?}{features} }}",
                    weir.display().to_string()
                )
                .unwrap();
                continue;
            }
        }
        writeln!(deps, "{line}").unwrap();
    }
    format!(
        "[package]\nname = \"docs-snippets\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         {deps}\n[workspace]\n\n[profile.dev]\ndebug = false\n"
    )
}

fn bin_name(b: &Block) -> String {
    let stem: String = b
        .page
        .trim_end_matches(".md")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{}_l{}", stem.to_lowercase(), b.line)
}

#[test]
fn every_rust_block_builds_and_runs_with_the_stated_dependencies() {
    let blocks = rust_blocks();
    assert!(!blocks.is_empty());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docs-snippets");
    let bins = dir.join("src/bin");
    let _ = std::fs::remove_dir_all(&bins);
    std::fs::create_dir_all(&bins).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest()).unwrap();
    // The workspace's lock pins every version the snippets can use, so the
    // scratch build uses what the workspace already builds with.
    std::fs::copy(repo().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    for b in &blocks {
        let source = format!("// {}:{}\n{}", b.page, b.line, b.code);
        std::fs::write(bins.join(format!("{}.rs", bin_name(b))), source).unwrap();
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = dir.join("target");
    let build = Command::new(&cargo)
        .args(["build", "--bins", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "the docs' blocks do not build with docs/README.md's dependencies:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );

    let mut failures = Vec::new();
    for b in &blocks {
        let exe = target.join("debug").join(bin_name(b));
        let start = Instant::now();
        let mut child = Command::new(&exe)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let output = child.wait_with_output().unwrap();
        match status {
            Some(s) if s.success() => {}
            Some(s) => failures.push(format!(
                "{}:{} exited with {s}\nstdout:\n{}\nstderr:\n{}",
                b.page,
                b.line,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )),
            None => failures.push(format!(
                "{}:{} still running after {RUN_LIMIT:?}",
                b.page, b.line
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
