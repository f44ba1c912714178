//! `scripts/package`: the binary to ship carries no symbol table and names the
//! file that has it, and still runs. (Run here on the test build's binary: the
//! script does the same to the release one.)

use object::{Object, ObjectSection};
use std::path::Path;
use std::process::Command;

fn sections(file: &Path) -> (Vec<String>, Option<String>) {
    let data = std::fs::read(file).unwrap();
    let elf = object::read::elf::ElfFile64::<object::Endianness>::parse(&*data).unwrap();
    let names = elf
        .sections()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
    let link = elf
        .gnu_debuglink()
        .unwrap()
        .map(|(name, _crc)| String::from_utf8_lossy(name).into_owned());
    (names, link)
}

#[test]
fn the_packaged_binary_has_its_symbols_in_a_file_beside_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(root.join("scripts/package"))
        .arg(super::harness::BINARY)
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/package failed");

    let shipped = out.path().join("tenant-gateway");
    let debug = out.path().join("tenant-gateway.debug");
    let (shipped_sections, link) = sections(&shipped);
    let (original_sections, _) = sections(Path::new(super::harness::BINARY));
    assert!(original_sections.iter().any(|s| s == ".symtab"));
    assert!(
        !shipped_sections
            .iter()
            .any(|s| [".symtab", ".strtab", ".debug_info", ".debug_line"].contains(&s.as_str())),
        "{shipped_sections:?}"
    );
    assert_eq!(link.as_deref(), Some("tenant-gateway.debug"));
    let (debug_sections, _) = sections(&debug);
    assert!(debug_sections.iter().any(|s| s == ".symtab"));
    assert!(
        std::fs::metadata(&shipped).unwrap().len()
            < std::fs::metadata(super::harness::BINARY).unwrap().len()
    );

    let run = Command::new(&shipped).arg("--version").output().unwrap();
    assert!(run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stdout).starts_with("tenant-gateway "),
        "{run:?}"
    );
}
