//! Validates every `shaders/*.wgsl` with naga (the version wgpu 30 uses), embeds the sources
//! and generates `$OUT_DIR/shaders.rs`:
//!
//! - `enum Kernel` with one variant per family file, its source, its binding table (read-only
//!   storage, read-write storage, uniform, in binding order) and the layout of its params struct;
//! - `mod entry::<family>` with one `Entry` constant per `@compute` entry point, carrying the
//!   workgroup size naga found, so a misspelled entry point is a compile error.
//!
//! A WGSL error fails `cargo build` on every target with `shaders/<file>:<line>:<col>`.
//! Family rules checked here (HOUSE_STYLE §2.4): all bindings in `@group(0)`, numbered 0..n
//! without gaps, storage before the single trailing uniform `params`; at most 256 invocations
//! per workgroup (the browser's limit).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=shaders");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("shaders/ directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();

    let mut variants = String::new();
    let mut arms_name = String::new();
    let mut arms_source = String::new();
    let mut arms_bindings = String::new();
    let mut arms_params = String::new();
    let mut arms_entries = String::new();
    let mut all = String::new();
    let mut entry_mods = String::new();
    let mut failed = false;

    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let rel = format!("shaders/{stem}.wgsl");
        let src = std::fs::read_to_string(path).expect("read shader");
        let module = match naga::front::wgsl::parse_str(&src) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("{}", e.emit_to_string_with_path(&src, &rel));
                println!("cargo:warning={rel}: WGSL parse error (see the build output)");
                failed = true;
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        if let Err(e) = validator.validate(&module) {
            eprintln!("{}", e.emit_to_string_with_path(&src, &rel));
            println!("cargo:warning={rel}: WGSL validation error (see the build output)");
            failed = true;
            continue;
        }

        // Binding table.
        let mut binds: Vec<(u32, &'static str, Option<String>, naga::Handle<naga::Type>)> = vec![];
        for (_, g) in module.global_variables.iter() {
            let Some(rb) = &g.binding else { continue };
            if rb.group != 0 {
                panic!("{rel}: binding {:?} is not in @group(0)", g.name);
            }
            let kind = match g.space {
                naga::AddressSpace::Storage { access } => {
                    if access.contains(naga::StorageAccess::STORE) {
                        "ReadWrite"
                    } else {
                        "Read"
                    }
                }
                naga::AddressSpace::Uniform => "Uniform",
                other => panic!("{rel}: unsupported binding space {other:?}"),
            };
            binds.push((rb.binding, kind, g.name.clone(), g.ty));
        }
        binds.sort_by_key(|b| b.0);
        for (i, b) in binds.iter().enumerate() {
            assert_eq!(b.0 as usize, i, "{rel}: bindings must be numbered 0..n without gaps");
        }
        let uniforms: Vec<_> = binds.iter().filter(|b| b.1 == "Uniform").collect();
        assert_eq!(uniforms.len(), 1, "{rel}: a family has exactly one uniform (its params)");
        assert_eq!(binds.last().unwrap().1, "Uniform", "{rel}: the params uniform comes last");
        let params_ty = &module.types[uniforms[0].3];
        let (size, fields) = match &params_ty.inner {
            naga::TypeInner::Struct { members, span } => (
                *span,
                members
                    .iter()
                    .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                    .collect::<Vec<_>>(),
            ),
            _ => panic!("{rel}: the uniform must be a struct"),
        };
        assert!(size % 16 == 0, "{rel}: params struct size {size} must be a multiple of 16");

        let variant = camel(&stem);
        writeln!(variants, "    {variant},").unwrap();
        writeln!(all, "Kernel::{variant}, ").unwrap();
        writeln!(arms_name, "            Kernel::{variant} => \"{stem}\",").unwrap();
        writeln!(
            arms_source,
            "            Kernel::{variant} => include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{rel}\")),"
        )
        .unwrap();
        let bl: Vec<String> = binds.iter().map(|b| format!("BindingKind::{}", b.1)).collect();
        writeln!(arms_bindings, "            Kernel::{variant} => &[{}],", bl.join(", ")).unwrap();
        let fl: Vec<String> = fields.iter().map(|(n, o)| format!("(\"{n}\", {o})")).collect();
        writeln!(arms_params, "            Kernel::{variant} => ({size}, &[{}]),", fl.join(", ")).unwrap();

        let mut names = vec![];
        writeln!(entry_mods, "    /// Entry points of `{rel}`.\n    pub mod {stem} {{\n        use super::super::{{Entry, Kernel}};").unwrap();
        for ep in &module.entry_points {
            if ep.stage != naga::ShaderStage::Compute {
                continue;
            }
            let [x, y, z] = ep.workgroup_size;
            if ep.workgroup_size_overrides.is_none() && x * y * z > 256 {
                panic!("{rel}: entry `{}` has {} invocations per workgroup (max 256 in browsers)", ep.name, x * y * z);
            }
            names.push(format!("\"{}\"", ep.name));
            writeln!(
                entry_mods,
                "        pub const {}: Entry = Entry {{ kernel: Kernel::{variant}, name: \"{}\", workgroup_size: [{x}, {y}, {z}] }};",
                ep.name.to_uppercase(),
                ep.name
            )
            .unwrap();
        }
        writeln!(entry_mods, "    }}").unwrap();
        writeln!(arms_entries, "            Kernel::{variant} => &[{}],", names.join(", ")).unwrap();
    }
    if failed {
        panic!("WGSL validation failed; see the errors above");
    }

    let out = format!(
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

/// Entry point constants, one module per family.
pub mod entry {{
{entry_mods}}}
"#
    );
    let out_dir = std::env::var("OUT_DIR").unwrap();
    std::fs::write(Path::new(&out_dir).join("shaders.rs"), out).unwrap();
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
