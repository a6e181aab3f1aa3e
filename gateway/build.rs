//! Embeds every file of `../monitor-ui/` into the binary: writes `$OUT_DIR/ui_files.rs`, a
//! table of `(relative path, include_bytes!(…))`, which `src/ui.rs` includes.
//!
//! `include_bytes!` makes cargo rebuild when an embedded file changes; the
//! `rerun-if-changed` on the directory makes it notice files added or removed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let ui_dir = manifest.join("../monitor-ui");
    println!("cargo:rerun-if-changed={}", ui_dir.display());
    println!("cargo:rerun-if-changed=build.rs");

    let mut files = Vec::new();
    if ui_dir.is_dir() {
        collect(&ui_dir, &ui_dir, &mut files);
    } else {
        println!("cargo:warning=monitor-ui/ not found at {}: serving a placeholder page", ui_dir.display());
    }
    files.sort();

    let mut out = String::from("/// Every file of `monitor-ui/`, by path relative to it (`/` separated).\n");
    out.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        writeln!(out, "    ({rel:?}, include_bytes!({abs:?})),").unwrap();
    }
    out.push_str("];\n");
    let out_path = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("ui_files.rs");
    std::fs::write(out_path, out).expect("writing ui_files.rs");
}

/// Collects regular files under `dir`, skipping hidden files and editor leftovers.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, files);
        } else if path.is_file() {
            let rel = path.strip_prefix(root).expect("under root");
            let rel =
                rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/");
            let abs = path.canonicalize().unwrap_or(path.clone());
            files.push((rel, abs.to_string_lossy().into_owned()));
        }
    }
}
