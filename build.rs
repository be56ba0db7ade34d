//! Validates every `shaders/*.wgsl` with naga (the version wgpu 30 uses), embeds the sources
//! and generates `$OUT_DIR/shaders.rs`:
//!
//! - `enum Kernel` with one variant per family file, its source, its binding table (read-only
//!   storage, read-write storage, uniform, in binding order) and the layout of its params struct;
//! - `mod entry::<family>` with one `Entry` constant per `@compute` entry point, carrying the
//!   workgroup size naga found, so a misspelled entry point is a compile error.
//!
//! A WGSL error fails `cargo build` on every target with `shaders/<file>:<line>:<col>`.
//!
//! Shared blocks: `shaders/shared/<name>.wgsl` holds text that several families need (the
//! activations). Each family carries a verbatim copy between `// ---- shared: <name> ----` and
//! `// ---- end shared: <name> ----`, so every family file stays plain WGSL that any tool
//! parses; the build fails when a copy differs from the shared file or when a family defines
//! one of the shared functions outside its copy. The `ACT_*` codes of the activations block
//! become `shaders::ACT_CODES`, which a unit test holds against `ops::Act`.
//! Family rules checked here (HOUSE_STYLE §2.4): all bindings in `@group(0)`, numbered 0..n
//! without gaps, storage before the single trailing uniform `params`; at most 256 invocations
//! per workgroup (the browser's limit).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A shared block: its file name, text and the functions it defines.
struct Shared {
    name: String,
    text: String,
    fns: Vec<String>,
}

/// The generated Rust of one family.
#[derive(Default)]
struct Out {
    variants: String,
    all: String,
    arms_name: String,
    arms_source: String,
    arms_bindings: String,
    arms_params: String,
    arms_entries: String,
    entry_mods: String,
}

type Binding = (u32, &'static str, Option<String>, naga::Handle<naga::Type>);

fn main() {
    println!("cargo:rerun-if-changed=shaders");
    // Read at run time: `env!` would bake in the checkout the build script was compiled in, and
    // a target dir shared with (or copied from) another worktree then reads that one's shaders.
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&root).join("shaders");
    let shared = read_shared(&dir.join("shared"));
    let mut out = Out::default();
    let mut failed = false;
    for path in wgsl_files(&dir) {
        println!("cargo:rerun-if-changed={}", path.display());
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let rel = format!("shaders/{stem}.wgsl");
        let src = std::fs::read_to_string(&path).expect("read shader");
        check_shared_copies(&src, &rel, &shared);
        let Some(module) = validate(&src, &rel) else {
            failed = true;
            continue;
        };
        family(&module, &stem, &rel, &mut out);
    }
    if failed {
        panic!("WGSL validation failed; see the errors above");
    }
    let act_codes = act_codes(&shared);
    let out_dir = std::env::var("OUT_DIR").unwrap();
    std::fs::write(Path::new(&out_dir).join("shaders.rs"), render(&out, &act_codes)).unwrap();
}

/// `dir/*.wgsl`, sorted.
fn wgsl_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    files
}

/// The shared blocks, each validated alone.
fn read_shared(dir: &Path) -> Vec<Shared> {
    let mut out = vec![];
    for path in wgsl_files(dir) {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let rel = format!("shaders/shared/{name}");
        let text = std::fs::read_to_string(&path).expect("read shared shader");
        let Some(module) = validate(&text, &rel) else { panic!("{rel}: WGSL errors (see above)") };
        let fns = module.functions.iter().filter_map(|(_, f)| f.name.clone()).collect();
        let (begin, end) = markers(&name);
        assert!(text.starts_with(&begin) && text.trim_end().ends_with(&end), "{rel}: must start with `{begin}` and end with `{end}`");
        out.push(Shared { name, text, fns });
    }
    out
}

fn markers(name: &str) -> (String, String) {
    (format!("// ---- shared: {name} ----"), format!("// ---- end shared: {name} ----"))
}

/// Every shared block a family carries is a verbatim copy, and no shared function is defined
/// outside one.
fn check_shared_copies(src: &str, rel: &str, shared: &[Shared]) {
    let mut rest = src.to_string();
    for sh in shared {
        let (begin, end) = markers(&sh.name);
        let Some(a) = src.find(&begin) else { continue };
        let b = src[a..].find(&end).map(|i| a + i + end.len()).unwrap_or_else(|| panic!("{rel}: `{begin}` without `{end}`"));
        if src[a..b] != *sh.text.trim_end() {
            panic!("{rel}: its copy of shaders/shared/{} differs from the shared file; copy the shared file's text verbatim between the markers", sh.name);
        }
        rest = rest.replace(&src[a..b], "");
    }
    for sh in shared {
        for f in &sh.fns {
            if rest.contains(&format!("fn {f}(")) {
                panic!("{rel}: defines `{f}`, which shaders/shared/{} provides; use the shared block instead of a private copy", sh.name);
            }
        }
    }
}

/// Parse and validate with naga; print errors with file positions.
fn validate(src: &str, rel: &str) -> Option<naga::Module> {
    let module = match naga::front::wgsl::parse_str(src) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{}", e.emit_to_string_with_path(src, rel));
            println!("cargo:warning={rel}: WGSL parse error (see the build output)");
            return None;
        }
    };
    let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
    if let Err(e) = validator.validate(&module) {
        eprintln!("{}", e.emit_to_string_with_path(src, rel));
        println!("cargo:warning={rel}: WGSL validation error (see the build output)");
        return None;
    }
    Some(module)
}

/// The family rules on bindings: group 0, numbered 0..n, one trailing uniform.
fn bindings(module: &naga::Module, rel: &str) -> Vec<Binding> {
    let mut binds: Vec<Binding> = vec![];
    for (_, g) in module.global_variables.iter() {
        let Some(rb) = &g.binding else { continue };
        if rb.group != 0 {
            panic!("{rel}: binding {:?} is not in @group(0)", g.name);
        }
        let kind = match g.space {
            naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => "ReadWrite",
            naga::AddressSpace::Storage { .. } => "Read",
            naga::AddressSpace::Uniform => "Uniform",
            other => panic!("{rel}: unsupported binding space {other:?}"),
        };
        binds.push((rb.binding, kind, g.name.clone(), g.ty));
    }
    binds.sort_by_key(|b| b.0);
    for (i, b) in binds.iter().enumerate() {
        assert_eq!(b.0 as usize, i, "{rel}: bindings must be numbered 0..n without gaps");
    }
    let uniforms = binds.iter().filter(|b| b.1 == "Uniform").count();
    assert_eq!(uniforms, 1, "{rel}: a family has exactly one uniform (its params)");
    assert_eq!(binds.last().unwrap().1, "Uniform", "{rel}: the params uniform comes last");
    binds
}

/// Size and (name, offset) fields of the params struct.
fn params_layout(module: &naga::Module, uniform: &Binding, rel: &str) -> (u32, Vec<(String, u32)>) {
    let (size, fields) = match &module.types[uniform.3].inner {
        naga::TypeInner::Struct { members, span } => (*span, members.iter().map(|m| (m.name.clone().unwrap_or_default(), m.offset)).collect::<Vec<_>>()),
        _ => panic!("{rel}: the uniform must be a struct"),
    };
    assert!(size % 16 == 0, "{rel}: params struct size {size} must be a multiple of 16");
    (size, fields)
}

/// One family's variant, match arms and entry-point module.
fn family(module: &naga::Module, stem: &str, rel: &str, out: &mut Out) {
    let binds = bindings(module, rel);
    let (size, fields) = params_layout(module, binds.last().unwrap(), rel);
    let variant = camel(stem);
    writeln!(out.variants, "    {variant},").unwrap();
    writeln!(out.all, "Kernel::{variant}, ").unwrap();
    writeln!(out.arms_name, "            Kernel::{variant} => \"{stem}\",").unwrap();
    writeln!(out.arms_source, "            Kernel::{variant} => include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{rel}\")),").unwrap();
    let bl: Vec<String> = binds.iter().map(|b| format!("BindingKind::{}", b.1)).collect();
    writeln!(out.arms_bindings, "            Kernel::{variant} => &[{}],", bl.join(", ")).unwrap();
    let fl: Vec<String> = fields.iter().map(|(n, o)| format!("(\"{n}\", {o})")).collect();
    writeln!(out.arms_params, "            Kernel::{variant} => ({size}, &[{}]),", fl.join(", ")).unwrap();

    let mut names = vec![];
    writeln!(out.entry_mods, "    /// Entry points of `{rel}`.\n    pub mod {stem} {{\n        use super::super::{{Entry, Kernel}};").unwrap();
    for ep in module.entry_points.iter().filter(|ep| ep.stage == naga::ShaderStage::Compute) {
        let [x, y, z] = ep.workgroup_size;
        if ep.workgroup_size_overrides.is_none() && x * y * z > 256 {
            panic!("{rel}: entry `{}` has {} invocations per workgroup (max 256 in browsers)", ep.name, x * y * z);
        }
        names.push(format!("\"{}\"", ep.name));
        writeln!(
            out.entry_mods,
            "        pub const {}: Entry = Entry {{ kernel: Kernel::{variant}, name: \"{}\", workgroup_size: [{x}, {y}, {z}] }};",
            ep.name.to_uppercase(),
            ep.name
        )
        .unwrap();
    }
    writeln!(out.entry_mods, "    }}").unwrap();
    writeln!(out.arms_entries, "            Kernel::{variant} => &[{}],", names.join(", ")).unwrap();
}

/// `const ACT_<NAME>: u32 = <n>u;` lines of the shared blocks.
fn act_codes(shared: &[Shared]) -> Vec<(String, u32)> {
    let mut codes = vec![];
    for sh in shared {
        for line in sh.text.lines() {
            let Some(rest) = line.strip_prefix("const ACT_") else { continue };
            let (name, value) = rest.split_once(": u32 = ").unwrap_or_else(|| panic!("shaders/shared/{}: `{line}`: expected const ACT_X: u32 = Nu;", sh.name));
            let n: u32 = value.trim_end_matches(';').trim_end_matches('u').parse().unwrap_or_else(|_| panic!("shaders/shared/{}: `{line}`: bad code", sh.name));
            codes.push((name.to_string(), n));
        }
    }
    codes
}

fn render(o: &Out, act_codes: &[(String, u32)]) -> String {
    let Out { variants, all, arms_name, arms_source, arms_bindings, arms_params, arms_entries, entry_mods } = o;
    let acts: Vec<String> = act_codes.iter().map(|(n, c)| format!("(\"{n}\", {c})")).collect();
    let acts = acts.join(", ");
    format!(
        r#"// @generated by build.rs from shaders/*.wgsl. Do not edit.

/// One WGSL kernel family (one file in `shaders/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {{
{variants}}}

/// How a binding of a family is declared in WGSL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingKind {{
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
    /// `var<uniform>`: the family's params struct, bound with a dynamic offset.
    Uniform,
}}

/// A compute entry point of a family, with the workgroup size declared in WGSL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry {{
    pub kernel: Kernel,
    pub name: &'static str,
    pub workgroup_size: [u32; 3],
}}

impl Kernel {{
    pub const ALL: &'static [Kernel] = &[{all}];

    pub fn name(self) -> &'static str {{
        match self {{
{arms_name}        }}
    }}

    pub fn source(self) -> &'static str {{
        match self {{
{arms_source}        }}
    }}

    /// Bindings of `@group(0)` in binding order.
    pub fn bindings(self) -> &'static [BindingKind] {{
        match self {{
{arms_bindings}        }}
    }}

    /// Size of the params struct and its fields' (name, byte offset), as naga lays them out.
    pub fn params_layout(self) -> (u32, &'static [(&'static str, u32)]) {{
        match self {{
{arms_params}        }}
    }}

    pub fn entries(self) -> &'static [&'static str] {{
        match self {{
{arms_entries}        }}
    }}
}}

/// The activation codes of shaders/shared/activations.wgsl (`ACT_<NAME>`, code).
pub const ACT_CODES: &[(&str, u32)] = &[{acts}];

/// Entry point constants, one module per family.
pub mod entry {{
{entry_mods}}}
"#
    )
}

fn camel(s: &str) -> String {
    s.split('_')
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}
